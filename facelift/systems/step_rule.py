"""FaceLift's optimizer-step rule, kept apart from Lightning so it can be read and tested on its own.

In this order: a NaN/Inf loss skips the step; optionally NaN/Inf gradient entries are replaced (NaN -> 0,
±Inf -> ±1e-3; off by default so problems stay visible); the total gradient norm is clipped to ``grad_clip_norm``;
if the norm before clipping exceeds ``grad_clip_norm * allowed_gradnorm_factor`` the step is skipped.
The LR schedule advances either way (the caller's business). Every skip is counted by reason.

`decide` reads the loss and the norm on the host (two syncs a step). `decide_on_device` (``on_device``) takes the
same decision as tensors on the device and leaves the skip to a fused optimizer (its ``found_inf`` input: where set,
parameters, moments and step count stay as they were), so a step never waits for the GPU; counts and warnings are
read at logging intervals (`flush`).
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
class DeviceDecision:
    skip: Tensor  # [] float32 on the device: 1.0 where the update must be dropped (a fused optimizer's found_inf)
    grad_norm: Tensor  # [] total norm before clipping (nan when not computed)


@dataclass
class StepRule:
    grad_clip_norm: float = 1.0  # clip the total gradient norm to this (<= 0: no clipping, no norm skip)
    allowed_gradnorm_factor: float = 20.0  # skip the update when the norm exceeds clip x this
    sanitize_gradients: bool = False  # replace NaN/Inf gradient entries before clipping (FaceLift's habit)
    on_device: bool = False  # decide_on_device: no host sync a step (needs a fused optimizer)
    skipped: Counter = field(default_factory=Counter)  # reason -> count, saved in checkpoints
    pending: Tensor | None = field(default=None, repr=False)  # [3] long on the device: skips not yet in `skipped`

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

    def decide_on_device(self, loss: Tensor, params: list[Tensor], any_rank=lambda flags: flags) -> DeviceDecision:
        """`decide` as tensors, without reading anything back: the caller hands ``skip`` to a fused optimizer.

        ``any_rank`` reduces a float tensor of flags over data-parallel ranks by max (no host sync either)."""
        grads = [p.grad for p in params if p.grad is not None]
        bad_loss = ~torch.isfinite(loss.detach()).all()
        if self.sanitize_gradients:  # `decide` sanitizes only after a finite loss; a skipped step never uses them
            for g in grads:
                g.nan_to_num_(nan=0.0, posinf=1e-3, neginf=-1e-3)
        if self.grad_clip_norm > 0 and grads:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip_norm)
            bad_norm, too_large = ~torch.isfinite(norm), norm > self.grad_clip_norm * self.allowed_gradnorm_factor
        else:
            norm = torch.full((), float("nan"), device=loss.device)
            bad_norm = too_large = torch.zeros((), dtype=torch.bool, device=loss.device)
        flags = any_rank(torch.stack([bad_loss, bad_norm, too_large]).float()) > 0  # [3] in SKIP_REASONS order
        first = flags & (flags.cumsum(0) == 1)  # one reason per skip, in `decide`'s order
        self.pending = first.long() if self.pending is None else self.pending + first.long()
        return DeviceDecision(flags.any().float(), torch.where(flags[0], torch.nan, norm.detach().float()))

    def flush(self) -> Counter:
        """Move the device's pending counts into `skipped` (one host read); returns the skips since the last call."""
        new = Counter()
        if self.pending is not None:
            new.update({r: n for r, n in zip(SKIP_REASONS, self.pending.tolist()) if n})
            self.skipped.update(new)
            self.pending = None
        return new

    def _skip(self, reason: str, norm: float) -> StepDecision:
        self.skipped[reason] += 1
        return StepDecision(True, reason, norm)
