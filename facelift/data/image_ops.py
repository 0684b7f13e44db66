"""Make images square at the model's size, with the camera intrinsics that keep every 3D point on its pixel.

``pad``: pad the short side symmetrically (no distortion; cx or cy shift by the padding), then resize.
``stretch``: resize each axis with its own ratio (fx, cx by the width ratio; fy, cy by the height ratio).
Both use the pixel-centre convention of `facelift.cameras`, which is also ``F.interpolate``'s
(``align_corners=False``), so a point's continuous pixel coordinate maps exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facelift.cameras import Cameras

RESIZE_MODES = ("pad", "stretch")


def square_padding(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) padding that makes a ``width`` x ``height`` image square, centred."""
    extra_w, extra_h = max(height - width, 0), max(width - height, 0)
    return extra_w // 2, extra_h // 2, extra_w - extra_w // 2, extra_h - extra_h // 2


def resize(image: Tensor, width: int, height: int) -> Tensor:
    """Antialiased bilinear resize of ``[..., C, H, W]`` (a no-op at the same size)."""
    if image.shape[-2:] == (height, width):
        return image
    lead = image.shape[:-3]
    flat = image.reshape(-1, *image.shape[-3:])
    out = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *out.shape[-3:])


def fit_square(image: Tensor, cameras: Cameras, size: int, mode: str, pad_value: Tensor | float = 0.0
               ) -> tuple[Tensor, Cameras]:
    """``image`` [..., C, H, W] and its cameras -> ``[..., C, size, size]`` and the matching cameras.

    ``pad_value`` is a scalar or one value per channel ``[C]`` (e.g. the background colour, and 0 for a mask).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {mode!r}")
    h, w = image.shape[-2:]
    if (cameras.width, cameras.height) != (w, h):
        raise ValueError(f"cameras are for {cameras.width}x{cameras.height} images, got {w}x{h}")
    if mode == "pad" and w != h:
        left, top, right, bottom = square_padding(w, h)
        pad = torch.as_tensor(pad_value, dtype=image.dtype, device=image.device)
        pad = pad.reshape(-1, 1, 1) if pad.dim() else pad
        canvas = pad.expand(*image.shape[:-2], h + top + bottom, w + left + right).clone()
        canvas[..., top:top + h, left:left + w] = image
        image, cameras = canvas, cameras.padded(left, top, right, bottom)
    return resize(image, size, size), cameras.resized(size, size)
