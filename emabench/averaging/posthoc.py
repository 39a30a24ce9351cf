"""Post-hoc EMA (Karras et al. 2024, EDM2, Section 3.2 and Algorithm 3): choose the EMA length after training.

During training, two or more power-function EMAs (:class:`PowerEMA`) are tracked and their averages are snapshotted
at steps ``t_i``. Any snapshot is ``θ̂_i = ∫ f_i(τ)·θ(τ) dτ`` for the power profile ``f_i = f_{γ_i, t_i}``, so a
weighted sum ``Σ x_i·θ̂_i`` has the profile ``Σ x_i·f_i``. Least squares in profile space (the Gram system
``A x = b`` with ``A_ij = ⟨f_i, f_j⟩``, ``b_i = ⟨f_i, f_r⟩``) gives the weights that best reproduce a target profile
``f_r``; the residual ``‖Σ x_i f_i − f_r‖ / ‖f_r‖`` is reported as the fit error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy
from emabench.averaging.checks import check_int, check_number
from emabench.averaging.power import GAMMA_MAX, PowerEMA, sigma_rel_to_gamma

DEFAULT_SIGMA_RELS = (0.05, 0.28)  # ema-pytorch's default pair: a short and a long profile

Snapshot = dict  # {"step": int, "gamma": float, "state": {name: CPU tensor}}: plain types, safe for weights_only loads


def power_function_inner_product(t_a, gamma_a, t_b, gamma_b) -> torch.Tensor:  # noqa: ANN001 - tensors or floats
    """EDM2 Eq. 151 (``p_dot_p`` of Algorithm 3): ``⟨f_a, f_b⟩ = ∫₀^∞ f_{γa,ta}(τ)·f_{γb,tb}(τ) dτ``

    ``= (γa + 1)(γb + 1) / ((γa + γb + 1)·max(ta, tb)) · (ta/tb)^(γb if ta < tb else −γa)``, for
    ``f_{γ,t}(τ) = (γ + 1)·τ^γ / t^(γ+1)`` on ``[0, t]``. Broadcasts; float64. Needs ``γa + γb > −1``.
    """
    t_a, gamma_a, t_b, gamma_b = (torch.as_tensor(x, dtype=torch.float64) for x in (t_a, gamma_a, t_b, gamma_b))
    exponent = torch.where(t_a < t_b, gamma_b, -gamma_a)  # keeps the ratio's power ≤ 1: no overflow
    numerator = (gamma_a + 1) * (gamma_b + 1) * (t_a / t_b) ** exponent
    return numerator / ((gamma_a + gamma_b + 1) * torch.maximum(t_a, t_b))


def solve_weights(
    t_i: Sequence[float] | torch.Tensor,
    gamma_i: Sequence[float] | torch.Tensor,
    t_r: float,
    gamma_r: float,
) -> tuple[torch.Tensor, float]:
    """EDM2 Algorithm 3: weights ``x`` with ``Σ x_i·f_{γ_i,t_i} ≈ f_{γ_r,t_r}`` in the least-squares sense.

    Solves ``A x = b`` (``A_ij = ⟨f_i, f_j⟩``, ``b_i = ⟨f_i, f_r⟩``) by SVD least squares, which tolerates
    near-duplicate snapshots, then rescales ``x`` to sum to 1 as EDM2's reconstruction does (a constant θ is kept
    exactly). Returns ``(x, fit_error)`` with ``fit_error = ‖Σ x_i f_i − f_r‖ / ‖f_r‖``.
    """
    t_i = torch.as_tensor(t_i, dtype=torch.float64).reshape(-1)
    gamma_i = torch.as_tensor(gamma_i, dtype=torch.float64).reshape(-1)
    if t_i.numel() == 0 or t_i.shape != gamma_i.shape:
        raise ValueError(f"need one gamma per snapshot time and at least one, got {t_i.numel()} and {gamma_i.numel()}")
    if not (bool((t_i > 0).all()) and t_r > 0):
        raise ValueError(f"snapshot and target times must be > 0, got t_i={t_i.tolist()}, t_r={t_r}")
    gammas = torch.cat([gamma_i, torch.tensor([float(gamma_r)], dtype=torch.float64)])
    if not bool((gammas > -0.5).all()):  # ⟨f_a, f_b⟩ is finite only for γa + γb > −1
        raise ValueError(f"gammas must be > -0.5 for post-hoc synthesis, got {gammas.tolist()}")
    a = power_function_inner_product(t_i[:, None], gamma_i[:, None], t_i[None, :], gamma_i[None, :])
    b = power_function_inner_product(t_i, gamma_i, t_r, gamma_r)
    x = torch.linalg.lstsq(a, b[:, None], driver="gelsd").solution[:, 0]
    x = x / x.sum()
    target_norm2 = power_function_inner_product(t_r, gamma_r, t_r, gamma_r)
    residual2 = (x @ a @ x - 2.0 * x @ b + target_norm2).clamp(min=0.0)
    return x, float(torch.sqrt(residual2 / target_norm2))


class PostHocEMA(Averager):
    """Tracks ≥ 2 power-function EMA profiles, snapshots them, and synthesizes any other profile afterwards.

    Each ``update(t)`` advances every profile (a :class:`PowerEMA`, averaging at steps ``1, k+1, 2k+1, …`` for
    ``k = update_every``); at steps that are multiples of ``snapshot_every`` (``None``: only when :meth:`snapshot`
    is called) each profile's averaged weights are copied to CPU memory with the step ``t_i`` of the profile's last
    update, which is what the solve uses. Nothing is written to disk: the snapshots are in :meth:`snapshots` and in
    ``state_dict()`` (``_extra_state``), for the caller to save.

    :meth:`synthesize` solves EDM2's least-squares system over the snapshots up to a step, writes the synthesized
    weights into ``averaged_model`` (so ``swapped_into`` evaluates them) and returns them with the fit error. Until
    the first synthesis there is no average to evaluate: ``averaged_model``, ``ema_model``, calling the averager and
    ``swapped_into`` raise ``RuntimeError`` instead of serving the weights the model had at construction.

    Give ``sigma_rels`` (each in (0, 0.3003]) or ``gammas`` (each > −0.5), default ``sigma_rels=(0.05, 0.28)``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        sigma_rels: Sequence[float] | None = None,
        gammas: Sequence[float] | None = None,
        snapshot_every: int | None,
        update_every: int = 1,
        buffers: BufferPolicy = "average",
        dtype: torch.dtype | None = None,
    ) -> None:
        gammas = _profile_gammas(sigma_rels, gammas)
        update_every = check_int("update_every", update_every, 1)
        if snapshot_every is not None and check_int("snapshot_every", snapshot_every, 1) % update_every != 0:
            raise ValueError(f"snapshot_every must be a multiple of update_every={update_every}, got {snapshot_every}")
        super().__init__(model, buffers=buffers, dtype=dtype)
        self.snapshot_every = None if snapshot_every is None else int(snapshot_every)
        self.update_every = update_every
        self.profiles = nn.ModuleList(
            PowerEMA(model, gamma=g, update_every=update_every, buffers=buffers, dtype=dtype) for g in gammas
        )
        self._snapshots: list[Snapshot] = []
        self.fit_error: float | None = None  # of the last synthesis
        self._register_counter("synthesized", False)

    @property
    def averaged_model(self) -> nn.Module:
        """The last synthesized average (``RuntimeError`` before any :meth:`synthesize`)."""
        if not self._counts.synthesized:
            raise RuntimeError(
                "PostHocEMA holds no average until synthesize(sigma_rel=...) is called; "
                "its snapshots are in snapshots(), its running profiles in profiles"
            )
        return self._modules["averaged_model"]

    @property
    def gammas(self) -> list[float]:
        return [profile.gamma for profile in self.profiles]

    def _weight(self, last: int, step: int) -> None:
        for profile in self.profiles:
            profile.update(step)
        every = self.snapshot_every
        if every is not None and step // every != last // every:
            self.snapshot()
        return None  # the profiles hold the averages; this one's own copy is only written by synthesize()

    def snapshot(self) -> None:
        """Store a CPU copy of every profile's average with its last update step (skipped if already stored)."""
        for profile in self.profiles:
            step = profile.last_update_step
            if step == 0:
                raise RuntimeError("nothing to snapshot: the profiles have not been updated yet")
            if any(s["step"] == step and s["gamma"] == profile.gamma for s in self._snapshots):
                continue
            state = {k: v.detach().to("cpu", copy=True) for k, v in profile.averaged_model.state_dict().items()}
            self._snapshots.append({"step": step, "gamma": profile.gamma, "state": state})

    @contextlib.contextmanager
    def current_snapshot(self) -> Iterator[None]:
        """Temporarily add a snapshot of the profiles as they are now (for a synthesis at the current step that
        does not lag behind the last periodic snapshot); the stored snapshots are left exactly as they were."""
        before = list(self._snapshots)
        try:
            self.snapshot()
            yield
        finally:
            self._snapshots = before

    def snapshots(self) -> list[Snapshot]:
        """The stored snapshots, oldest first: ``{"step": t, "gamma": γ, "state": averaged state_dict on CPU}``."""
        return list(self._snapshots)

    def get_extra_state(self) -> dict:
        return {"snapshots": list(self._snapshots)}

    def set_extra_state(self, state: dict) -> None:
        self._snapshots = list(state["snapshots"])

    @torch.no_grad()
    def synthesize(
        self, *, sigma_rel: float | None = None, gamma: float | None = None, step: int | None = None
    ) -> tuple[dict[str, torch.Tensor], float]:
        """The average a power EMA of ``sigma_rel`` (or ``gamma``) would hold at ``step`` (default: the last snapshot).

        Uses the snapshots taken at or before ``step``. Returns ``(state_dict on CPU, fit_error)`` and loads the
        result into ``averaged_model``; tensors that are not averaged come from the latest snapshot used. A ``step``
        between snapshots is allowed: ``fit_error`` (relative L2 error of the reconstructed profile) shows the cost.
        """
        if (gamma is None) == (sigma_rel is None):
            raise ValueError(f"give exactly one of gamma or sigma_rel, got gamma={gamma}, sigma_rel={sigma_rel}")
        gamma = sigma_rel_to_gamma(sigma_rel) if gamma is None else float(gamma)
        snaps = [s for s in self._snapshots if step is None or s["step"] <= step]
        if not snaps:
            raise ValueError(f"no snapshot at or before step {step} (snapshots: {len(self._snapshots)})")
        latest = max(snaps, key=lambda s: s["step"])
        step = latest["step"] if step is None else step
        weights, error = solve_weights([s["step"] for s in snaps], [s["gamma"] for s in snaps], step, gamma)
        names = self._averaged_names(latest["state"])
        sums = [torch.zeros_like(latest["state"][k], dtype=torch.float64) for k in names]
        for weight, snap in zip(weights.tolist(), snaps):
            torch._foreach_add_(sums, [snap["state"][k] for k in names], alpha=weight)
        result = {k: v.clone() for k, v in latest["state"].items()}
        result.update({k: s.to(latest["state"][k].dtype) for k, s in zip(names, sums)})
        self._modules["averaged_model"].load_state_dict(result)
        self._counts.synthesized = True
        self.fit_error = error
        return result, error

    def _averaged_names(self, state: dict[str, torch.Tensor]) -> list[str]:
        averaged = self._modules["averaged_model"]
        named = list(averaged.named_parameters())
        if self.buffer_policy == "average":
            named += list(averaged.named_buffers())
        return [name for name, t in named if t.is_floating_point() and name in state]


def _profile_gammas(sigma_rels: Sequence[float] | None, gammas: Sequence[float] | None) -> list[float]:
    if sigma_rels is not None and gammas is not None:
        raise ValueError(f"give sigma_rels or gammas, not both, got sigma_rels={sigma_rels}, gammas={gammas}")
    if gammas is None:
        gammas = [sigma_rel_to_gamma(float(s)) for s in (DEFAULT_SIGMA_RELS if sigma_rels is None else sigma_rels)]
    gammas = [check_number("gammas", g, low=-0.5, high=GAMMA_MAX, low_open=True) for g in gammas]
    if len(gammas) < 2:
        raise ValueError(f"post-hoc EMA needs at least two profiles, got {len(gammas)}: {gammas}")
    if len(set(gammas)) != len(gammas):
        raise ValueError(f"the profiles' gammas must differ, got {gammas}")
    return gammas
