"""RMSProp with Nesterov momentum, as seed 004 writes it, for a loop that takes gradients at the parameters it holds.

The rule (η learning rate, ρ decay, α momentum, δ for stability inside the square root, r₀ = v₀ = 0)::

    θ̃_t     = θ_t + α·v_t                        look ahead
    g_t      = ∇L(θ̃_t)                            gradient at the look-ahead point
    r_{t+1}  = ρ·r_t + (1 − ρ)·g_t∘g_t
    v_{t+1}  = α·v_t − η_t/√(δ + r_{t+1}) ∘ g_t
    θ_{t+1}  = θ_t + v_{t+1}

**Change of variables.** A training loop computes the gradient at the parameters it holds, so they must hold the
look-ahead point ``φ_t = θ_t + α·v_t`` (torch's SGD does the same for its Nesterov option). Write
``u_t = η_t/√(δ + r_{t+1}) ∘ g_t``, so that ``v_{t+1} = α·v_t − u_t``. Then, with ``θ_t = φ_t − α·v_t``::

    φ_{t+1} = θ_{t+1} + α·v_{t+1}
            = θ_t + (1 + α)·v_{t+1}
            = φ_t − α·v_t + (1 + α)·(α·v_t − u_t)
            = φ_t + α·(α·v_t − u_t) − u_t
            = φ_t + α·v_{t+1} − u_t,

and ``g_t = ∇L(φ_t)`` is the gradient at the parameters held. One step is therefore::

    g       ← g + λ·φ                      L2 weight decay (λ/2·‖θ̃‖² added to L, as torch's RMSprop adds it)
    r       ← ρ·r + (1 − ρ)·g∘g
    u       = g / √(δ + r) · η
    v       ← α·v − u
    φ       ← φ + α·v − u

with the state ``r`` and ``v`` per parameter (``square_avg`` and ``momentum_buffer``, zero at the start, so
``φ₀ = θ₀``). The seed's own iterate is ``θ_t = φ_t − α·v_t``; the parameters hold ``φ_t``, the point the gradient
is taken at, as torch's Nesterov SGD leaves its look-ahead point in the parameters.

**A learning rate that changes between steps.** ``v`` carries η inside it: ``v_{t+1} = −Σ_{k≤t} α^{t−k}·η_k·ĝ_k``
with ``ĝ_k = g_k/√(δ + r_{k+1})``, each past step keeping the learning rate it was taken with, and ``η_t`` enters the
step at ``t`` only (through ``u_t``). This module keeps exactly that. Keeping a state free of η and scaling the whole
update by the current η (how torch's optimizers apply a learning rate, and how a per-replica rate can be applied
outside torch's classes) would instead rescale the remembered velocity to ``η_t``: equal for a constant η, different
under a schedule (after a plateau halves η the seed's velocity still carries the old steps, fading as ``α^k``; the
rescaled one halves at once). The momentum α is a constant of the rule: the change of variables uses the same α for
the look-ahead and for the velocity, so changing it mid-run leaves the seed's rule.

**Per replica.** ``lr`` and ``weight_decay`` may be tensors: a 1-D tensor of length R with parameters whose dim 0 is
the replica dimension (R models stacked in one tensor: row ``r`` steps with ``lr[r]``), or a tensor shaped like the
parameter (one value per element, e.g. each replica's rate spread over a flat buffer that holds every replica's
parameters). The step uses only elementwise ops (``mul``, ``addcmul``, ``add``, ``sub``, ``div``, ``sqrt``), the
same ones for a float and for a tensor rate, so an element's result depends on its own values only: not on its
position in a buffer nor on the stack's size. For float32 and float64 parameters a row of a stack steps bit for bit
as the same values stepped alone with ``lr=float(lr[r])`` (``tests/test_rmsprop_nesterov.py``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

Rate = float | Tensor  # a float for every element, or per replica (R,) or per element (the parameter's shape)
DEFAULTS = {"lr": 1e-2, "alpha": 0.99, "momentum": 0.9, "eps": 1e-6, "weight_decay": 0.0}  # see RMSpropNesterov


def rmsprop_nesterov_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    square_avgs: Sequence[Tensor],
    velocities: Sequence[Tensor],
    *,
    lr: Rate,
    alpha: float,
    momentum: float,
    eps: float,
    weight_decay: Rate = 0.0,
) -> None:
    """One step of RMSProp with Nesterov momentum on the look-ahead parameters ``φ``, in place (see the module).

    Args:
        params: the parameters ``φ`` (the look-ahead point; their gradients are ``grads``).
        grads: ``∇L(φ)``, one per parameter (not modified).
        square_avgs: ``r`` per parameter (zeros before the first step), updated in place.
        velocities: ``v`` per parameter (zeros before the first step; η inside), updated in place.
        lr: η for this step: a float, a 1-D tensor of length R for parameters whose dim 0 holds R replicas, or a
            tensor shaped like each parameter (one value per element).
        alpha: ρ, the squared gradients' decay, in [0, 1).
        momentum: α, the velocity's decay, in [0, 1).
        eps: δ > 0, added to ``r`` inside the square root.
        weight_decay: λ, L2 added to the gradient (``g + λ·φ``); shaped like ``lr``.

    Values are not checked here (the caller's construction does it, as :class:`RMSpropNesterov` does); shapes are.
    """
    for param, grad, square_avg, velocity in zip(params, grads, square_avgs, velocities, strict=True):
        rate = _broadcast(lr, param, "lr")
        decay = _broadcast(weight_decay, param, "weight_decay")
        if isinstance(decay, Tensor) or decay != 0.0:
            grad = grad + param * decay
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1.0 - alpha)
        update = grad.div(square_avg.add(eps).sqrt_()).mul_(rate)
        velocity.mul_(momentum).sub_(update)
        param.add_(velocity * momentum).sub_(update)


def _broadcast(value: Rate, param: Tensor, name: str) -> Rate:
    """``value`` as a float, or as a tensor of the parameter's dtype and device that broadcasts over it (rows for a
    per-replica vector); a one-line ``ValueError`` for a shape that fits neither."""
    if not isinstance(value, Tensor):
        return float(value)
    if value.dim() == 0 or value.shape == param.shape:
        return value.to(device=param.device, dtype=param.dtype)
    if value.dim() == 1 and param.dim() >= 1 and value.shape[0] == param.shape[0]:
        return value.to(device=param.device, dtype=param.dtype).view(-1, *[1] * (param.dim() - 1))
    raise ValueError(
        f"{name}: a tensor must have shape ({param.shape[0] if param.dim() else 1},) (one value per replica along "
        f"dim 0) or the parameter's shape {tuple(param.shape)}, got {tuple(value.shape)}"
    )


class RMSpropNesterov(torch.optim.Optimizer):
    """Seed 004's RMSProp with Nesterov momentum as a ``torch.optim.Optimizer`` (derivation in the module).

    Args:
        params: parameters or parameter groups, as for any torch optimizer.
        lr: η ≥ 0; a float, or a tensor per replica / per element (see :func:`rmsprop_nesterov_step`).
        alpha: ρ in [0, 1), the decay of the squared gradients' average (torch's RMSprop calls it ``alpha`` too).
        momentum: α in [0, 1), the Nesterov momentum (0: plain RMSProp with δ inside the square root).
        eps: δ > 0, finite, inside the square root as the seed writes it (``1e-6``, the value Goodfellow, Bengio and
            Courville's *Deep Learning* gives for this δ; torch's RMSprop puts its ``1e-8`` outside the root).
        weight_decay: λ ≥ 0, L2 added to the gradient; a float or a tensor like ``lr``.

    The parameters hold the look-ahead point ``φ = θ + α·v``; the state per parameter is ``square_avg`` (r) and
    ``momentum_buffer`` (v, with η inside). torch's learning-rate schedulers set a float ``lr`` between steps and
    each step uses the rate in force at that step only.

    Example::

        >>> model = torch.nn.Linear(3, 1)
        >>> optimizer = RMSpropNesterov(model.parameters(), lr=1e-2, alpha=0.99, momentum=0.9)
        >>> model(torch.ones(2, 3)).sum().backward()
        >>> optimizer.step()
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: Rate = DEFAULTS["lr"],
        alpha: float = DEFAULTS["alpha"],
        momentum: float = DEFAULTS["momentum"],
        eps: float = DEFAULTS["eps"],
        weight_decay: Rate = DEFAULTS["weight_decay"],
    ) -> None:
        defaults = {"lr": lr, "alpha": alpha, "momentum": momentum, "eps": eps, "weight_decay": weight_decay}
        _check(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, with the group's own settings checked first (and tensor rates' shapes)."""
        settings = {**self.defaults, **param_group}
        _check(settings)
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for param in params:
            _broadcast(settings["lr"], param, "lr")
            _broadcast(settings["weight_decay"], param, "weight_decay")
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step for every parameter with a gradient (``closure`` re-evaluates the loss, as torch's optimizers)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("RMSpropNesterov does not support sparse gradients")
            states = [self._state_of(p) for p in params]
            rmsprop_nesterov_step(
                params,
                [p.grad for p in params],
                [s["square_avg"] for s in states],
                [s["momentum_buffer"] for s in states],
                lr=group["lr"],
                alpha=group["alpha"],
                momentum=group["momentum"],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
            )
        return loss

    def _state_of(self, param: Tensor) -> dict[str, Tensor]:
        state = self.state[param]
        if not state:  # r₀ = v₀ = 0
            state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state


def _check(settings: dict[str, Any]) -> None:
    """Refuse a setting outside its range with one line naming it, the allowed range and the value."""
    for name in ("lr", "weight_decay"):
        value = settings[name]
        if isinstance(value, Tensor):
            if not value.is_floating_point() or value.numel() == 0:
                raise ValueError(f"{name}: a tensor must be floating-point and not empty, got {value!r}")
            ok = bool(((value >= 0) & torch.isfinite(value)).all())
            shown = value.tolist()
        else:
            ok = isinstance(value, numbers.Real) and 0.0 <= value < math.inf
            shown = value
        if not ok:
            raise ValueError(f"{name} must be finite and ≥ 0, got {shown!r}")
    for name, symbol in (("alpha", "ρ"), ("momentum", "α")):
        value = settings[name]
        if not (isinstance(value, numbers.Real) and 0.0 <= value < 1.0):
            raise ValueError(f"{name} ({symbol}) must be in [0, 1), got {value!r}")
    eps = settings["eps"]
    if not (isinstance(eps, numbers.Real) and 0.0 < eps < math.inf):
        raise ValueError(f"eps (δ) must be finite and > 0, got {eps!r}")
