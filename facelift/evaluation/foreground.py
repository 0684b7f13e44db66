"""Foreground metrics: what a lab scores when the subject covers a few percent of a white frame.

With T = target mask > 0.5 (the data's alpha) and P = rendered alpha > ``alpha_threshold``, per view:

- ``psnr_fg``: 10·log10(1 / MSE), the MSE over the pixels of T (mean over RGB);
- ``psnr_int``: the same over the pixels of T ∩ P (where truth and render both show the subject);
- ``iou`` = |T ∩ P| / |T ∪ P|, ``coverage`` = |T ∩ P| / |T|, ``precision`` = |T ∩ P| / |P|;
- ``fg_fraction`` = |T| / pixels (the share of the frame the subject covers; 0 for an empty mask).

Whole-image PSNR on such frames mostly scores the background. A view whose mask is empty has no foreground to
score: its foreground metrics are NaN, and so is any metric whose own denominator is empty (``precision`` when
nothing was rendered, ``psnr_int`` when T and P do not meet). Means leave the NaNs out and say how many
(`nan_mean`), so an empty view neither counts as 0 nor silently shrinks the group.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MASK_THRESHOLD = 0.5  # the target mask (the data's alpha, in [0, 1]) is foreground above this
FOREGROUND_METRICS = ("psnr_fg", "psnr_int", "iou", "coverage", "precision")  # NaN where undefined
METRICS = (*FOREGROUND_METRICS, "fg_fraction")  # every key foreground_scores returns, in report order


def foreground_scores(pred: Tensor, target: Tensor, mask: Tensor, alpha: Tensor,
                      alpha_threshold: float = 0.5) -> dict[str, Tensor]:
    """Per view ``[N]`` each (see the module doc) for renders ``pred`` and ``target`` ``[N, 3, H, W]`` in [0, 1],
    the target ``mask`` and rendered ``alpha`` ``[N, 1, H, W]``; float32 whatever the inputs."""
    true = (mask.float() > MASK_THRESHOLD).flatten(1)  # [N, H*W]
    drawn = (alpha.float() > alpha_threshold).flatten(1)  # [N, H*W]
    error = (pred.float().clamp(0, 1) - target.float()).square().mean(dim=1).flatten(1)  # [N, H*W] mean over RGB
    both = true & drawn
    n_true, n_drawn, n_both = true.sum(1).float(), drawn.sum(1).float(), both.sum(1).float()  # [N]
    n_union = (true | drawn).sum(1).float()
    empty = n_true == 0
    nan = torch.full_like(n_true, math.nan)

    def ratio(num: Tensor, den: Tensor) -> Tensor:
        return torch.where(den > 0, num / den.clamp_min(1), nan)

    def psnr(where: Tensor, count: Tensor) -> Tensor:
        mse = (error * where).sum(1) / count.clamp_min(1)
        return torch.where(count > 0, -10 * torch.log10(mse), nan)  # inf for an exact match, as whole-image PSNR

    scores = {"psnr_fg": psnr(true, n_true), "psnr_int": psnr(both, n_both), "iou": ratio(n_both, n_union),
              "coverage": ratio(n_both, n_true), "precision": ratio(n_both, n_drawn)}
    scores = {k: torch.where(empty, nan, v) for k, v in scores.items()}  # no foreground: nothing of it to score
    scores["fg_fraction"] = n_true / true.shape[1]
    return scores


def nan_mean(values) -> tuple[float, int]:
    """(mean of the finite-or-infinite values, number of NaNs left out); NaN when every value is NaN."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    return (math.fsum(kept) / len(kept) if kept else math.nan), len(values) - len(kept)
