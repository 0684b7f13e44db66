"""FaceLift's optimizer-step rule, kept apart from Lightning so it can be read and tested on its own.

In this order: a NaN/Inf loss skips the step; optionally NaN/Inf gradient entries are replaced (NaN -> 0,
±Inf -> ±1e-3; off by default so problems stay visible); the total gradient norm is clipped to ``grad_clip_norm``;
if the norm before clipping exceeds ``grad_clip_norm * allowed_gradnorm_factor`` the step is skipped.
The LR schedule advances either way (the caller's business). Every skip is counted by reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import Tensor

SKIP_REASONS = ("nonfinite_loss", "nonfinite_grad", "gradnorm")


@dataclass
class StepDecision:
    skip: bool
    reason: str | None  # "nonfinite_loss" | "gradnorm" | "nonfinite_grad" | None
    grad_norm: float  # total norm before clipping (nan when not computed)


@dataclass
class StepRule:
    grad_clip_norm: float = 1.0  # clip the total gradient norm to this (<= 0: no clipping, no norm skip)
    allowed_gradnorm_factor: float = 20.0  # skip the update when the norm exceeds clip x this
    sanitize_gradients: bool = False  # replace NaN/Inf gradient entries before clipping (FaceLift's habit)
    skipped: Counter = field(default_factory=Counter)  # reason -> count, saved in checkpoints

    def decide(self, loss: Tensor, params: list[Tensor], any_rank=lambda flag: flag) -> StepDecision:
        """Check the loss, clip gradients of ``params`` in place, and say whether to step.

        ``any_rank`` reduces a boolean over data-parallel ranks so every rank takes the same decision.
        """
        grads = [p.grad for p in params if p.grad is not None]
        if any_rank(not bool(torch.isfinite(loss.detach()).all())):
            return self._skip("nonfinite_loss", float("nan"))
        if self.sanitize_gradients:
            for g in grads:
                g.nan_to_num_(nan=0.0, posinf=1e-3, neginf=-1e-3)
        if self.grad_clip_norm <= 0 or not grads:
            return StepDecision(False, None, float("nan"))
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip_norm))
        if any_rank(not torch.isfinite(torch.tensor(norm)).item()):
            return self._skip("nonfinite_grad", norm)
        if norm > self.grad_clip_norm * self.allowed_gradnorm_factor:
            return self._skip("gradnorm", norm)
        return StepDecision(False, None, norm)

    def _skip(self, reason: str, norm: float) -> StepDecision:
        self.skipped[reason] += 1
        return StepDecision(True, reason, norm)
