"""Adam with a learning rate and weight decay per replica of a stacked model.

``torch.optim.Adam`` keeps one learning rate per parameter tensor, but a stacked sweep needs one per *replica*
(row of the flat parameter), each with its own plateau scheduler. These follow torch's formulas line for line and
are tested against ``torch.optim.Adam`` (the schedules per replica are in :mod:`emabench.train.control`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from emabench.averaging.flat import flat_view, pack_


class StackedAdam:
    """Adam (``torch.optim.Adam``: L2 weight decay, no amsgrad) over tensors with a leading replica dimension,
    with a learning rate and weight decay per replica.

    ``g ← g + wd·θ;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
    θ ← θ − lr/(1−β1^t) · m / (√v / √(1−β2^t) + eps)``.

    Replicas that share ``(lr, weight_decay)`` are updated together by torch's fused Adam kernel (the one behind
    ``torch.optim.Adam(fused=True)``): one call for the whole stack in the common case.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: Sequence[float],
        weight_decay: Sequence[float],
        betas: tuple[float, float],
        eps: float,
    ) -> None:
        self.params = list(params)
        self.replicas = self.params[0].shape[0]
        self.weight_decays = [float(x) for x in weight_decay]
        self.lrs = [float(x) for x in lr]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = _packed_zeros(self.params)
        self.exp_avg_sq = _packed_zeros(self.params)
        self.step_t = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        self._groups: list[tuple[float, float, list[list[torch.Tensor]]]] = []
        self._grouped_grads: list[torch.Tensor | None] = []

    @property
    def step_count(self) -> int:
        return int(self.step_t)

    def _group_replicas(self, grads: list[torch.Tensor]) -> list[tuple[float, float, list[list[torch.Tensor]]]]:
        """``(lr, wd, [params, grads, exp_avgs, exp_avg_sqs])`` per distinct ``(lr, wd)``: whole tensors when
        every replica shares them, else the rows ``t[r]`` of the replicas in the group."""
        tensors = (self.params, grads, self.exp_avg, self.exp_avg_sq)
        keys = list(zip(self.lrs, self.weight_decays))
        if len(set(keys)) == 1:
            flats = [flat_view(ts) for ts in tensors]
            if all(f is not None and f[1] == flats[0][1] for f in flats):  # one buffer each, same layout
                return [(*keys[0], [[f[0]] for f in flats])]
            return [(*keys[0], list(map(list, tensors)))]
        groups: dict[tuple[float, float], list[int]] = {}
        for r, key in enumerate(keys):
            groups.setdefault(key, []).append(r)
        return [(lr, wd, [[t[r] for r in rows for t in ts] for ts in tensors]) for (lr, wd), rows in groups.items()]

    def set_lrs(self, lrs: Sequence[float]) -> None:
        if list(lrs) != self.lrs:
            self.lrs = [float(x) for x in lrs]
            self._grouped_grads = []  # regroup at the next step

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if any(a is not b for a, b in zip(grads, self._grouped_grads)) or not self._grouped_grads:
            self._groups, self._grouped_grads = self._group_replicas(grads), grads
        self.step_t += 1
        for lr, wd, (params, group_grads, exp_avgs, exp_avg_sqs) in self._groups:
            torch._fused_adam_(
                params, group_grads, exp_avgs, exp_avg_sqs, [], [self.step_t] * len(params),
                lr=lr, beta1=self.beta1, beta2=self.beta2, weight_decay=wd, eps=self.eps,
                amsgrad=False, maximize=False,
            )  # fmt: skip

    @torch.no_grad()
    def select(self, index: torch.Tensor) -> None:
        """Keep only the replicas at ``index`` (the caller has already cut the parameters the same way)."""
        rows = index.tolist()
        for states in (self.exp_avg, self.exp_avg_sq):
            for i, t in enumerate(states):
                states[i] = t.index_select(0, index.to(t.device))
            pack_(states)
        self.lrs = [self.lrs[r] for r in rows]
        self.weight_decays = [self.weight_decays[r] for r in rows]
        self._grouped_grads = []

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "lrs": list(self.lrs),
            "step": self.step_t.clone(),
            "exp_avg": self.exp_avg,
            "exp_avg_sq": self.exp_avg_sq,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_lrs(state["lrs"])
        self.step_t.copy_(state["step"])
        for ours, theirs in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"]):
            ours.copy_(theirs)


def _packed_zeros(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Zeros shaped like ``params``, laid out in one buffer like theirs (so the fused kernel can take it whole)."""
    zeros = [torch.zeros_like(p) for p in params]
    pack_(zeros)
    return zeros
