"""Posed images -> tokens: GS-LRM's 9 input channels per pixel, cut into p x p patches, one Linear per patch.

The channels are FaceLift's "custom Plücker" input: ``rgb * 2 - 1`` (3), the ray direction (3) and the ray's point
closest to the world origin (3). There is no other positional encoding: the rays tell the transformer where each
patch looks from and to.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facelift.views import Views

IN_CHANNELS = 9  # rgb, ray direction, ray point nearest the origin


def posed_image_channels(views: Views) -> Tensor:
    """The transformer's input image: ``[B, V, 9, H, W]``."""
    rays = views.cameras.ray_features().to(views.images.dtype)  # [B, V, 6, H, W]
    return torch.cat([views.images * 2.0 - 1.0, rays], dim=2)


def patchify(x: Tensor, patch_size: int) -> Tensor:
    """``[B, V, C, H, W]`` -> ``[B, V·(H/p)·(W/p), p·p·C]``: view-major patches, each flattened channels fastest
    (row-in-patch, column-in-patch, channel) as FaceLift's checkpoint expects."""
    b, v, c, h, w = x.shape
    p = patch_size
    x = x.reshape(b, v, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 4, 6, 2)  # [B, V, h, w, p, p, C]
    return x.reshape(b, v * (h // p) * (w // p), p * p * c)


class PatchTokenizer(nn.Module):
    def __init__(self, patch_size: int, d: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(IN_CHANNELS * patch_size**2, d, bias=False)

    def forward(self, posed_images: Tensor) -> Tensor:  # [B, V, 9, H, W] -> [B, V·h·w, d]
        # cast first so a bf16-weights model also accepts fp32 images (a no-op under autocast's fp32 weights)
        patches = patchify(posed_images.to(self.proj.weight.dtype), self.patch_size)
        return self.proj(patches)
