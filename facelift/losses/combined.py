"""`GSLRMLoss`: GS-LRM's training loss, one weighted sum configured by ``conf/loss/*.yaml`` with FaceLift's key names.

Terms (unweighted values, each computed only while its weight is > 0):
  l2          MSE between render and target, RGB in [0, 1]
  lpips       LPIPS, VGG16 backbone (`LPIPSLoss`)
  perceptual  FaceLift's VGG19 feature L1 (`PerceptualLoss`)
  ssim        1 - SSIM
  pixelalign  distance of the input views' pixel Gaussians from their rays (`geometry_terms`)
  pointsdist  spread of those Gaussians along the rays (`geometry_terms`)
  alpha       silhouette: the rendered alpha against the target mask, L1 or BCE (`foreground.silhouette_loss`)

Foreground weighting (``foreground_weight`` = s, a share in [0, 1]; None: off): the per-pixel terms (L2, SSIM and
LPIPS, each a per-pixel map then) average their map with per-view weights
``w = s · m / Σm + (1 - s) · (1 - m) / Σ(1 - m)`` (`foreground.foreground_weights`), so the animal's pixels carry
the share s of the term whatever their number. The perceptual term (VGG19 features at five resolutions, no
per-pixel map) and the silhouette term (which must weigh empty space as it is) stay plain means.

Warmups, as FaceLift applies them: for ``step < l2_warmup_steps`` the perceptual and LPIPS weights are 0 (the
feature-network terms; SSIM, the silhouette and the geometric terms keep their weights); with
``warmup_pointsdist``, for the first 1000 steps the L2 and perceptual weights are 0 and points-dist weighs 0.1
(FaceLift also stops clamping positions to [-1, 1] then: that is the model's switch).

Precision: the whole loss runs in fp32 with autocast switched off, VGG19 and LPIPS included. It costs a few
percent of a GS-LRM step at 512 px, and keeps the L1 of deep features of nearly equal images (a difference of
large numbers) and LPIPS's feature normalisation out of bf16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from facelift.losses.geometry_terms import pixelalign_loss, pointsdist_loss
from facelift.losses.foreground import SILHOUETTE_LOSSES, foreground_weights, silhouette_loss, weighted_mean
from facelift.losses.image_terms import keep_foreground, l2_loss, ssim_loss, ssim_map
from facelift.losses.lpips_loss import LPIPSLoss
from facelift.losses.perceptual import PerceptualLoss
from facelift.views import Views

POINTSDIST_WARMUP_STEPS = 1000  # FaceLift's fixed length of the `warmup_pointsdist` phase
POINTSDIST_WARMUP_WEIGHT = 0.1  # points-dist weight during that phase
TERMS = ("l2", "lpips", "perceptual", "ssim", "pixelalign", "pointsdist", "alpha")


@dataclass
class LossOutput:
    total: Tensor  # scalar fp32, the weighted sum; carries the gradient
    terms: dict[str, Tensor]  # UNweighted value of each term computed at this step (weight > 0), detached scalars
    weights: dict[str, float]  # every term's weight at this step, after the warmups


class GSLRMLoss(nn.Module):
    """Holds no trainable parameter: its VGG19/LPIPS networks are frozen, in eval mode and kept out of checkpoints
    (`FrozenNet`), and are built only when their weight is > 0, so an L2-only config needs no weight file."""

    def __init__(self, l2_loss_weight: float = 1.0, lpips_loss_weight: float = 0.0,
                 perceptual_loss_weight: float = 0.0, ssim_loss_weight: float = 0.0,
                 pixelalign_loss_weight: float = 0.0, masked_pixelalign_loss: bool = False,
                 pointsdist_loss_weight: float = 0.0, warmup_pointsdist: bool = False, l2_warmup_steps: int = 0,
                 masked_image_losses: bool = False, vgg19_weights: str | Path | None = None,
                 lpips_vgg16_weights: str | Path | None = None, allow_random_init: bool = False,
                 alpha_loss_weight: float = 0.0, alpha_loss: str = "l1", foreground_weight: float | None = None):
        super().__init__()
        given = (l2_loss_weight, lpips_loss_weight, perceptual_loss_weight, ssim_loss_weight, pixelalign_loss_weight,
                 pointsdist_loss_weight, alpha_loss_weight)
        self.base_weights = {name: float(w) for name, w in zip(TERMS, given)}
        for name, w in self.base_weights.items():
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"loss.{name}_loss_weight must be a finite number >= 0, got {w}")
        if l2_warmup_steps < 0:
            raise ValueError(f"loss.l2_warmup_steps must be >= 0, got {l2_warmup_steps}")
        self.masked_pixelalign_loss = bool(masked_pixelalign_loss)
        self.warmup_pointsdist = bool(warmup_pointsdist)
        self.l2_warmup_steps = int(l2_warmup_steps)
        self.masked_image_losses = bool(masked_image_losses)
        if alpha_loss not in SILHOUETTE_LOSSES:
            raise ValueError(f"loss.alpha_loss must be one of {SILHOUETTE_LOSSES}, got {alpha_loss!r}")
        self.alpha_loss = alpha_loss
        if foreground_weight is not None and not (math.isfinite(foreground_weight) and 0 <= foreground_weight <= 1):
            raise ValueError(f"loss.foreground_weight must be null (off) or a share in [0, 1], got {foreground_weight}")
        self.foreground_weight = None if foreground_weight is None else float(foreground_weight)
        phase_starts = {0, self.l2_warmup_steps, POINTSDIST_WARMUP_STEPS if self.warmup_pointsdist else 0}
        for step in sorted(phase_starts):
            if not any(w > 0 for w in self.weights_at(step).values()):
                raise ValueError(f"loss: every term has weight 0 at step {step}; give some *_loss_weight a value > 0 "
                                 "(l2_warmup_steps leaves only the non-feature terms on)")
        self.perceptual = (PerceptualLoss(vgg19_weights, allow_random_init)
                           if self.base_weights["perceptual"] > 0 else None)
        self.lpips = LPIPSLoss(lpips_vgg16_weights, allow_random_init) if self.base_weights["lpips"] > 0 else None

    @property
    def needs_pixel_xyz(self) -> bool:
        """Whether `forward` needs ``input_views`` and ``pixel_xyz`` (a geometric term can be switched on)."""
        return self.base_weights["pixelalign"] > 0 or self.base_weights["pointsdist"] > 0 or self.warmup_pointsdist

    @property
    def needs_alpha(self) -> bool:
        """Whether `forward` needs the rendered ``alpha`` (the silhouette term is on)."""
        return self.base_weights["alpha"] > 0

    def in_pointsdist_warmup(self, step: int) -> bool:
        """Whether ``step`` lies in the `warmup_pointsdist` phase, when the model must not clamp positions."""
        return self.warmup_pointsdist and step < POINTSDIST_WARMUP_STEPS

    def weights_at(self, step: int) -> dict[str, float]:
        weights = dict(self.base_weights)
        if self.in_pointsdist_warmup(step):
            weights.update(l2=0.0, perceptual=0.0, pointsdist=POINTSDIST_WARMUP_WEIGHT)
        if step < self.l2_warmup_steps:
            weights.update(perceptual=0.0, lpips=0.0)
        return weights

    def forward(self, rendered: Tensor, target: Views, step: int, input_views: Views | None = None,
                pixel_xyz: Tensor | None = None, alpha: Tensor | None = None) -> LossOutput:
        """``rendered`` ``[B, V, 3, H, W]``: the Gaussians rendered into ``target``'s cameras (RGB in [0, 1]);
        ``alpha`` ``[B, V, 1, H, W]``: their accumulated opacity there, needed only when `needs_alpha`.

        ``input_views`` and ``pixel_xyz`` ``[B, V_in, 3, H_in, W_in]`` (the positions of the pixel-aligned
        Gaussians laid out as the input images) are needed only when `needs_pixel_xyz`.
        """
        if rendered.shape != target.images.shape:
            raise ValueError(f"loss: rendered {tuple(rendered.shape)} and target {tuple(target.images.shape)} differ")
        weights = self.weights_at(step)
        with torch.autocast(device_type=rendered.device.type, enabled=False):
            terms = self._image_terms(rendered.float(), target, weights)
            terms |= self._geometry_terms(input_views, pixel_xyz, weights)
            if weights["alpha"] > 0:
                terms["alpha"] = self._silhouette(alpha, target)
        total = sum(weights[name] * value for name, value in terms.items())
        return LossOutput(total, {name: value.detach() for name, value in terms.items()}, weights)

    def _image_terms(self, rendered: Tensor, target: Views, weights: dict[str, float]) -> dict[str, Tensor]:
        truth = target.images.float().flatten(0, 1)  # [B*V, 3, H, W]
        pred = rendered.flatten(0, 1)
        mask = target.masks.float().flatten(0, 1)  # [B*V, 1, H, W]
        if self.masked_image_losses:
            pred = keep_foreground(pred, truth, mask)
        if self.foreground_weight is None:
            compute = {"l2": l2_loss, "lpips": self.lpips, "perceptual": self.perceptual, "ssim": ssim_loss}
        else:  # the per-pixel maps, averaged with the foreground's share
            w = foreground_weights(mask, self.foreground_weight)  # [B*V, 1, H, W], sums to 1 per view
            compute = {"l2": lambda p, t: weighted_mean((p - t).square(), w),
                       "lpips": lambda p, t: weighted_mean(self.lpips.per_pixel(p, t), w),
                       "perceptual": self.perceptual,  # no per-pixel map: a plain mean
                       "ssim": lambda p, t: 1.0 - weighted_mean(ssim_map(p, t), w)}
        return {name: fn(pred, truth) for name, fn in compute.items() if weights[name] > 0}

    def _silhouette(self, alpha: Tensor | None, target: Views) -> Tensor:
        if alpha is None:
            raise ValueError("loss: the alpha term needs the rendered alpha (see needs_alpha)")
        if alpha.shape != target.masks.shape:
            raise ValueError(f"loss: rendered alpha {tuple(alpha.shape)} and target masks "
                             f"{tuple(target.masks.shape)} differ")
        return silhouette_loss(alpha.float().flatten(0, 1), target.masks.float().flatten(0, 1), self.alpha_loss)

    def _geometry_terms(self, views: Views | None, xyz: Tensor | None, weights: dict[str, float]) -> dict[str, Tensor]:
        wanted = [name for name in ("pixelalign", "pointsdist") if weights[name] > 0]
        if not wanted:
            return {}
        if views is None or xyz is None:
            raise ValueError(f"loss: {' and '.join(wanted)} need input_views and pixel_xyz (see needs_pixel_xyz)")
        b, v, _, h, w = views.images.shape
        if tuple(xyz.shape) != (b, v, 3, h, w):
            raise ValueError(f"loss: pixel_xyz has shape {tuple(xyz.shape)}, expected {(b, v, 3, h, w)} "
                             "(one Gaussian position per input pixel)")
        xyz = xyz.float()
        origins, directions = (t.movedim(-1, 2).to(xyz) for t in views.cameras.rays())  # [B, V, 3, H, W]
        terms = {}
        if "pixelalign" in wanted:
            mask = views.masks.float() if self.masked_pixelalign_loss else None
            terms["pixelalign"] = pixelalign_loss(xyz, origins, directions, mask)
        if "pointsdist" in wanted:
            terms["pointsdist"] = pointsdist_loss(xyz, origins)
        return terms

    def extra_repr(self) -> str:
        on = ", ".join(f"{name}={w:g}" for name, w in self.base_weights.items() if w > 0)
        return (f"{on}, l2_warmup_steps={self.l2_warmup_steps}, masked_image_losses={self.masked_image_losses}, "
                f"alpha_loss={self.alpha_loss}, foreground_weight={self.foreground_weight}")
