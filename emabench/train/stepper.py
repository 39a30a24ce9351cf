"""One optimizer step for R stacked replicas with torch's own optimizer classes and per-replica settings.

A torch optimizer keeps one learning rate per parameter *tensor*; a stack needs one per *replica* (row ``r`` of every
tensor). Every torch optimizer's state (momenta, squared averages, step counts) is independent of the learning
rate, which only scales the final update. So the optimizer is built once with ``lr=1, weight_decay=0`` over the
stacked tensors, and per replica ``r``:

1. clip: ``g_r ← g_r · min(1, c_r / (‖g_r‖ + 1e-6))`` with ``‖g_r‖`` the 2-norm over all of replica r's gradients
   (``torch.nn.utils.clip_grad_norm_`` on replica r alone; on the whole stack it would couple the replicas);
2. weight decay: L2 ``g_r ← g_r + λ_r·θ_r`` (what torch does inside SGD/Adam/…), or decoupled
   ``θ_r ← θ_r·(1 − η_r·λ_r)`` (AdamW, applied before the step as torch's AdamW does);
3. ``θ_after = optimizer.step()`` with lr 1, then ``θ_r ← θ_prev,r + η_r·(θ_after,r − θ_prev,r)`` (one lerp).

This equals R separate optimizers with learning rates ``η_r`` (``tests/test_stepper.py`` checks every optimizer with
changing learning rates, to ~1e-15 in float64).

**A replica's bits do not depend on its stack.** Every step takes the same three steps, whether the stack holds one
run or many and whether its learning rates differ or not, and uses only element-wise kernels whose vectorised body
and scalar tail round alike (``add``, ``mul``, ``lerp``, ``addcmul``, ``addcdiv``, ``sqrt``, ``div``): an element's
result then does not depend on where it lies in the flat buffer of R replicas, so replica r steps bit for bit as it
would alone. torch's *fused* SGD and Adam kernels are not used for that reason: their scalar tail rounds differently
from their vector body (measured here: a parameter's update changed with its offset in the buffer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from emabench.averaging.flat import flat_view
from emabench.optim import RMSpropNesterov, rmsprop_nesterov_step
from emabench.optim.rmsprop_nesterov import DEFAULTS as RMSPROP_NESTEROV_DEFAULTS

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "rmsprop_nesterov": RMSpropNesterov,
    "adam": torch.optim.Adam,
    "nadam": torch.optim.NAdam,
    "adamax": torch.optim.Adamax,
    "adamw": torch.optim.AdamW,
    "radam": torch.optim.RAdam,
}
DECOUPLED = frozenset({"adamw"})  # weight decay applied to the weights, not added to the gradient
# Rules whose state carries the learning rate (seed 004's velocity holds η·ĝ): they take each replica's lr and weight
# decay inside the step, replica by replica rows of the stacked parameters, instead of a step at lr 1 scaled after.
LR_INSIDE = frozenset({"rmsprop_nesterov"})


def build_optimizer(
    name: str, params: Sequence[torch.Tensor], options: dict[str, Any], *, scaled: bool = False
) -> torch.optim.Optimizer | ForeachAdam:
    """``torch.optim.<name>(params, lr=1, weight_decay=0, foreach=True, **options)``; Adam and AdamW (whose decoupled
    decay the stepper applies) as :class:`ForeachAdam`, the same arithmetic without the class, unless a gradient
    scaler (``scaled``) needs the class itself."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if name in ("adam", "adamw") and not scaled:
        return ForeachAdam(list(params), **options)
    if name == "rmsprop_nesterov":
        return LookAheadRMSprop(list(params), **options) if not scaled else RMSpropNesterov(list(params), **options)
    return OPTIMIZERS[name](list(params), lr=1.0, weight_decay=0.0, foreach=True, **options)


class ForeachAdam:
    """``torch.optim.Adam(lr=1, weight_decay=0, foreach=True)`` without the class: the same ``param_groups`` and
    ``state`` (``step``, a float32 count on the parameter's device, ``exp_avg``, ``exp_avg_sq``) and the same
    arithmetic (``torch.optim.adam._multi_tensor_adam``), at step ``t`` with gradient ``g``::

        m ← lerp(m, g, 1 − β₁);  v ← β₂·v + (1 − β₂)·g²
        θ ← θ − (1/(1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

    Why not the class: its first construction imports ``torch._dynamo`` (1.4–2 s here, more than a whole run of the
    seed study), and its ``step()`` bookkeeping (profiler hook, grouping, checks) costs ~90 µs a step, more than the
    seed model's whole update. ``tests/test_stepper.py`` holds it bit-equal to torch's own foreach Adam.
    """

    def __init__(self, params: list[torch.Tensor], *, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param_groups = [{"params": params, "lr": 1.0, "weight_decay": 0.0, "betas": tuple(betas), "eps": eps}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def step(self) -> None:
        if torch.is_grad_enabled():  # a trainer steps with autograd already off: no context per step
            with torch.no_grad():
                return self.step()
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        for param in group["params"]:
            state = self._state_of(param)
            state["step"] += 1
            t = state["step"].item()
            grad, exp_avg, exp_avg_sq = param.grad, state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = exp_avg_sq.sqrt().div_((1 - beta2**t) ** 0.5).add_(group["eps"])
            param.addcdiv_(exp_avg, denom, value=-1.0 / (1 - beta1**t))

    def _state_of(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.get(param)
        if state is None:  # torch's _init_group: a float32 step count (on the CPU unless capturable or fused)
            state = self.state[param] = {
                "step": torch.zeros((), dtype=torch.float32),
                "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
            }
        return state


class LookAheadRMSprop:
    """:class:`emabench.optim.RMSpropNesterov` without the class (whose first construction imports
    ``torch._dynamo``): the same ``state`` (``square_avg``, ``momentum_buffer``) and step,
    :func:`emabench.optim.rmsprop_nesterov_step`, with this step's learning rates and weight decays (floats, or a
    value per replica along dim 0) given to :meth:`step`."""

    def __init__(self, params: list[torch.Tensor], **options: float) -> None:
        settings = {k: v for k, v in RMSPROP_NESTEROV_DEFAULTS.items() if k not in ("lr", "weight_decay")} | options
        self.param_groups = [{"params": params, "lr": 1.0, "weight_decay": 0.0, **settings}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def step(self, lr: float | torch.Tensor = 1.0, weight_decay: float | torch.Tensor = 0.0) -> None:
        group = self.param_groups[0]
        params = group["params"]
        for param in params:
            if param not in self.state:  # r₀ = v₀ = 0
                self.state[param] = {"square_avg": torch.zeros_like(param), "momentum_buffer": torch.zeros_like(param)}
        rmsprop_nesterov_step(
            params, [p.grad for p in params], [self.state[p]["square_avg"] for p in params],
            [self.state[p]["momentum_buffer"] for p in params], lr=lr, alpha=group["alpha"],
            momentum=group["momentum"], eps=group["eps"], weight_decay=weight_decay,
        )  # fmt: skip


class ReplicaStepper:
    """Steps a torch optimizer over stacked parameters ``(R, …)`` with per-replica lr, weight decay and clipping.

    Args:
        name: a key of :data:`OPTIMIZERS`.
        params: the stacked parameters (every one with the replica dimension first; their ``.grad`` set).
        options: the optimizer's other arguments (``betas``, ``momentum``, …), shared by the stack.
        weight_decays: ``λ_r`` per replica.
        clip_norms: ``c_r`` per replica, or ``None`` for no clipping (a replica with ``inf`` is not clipped).
        stacked: ``False`` for one plain model (no replica dimension; R = 1).
        scaled: a ``GradScaler`` will drive the steps (fp16): the torch class itself is used.
    """

    def __init__(
        self,
        name: str,
        params: Sequence[torch.Tensor],
        options: dict[str, Any],
        *,
        weight_decays: Sequence[float],
        clip_norms: Sequence[float] | None = None,
        stacked: bool = True,
        scaled: bool = False,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        self.name = name
        self.params = list(params)
        self.stacked = stacked
        self.prebuilt = optimizer is not None  # a class by import path: its own lr and weight decay, inside its step
        self._flat = self._flat_leaf()
        self.optimizer = (
            optimizer if optimizer is not None else build_optimizer(name, self._targets(), options, scaled=scaled)
        )
        self.weight_decays = [float(w) for w in weight_decays]
        self.clip_norms = None if clip_norms is None else [float(c) for c in clip_norms]
        self._previous: torch.Tensor | None = None  # θ_prev, reused between steps
        self._previous_views: list[torch.Tensor] = []  # θ_prev per parameter, views into it
        self._factors: _Factors | None = None  # this step's per-replica tensors, reused while lrs and decays hold

    def _flat_leaf(self) -> tuple[torch.Tensor, list[int], list[torch.Size]] | None:
        """The one buffer the optimizer steps, when the parameters lie in one and the learning rate is applied
        outside the step (a rule that takes it inside needs the replica dimension of each parameter)."""
        return _flat_leaf(self.params) if self.stacked and self.name not in LR_INSIDE and not self.prebuilt else None

    @property
    def replicas(self) -> int:
        return self.params[0].shape[0] if self.stacked else 1

    def _targets(self) -> list[torch.Tensor]:
        """What the torch optimizer steps: the parameters' one buffer when they lie in one (a single tensor: torch's
        per-parameter bookkeeping costs more than the arithmetic at this size), else the parameters themselves."""
        return [self._flat[0]] if self._flat is not None else self.params

    @torch.no_grad()
    def zero_grad(self) -> None:
        """Clear the gradients in place (one kernel when they lie in one buffer): backward accumulates into them."""
        flat = flat_view(self._grads())
        if flat is not None:
            flat[0].zero_()
        else:
            torch._foreach_zero_(self._grads())

    def step(self, lrs: Sequence[float], scaler: torch.amp.GradScaler | None = None) -> None:
        """One optimizer step with learning rate ``lrs[r]`` for replica r (gradients already in ``.grad``).

        With a ``scaler`` (fp16), gradients are unscaled first and a step with non-finite gradients is skipped, as
        ``GradScaler.step`` does (for the whole stack: fp16 runs are never stacked, see ``build.stack_key``).
        """
        if torch.is_grad_enabled():  # a trainer steps with autograd already off: no context per step
            with torch.no_grad():
                return self.step(lrs, scaler)
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        if self.clip_norms is not None:
            self._clip()
        if self.prebuilt:  # the stack shares one lr (build.stack_key): the class steps with it, as in a user's loop
            for group in self.optimizer.param_groups:
                group["lr"] = float(lrs[0])
            self._optimizer_step(scaler)
            return
        factors = self._factors_for(lrs)
        if self.name in LR_INSIDE:
            self._step_lr_inside(factors, scaler)
            return
        if factors.decays is not None:
            if self.name in DECOUPLED:
                torch._foreach_mul_(self.params, factors.decay_rows)
            else:
                torch._foreach_add_(self._grads(), torch._foreach_mul(self.params, factors.decay_rows))
        previous = self._snapshot()
        self._optimizer_step(scaler)
        torch._foreach_lerp_(previous, self.params, factors.lr_rows)
        if self._flat is not None:  # the parameters' one buffer: one copy
            self._flat[0].copy_(self._previous)
        else:
            torch._foreach_copy_(self.params, previous)

    def _factors_for(self, lrs: Sequence[float]) -> _Factors:
        """The step's per-replica tensors: built when the learning rates or weight decays change, else the last
        step's (building them is most of a small model's step; the values, and so the arithmetic, are the same)."""
        key = (tuple(float(v) for v in lrs), tuple(self.weight_decays))
        if self._factors is None or self._factors.key != key:
            device = self.params[0].device
            lr = torch.tensor(key[0], dtype=torch.float64, device=device)
            decays = torch.tensor(key[1], dtype=torch.float64, device=device) if any(key[1]) else None
            decay_rows = None
            if decays is not None:  # decoupled: θ_r·(1 − η_r·λ_r); L2: λ_r·θ_r added to the gradient
                decay_rows = _rows(1.0 - lr * decays if self.name in DECOUPLED else decays, self.params)
            self._factors = _Factors(key, lr, _rows(lr, self.params), decays, decay_rows)
        return self._factors

    def _step_lr_inside(self, factors: _Factors, scaler: torch.amp.GradScaler | None) -> None:
        """A rule whose state carries η: each replica's lr and L2 weight decay go into the step itself."""
        if self.stacked:  # fp16 (a scaler) is never stacked
            self.optimizer.step(factors.lr, factors.decays if factors.decays is not None else 0.0)
            return
        rate, decay = float(factors.lr[0]), self.weight_decays[0]  # one plain model: no replica dimension
        if scaler is None:
            self.optimizer.step(rate, decay)
            return
        group = self.optimizer.param_groups[0]  # torch's class, for GradScaler.step
        group["lr"], group["weight_decay"] = rate, decay
        self._optimizer_step(scaler)

    def _optimizer_step(self, scaler: torch.amp.GradScaler | None) -> None:
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.params]

    def _snapshot(self) -> list[torch.Tensor]:
        """``θ_prev``: a copy of the parameters, in one buffer when they lie in one (one ``copy_``; the buffer and
        its views per parameter kept for the next step)."""
        flat = self._flat[:2] if self._flat is not None else flat_view(self.params)
        if flat is None:
            return [p.detach().clone() for p in self.params]
        buffer, offsets = flat
        if self._previous is None or self._previous.shape != buffer.shape:
            self._previous = torch.empty_like(buffer)
            self._previous_views = [self._previous[o : o + p.numel()].view_as(p) for o, p in zip(offsets, self.params)]
        self._previous.copy_(buffer)
        return self._previous_views

    def _clip(self) -> None:
        """Per replica, torch's ``clip_grad_norm_`` rule: scale by ``min(1, c/(‖g‖ + 1e-6))``."""
        if not self.stacked:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norms[0])
            return
        grads = self._grads()
        squares = torch.stack([g.detach().flatten(1).double().square().sum(1) for g in grads]).sum(0)
        limits = torch.tensor(self.clip_norms, dtype=torch.float64, device=squares.device)
        scale = (limits / (squares.sqrt() + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, _rows(scale, grads))

    def state_views(self) -> list[dict[str, Any]]:
        """The optimizer's state per parameter: tensors shaped like the parameter (views into the one buffer's
        state when the optimizer steps the buffer), shared scalars (step counts) as they are."""
        if self._flat is None:
            return [dict(self.optimizer.state.get(p, {})) for p in self.params]
        flat, offsets, shapes = self._flat
        state = self.optimizer.state.get(flat, {})
        return [
            {
                key: value[o : o + shape.numel()].view(shape) if _per_element(value, flat) else value
                for key, value in state.items()
            }
            for o, shape in zip(offsets, shapes)
        ]

    @torch.no_grad()
    def load_state_views(self, views: Sequence[dict[str, Any]]) -> None:
        """Inverse of :meth:`state_views` (each tensor moved to its parameter's device and dtype, step counts kept)."""
        if not views or not views[0]:
            return
        if self._flat is None:
            for param, view in zip(self.params, views):
                self.optimizer.state[param] = {k: _like(v, param) for k, v in view.items()}
            return
        flat = self._flat[0]
        state = {}
        for key, value in views[0].items():
            if isinstance(value, torch.Tensor) and value.dim() >= 1:
                state[key] = _like(torch.cat([view[key].reshape(-1) for view in views]), flat)
            else:
                state[key] = value.clone() if isinstance(value, torch.Tensor) else value
        self.optimizer.state[flat] = state

    @torch.no_grad()
    def select(self, index: torch.Tensor) -> None:
        """Keep the optimizer state of the replicas at ``index`` (after the model cut and re-packed its parameters:
        the parameter objects are the same, their storage is new)."""
        rows = index.tolist()
        kept = [{k: _cut(v, index) for k, v in view.items()} for view in self.state_views()]
        self._flat = self._flat_leaf()
        self.optimizer.state.clear()
        self.optimizer.param_groups[0]["params"] = self._targets()
        self.load_state_views(kept)
        self.weight_decays = [self.weight_decays[r] for r in rows]
        if self.clip_norms is not None:
            self.clip_norms = [self.clip_norms[r] for r in rows]
        self._previous = None
        self._factors = None


@dataclass(frozen=True)
class _Factors:
    """One step's per-replica tensors: ``lr`` (η_r) and ``decays`` (λ_r, ``None`` when none decays) as float64
    vectors, and their views over each parameter's rows (``decay_rows``: the decoupled shrink or the L2 factor)."""

    key: tuple[tuple[float, ...], tuple[float, ...]]
    lr: torch.Tensor
    lr_rows: list[torch.Tensor]
    decays: torch.Tensor | None
    decay_rows: list[torch.Tensor] | None


def _flat_leaf(params: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int], list[torch.Size]] | None:
    """A leaf tensor over the one buffer the parameters tile (its ``.grad`` over their gradients' buffer, laid out
    alike), each parameter's offset in it and its shape; ``None`` when they are not packed that way."""
    flat = flat_view(params)
    grads = flat_view([p.grad for p in params]) if all(p.grad is not None for p in params) else None
    if flat is None or grads is None or flat[1] != grads[1]:
        return None
    leaf, offsets = flat
    leaf.grad = grads[0]
    return leaf, offsets, [p.shape for p in params]


def _per_element(value: Any, flat: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() == flat.numel()


def _like(value: Any, param: torch.Tensor) -> Any:
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return value.clone() if isinstance(value, torch.Tensor) else value  # a step count keeps its own dtype
    return value.to(device=param.device, dtype=param.dtype)


def _rows(values: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A per-replica vector as a view broadcasting over each tensor's rows (dtype and device of the tensor)."""
    return [values.to(t.dtype).view(-1, *[1] * (t.dim() - 1)) for t in like]


def _cut(value: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` of a per-replica state tensor; scalars (step counts shared by the stack) as they are."""
    if isinstance(value, torch.Tensor) and value.dim() >= 1:
        return value.index_select(0, index.to(value.device))
    return value
