"""Tokens -> Gaussians: two bias-free Linear heads, FaceLift's pre-activation offsets and hard pixel alignment.

Each Gaussian is 14 numbers at SH degree 0 (3 + 3·(sh+1)² + 3 + 4 + 1): xyz, colour SH, scale, rotation, opacity.
The learned tokens yield one Gaussian each; every image token yields p² Gaussians, one per pixel of its patch, in
(row, column) order. Pixel Gaussians are therefore ordered (view, patch row, patch column, row in patch, column in
patch), not in raster order; FaceLift's checkpoints and PLY files use this order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facelift.gaussians import Gaussians

SCALE_OFFSET = 2.3  # log-scale = min(raw - 2.3, -1.2): small Gaussians at initialisation...
MAX_LOG_SCALE = -1.2  # ...and never wider than e^-1.2 = 0.30 (the object spans about [-1, 1])
OPACITY_OFFSET = 2.0  # opacity logit = raw - 2: mostly translucent at initialisation
DEPTH_RANGE = 1.8  # hard pixel alignment places a Gaussian within ±1.8 of the ray's point nearest the origin


def params_per_gaussian(sh_degree: int) -> int:
    return 3 + 3 * (sh_degree + 1) ** 2 + 3 + 4 + 1


class GaussianHeads(nn.Module):
    def __init__(self, d: int, patch_size: int, sh_degree: int):
        super().__init__()
        self.n_params = params_per_gaussian(sh_degree)
        self.learned_norm = nn.LayerNorm(d, bias=False)
        self.learned_proj = nn.Linear(d, self.n_params, bias=False)
        self.pixel_norm = nn.LayerNorm(d, bias=False)
        self.pixel_proj = nn.Linear(d, patch_size**2 * self.n_params, bias=False)

    def forward(self, learned_tokens: Tensor, image_tokens: Tensor) -> Tensor:
        """``[B, G, d]`` and ``[B, T, d]`` -> raw parameters ``[B, G + T·p², n_params]`` in float32."""
        b = image_tokens.shape[0]
        learned = self.learned_proj(self.learned_norm(learned_tokens))  # [B, G, n_params]
        pixel = self.pixel_proj(self.pixel_norm(image_tokens)).reshape(b, -1, self.n_params)  # [B, T·p², n_params]
        # float32 from here on: positions along the rays need more than bf16's 8 bits of mantissa
        return torch.cat([learned.float(), pixel.float()], dim=1)


def pixels_in_patch_order(x: Tensor, patch_size: int) -> Tensor:
    """Per-pixel values ``[B, V, H, W, C]`` -> ``[B, V·H·W, C]`` in the pixel Gaussians' order."""
    b, v, h, w, c = x.shape
    p = patch_size
    x = x.reshape(b, v, h // p, p, w // p, p, c).permute(0, 1, 2, 4, 3, 5, 6)  # [B, V, h, w, p, p, C]
    return x.reshape(b, v * h * w, c)


def pixels_as_images(x: Tensor, views: int, height: int, width: int, patch_size: int) -> Tensor:
    """The inverse of `pixels_in_patch_order`, channels first: ``[B, V·H·W, C]`` -> ``[B, V, C, H, W]``."""
    b, _, c = x.shape
    p = patch_size
    x = x.reshape(b, views, height // p, width // p, p, p, c).permute(0, 1, 6, 2, 4, 3, 5)  # [B, V, C, h, p, w, p]
    return x.reshape(b, views, c, height, width)


def to_gaussians(params: Tensor, rays_o: Tensor, rays_d: Tensor, n_learned: int, sh_degree: int,
                 hard_pixelalign: bool, clip_xyz: bool) -> Gaussians:
    """Raw parameters ``[B, N, n_params]`` -> `Gaussians` (pre-activation, as 3DGS stores them).

    ``rays_o``/``rays_d`` ``[B, N - n_learned, 3]``: each pixel Gaussian's ray, in the same order.
    ``hard_pixelalign``: a pixel Gaussian sits on its pixel's ray at a depth set by the sigmoid of the mean of its
    three xyz outputs; the learned Gaussians keep their raw xyz. ``clip_xyz`` then clamps those positions to
    [-1, 1] (the caller passes it only in training, as FaceLift does).
    """
    b, n, _ = params.shape
    k = (sh_degree + 1) ** 2
    xyz, sh, scale, rotation, opacity = params.split([3, 3 * k, 3, 4, 1], dim=-1)
    if hard_pixelalign:
        t = torch.sigmoid(xyz[:, n_learned:].mean(dim=-1, keepdim=True))  # [B, P, 1]
        nearest = -(rays_o * rays_d).sum(dim=-1, keepdim=True)  # distance to the ray's point nearest the origin
        pixel_xyz = rays_o + ((2.0 * t - 1.0) * DEPTH_RANGE + nearest) * rays_d
        if clip_xyz:
            pixel_xyz = pixel_xyz.clamp(-1.0, 1.0)
        xyz = torch.cat([xyz[:, :n_learned], pixel_xyz], dim=1)
    return Gaussians(means=xyz, quats=rotation, log_scales=(scale - SCALE_OFFSET).clamp(max=MAX_LOG_SCALE),
                     opacity_logits=opacity[..., 0] - OPACITY_OFFSET, sh=sh.reshape(b, n, k, 3))
