"""Animal-centred square crops whose cameras stay exact.

A view is cropped to a square window around its mask's bounding box (grown by a margin), padded where the window
leaves the frame, then resized. The intrinsics move with the window (cx, cy shift by its corner) and scale with the
resize (`Cameras.cropped` / `Cameras.resized`, pixel-centre convention), so every world point lands on the same
content before and after. One implementation for prepared sets (`prepare_mouse_data.py --crop animal`) and for
recordings (`import_recordings.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from facelift.cameras import Cameras
from facelift.data.image_ops import resize, square_padding


@dataclass(frozen=True)
class SquareBox:
    x0: int  # left column of the window (may be negative: the window leaves the frame there)
    y0: int  # top row
    side: int  # width = height, in source pixels


def animal_box(mask: Tensor, margin: float = 0.15, threshold: float = 0.5, min_side: int = 8) -> SquareBox | None:
    """The square window around ``mask`` [H, W] (or [1, H, W]) > threshold, its bounding box's longer side grown by
    ``margin`` on each side (0.15: 15 % of the side added left and right); ``None`` for an empty mask."""
    m = mask.reshape(mask.shape[-2:]) > threshold
    rows, cols = torch.nonzero(m.any(1)).flatten(), torch.nonzero(m.any(0)).flatten()
    if rows.numel() == 0:
        return None
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    side = max(bottom - top, right - left)
    side = max(int(round(side * (1.0 + 2.0 * margin))), min_side)
    cy2, cx2 = top + bottom, left + right  # twice the box centre, in pixel-edge coordinates
    return SquareBox(x0=(cx2 - side) // 2, y0=(cy2 - side) // 2, side=side)


def frame_box(width: int, height: int) -> SquareBox:
    """The whole ``width`` x ``height`` frame padded square, centred: the window of `fit_square`'s ``pad`` mode
    (what a view whose mask is empty is cut to, so that it keeps its whole frame)."""
    left, top, _, _ = square_padding(width, height)
    return SquareBox(x0=-left, y0=-top, side=max(width, height))


def crop_square(image: Tensor, cameras: Cameras, box: SquareBox, size: int,
                pad_value: Tensor | float = 0.0) -> tuple[Tensor, Cameras]:
    """``image`` [..., C, H, W] and its cameras cut to ``box`` (padded with ``pad_value`` outside the frame, a scalar
    or one value per channel) and resized to ``size`` x ``size``, with the cameras that match."""
    h, w = image.shape[-2:]
    if (cameras.width, cameras.height) != (w, h):
        raise ValueError(f"cameras are for {cameras.width}x{cameras.height} images, got {w}x{h}")
    pad = torch.as_tensor(pad_value, dtype=image.dtype, device=image.device)
    pad = pad.reshape(-1, 1, 1) if pad.dim() else pad
    window = pad.expand(*image.shape[:-2], box.side, box.side).clone()
    sx0, sy0 = max(box.x0, 0), max(box.y0, 0)  # the part of the window inside the frame, in source pixels
    sx1, sy1 = min(box.x0 + box.side, w), min(box.y0 + box.side, h)
    if sx1 > sx0 and sy1 > sy0:
        window[..., sy0 - box.y0:sy1 - box.y0, sx0 - box.x0:sx1 - box.x0] = image[..., sy0:sy1, sx0:sx1]
    cams = cameras.cropped(box.x0, box.y0, box.side, box.side).resized(size, size)
    return resize(window, size, size), cams


def crop_views(images: Tensor, cameras: Cameras, boxes: list[SquareBox], size: int,
               pad_value: Tensor | float = 0.0) -> tuple[Tensor, Cameras]:
    """Every view ``images`` [V, C, H, W] with its camera (``cameras`` [V]) cut to its own box: [V, C, size, size]
    and cameras [V], each view with its own principal point and focal length."""
    if not len(images) == len(cameras) == len(boxes):
        raise ValueError(f"crop_views: {len(images)} images, {len(cameras)} cameras and {len(boxes)} boxes")
    crops = [crop_square(images[i], cameras[i], box, size, pad_value) for i, box in enumerate(boxes)]
    return torch.stack([image for image, _ in crops]), Cameras.stack([cam for _, cam in crops])
