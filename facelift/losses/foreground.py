"""The animal, not the background: the silhouette term and the per-pixel weights that give the foreground a share.

A mouse fills ~6 % of a 128² rig view. Averaged over all pixels, the reconstruction terms then mostly reward the
background, and a model that paints it with opaque Gaussians (an "opaque shell") scores well. Two remedies:

* `silhouette_loss`: the rendered alpha against the target mask (L1 or BCE), so empty space must stay empty and
  the animal must be opaque, whatever the background colour is.
* `foreground_weights`: per-view pixel weights that give the mask's pixels a fixed share ``s`` of a per-pixel term,
  ``w = s · m / Σm + (1 - s) · (1 - m) / Σ(1 - m)`` (sums over one view's pixels, ``m`` the soft mask), so
  ``Σ w = 1`` per view and ``Σ w · e`` is a weighted mean of the per-pixel error ``e``. ``s`` equal to the mask's
  own share of the view (``Σm / (H·W)``) gives ``w = 1 / (H·W)``, the plain mean. A view with an empty mask (or no
  background) has only one group: its weights are that group's plain mean.
"""

from __future__ import annotations

import torch
from torch import Tensor

SILHOUETTE_LOSSES = ("l1", "bce")
BCE_EPS = 1e-3  # BCE reads alpha clamped to [eps, 1 - eps]: its gradient stays below 1 / eps per pixel


def foreground_weights(mask: Tensor, share: float) -> Tensor:
    """``mask`` ``[N, 1, H, W]`` in [0, 1] -> weights ``[N, 1, H, W]`` that sum to 1 over each view, the mask's
    pixels holding ``share`` of it (see the module docstring for the formula and the empty-mask case)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"foreground share must be in [0, 1], got {share}")
    m = mask.float()
    fg_sum = m.sum(dim=(-2, -1), keepdim=True)  # [N, 1, 1, 1]
    bg_sum = (1.0 - m).sum(dim=(-2, -1), keepdim=True)
    has_fg, has_bg = (fg_sum > 0).float(), (bg_sum > 0).float()
    s_fg, s_bg = share * has_fg, (1.0 - share) * has_bg  # a group that is absent gets no share...
    norm = s_fg + s_bg
    # ...and the other group's share is scaled up to 1; with share 0 (1) and no background (foreground) both are 0:
    # the view falls back to the group that is there
    s_fg = torch.where(norm > 0, s_fg / norm.clamp_min(1e-12), has_fg)
    s_bg = torch.where(norm > 0, s_bg / norm.clamp_min(1e-12), 1.0 - has_fg)
    return s_fg * m / fg_sum.clamp_min(1e-12) + s_bg * (1.0 - m) / bg_sum.clamp_min(1e-12)


def weighted_mean(per_pixel: Tensor, weights: Tensor | None) -> Tensor:
    """``per_pixel`` ``[N, C, H, W]`` (C channels of one error map) -> a scalar: ``Σ_p w_p · mean_c e_c,p``
    averaged over the N views; ``weights`` ``[N, 1, H, W]`` summing to 1 per view, or None for the plain mean."""
    if weights is None:
        return per_pixel.mean()
    if weights.shape[-2:] != per_pixel.shape[-2:]:
        raise ValueError(f"weights {tuple(weights.shape)} and per-pixel map {tuple(per_pixel.shape)} differ in size")
    return (per_pixel.mean(dim=1, keepdim=True) * weights).sum(dim=(-3, -2, -1)).mean()


def silhouette_loss(alpha: Tensor, mask: Tensor, kind: str = "l1") -> Tensor:
    """Rendered ``alpha`` against the target ``mask`` (both ``[N, 1, H, W]`` in [0, 1]), mean over every pixel.

    ``l1``: ``|alpha - mask|``. ``bce``: ``-(m log a + (1 - m) log(1 - a))`` with ``a`` = alpha clamped to
    [BCE_EPS, 1 - BCE_EPS] in value only: the gradient passes the clamp, so a pixel the render left exactly empty
    (or exactly opaque) is still pulled towards its mask.
    """
    if kind not in SILHOUETTE_LOSSES:
        raise ValueError(f"alpha loss must be one of {SILHOUETTE_LOSSES}, got {kind!r}")
    alpha, mask = alpha.float(), mask.float()
    if kind == "l1":
        return (alpha - mask).abs().mean()
    clamped = alpha + (alpha.clamp(BCE_EPS, 1.0 - BCE_EPS) - alpha).detach()  # value clamped, gradient not
    return -(mask * clamped.log() + (1.0 - mask) * (1.0 - clamped).log()).mean()

