"""The one camera convention of the project.

OpenCV axes: x right, y down, z forward (the camera looks along +z; its "up" is -y).
A camera is a camera-to-world matrix ``c2w`` and pinhole intrinsics ``(fx, fy, cx, cy)`` in pixels of an image
of ``width`` x ``height``. Pixel ``(u, v)`` (integer column, row) has its centre at continuous coordinate
``(u + 0.5, v + 0.5)``; a camera-space point ``(x, y, z)`` projects to ``(fx x/z + cx, fy y/z + cy)`` in that
continuous coordinate. With this convention resizing scales ``fx, cx`` (and ``fy, cy``) by the same ratio, exactly.

Every batch dimension is free: ``c2w`` is ``[..., 4, 4]`` and ``intrinsics`` ``[..., 4]`` with the same leading
shape (e.g. ``[B, V]``); ``width``/``height`` are shared by the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Cameras:
    c2w: Tensor  # [..., 4, 4] camera-to-world, OpenCV axes
    intrinsics: Tensor  # [..., 4] fx, fy, cx, cy in pixels
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.c2w.shape[-2:] != (4, 4) or self.intrinsics.shape[-1] != 4:
            raise ValueError(f"Cameras wants c2w [..., 4, 4] and intrinsics [..., 4], got "
                             f"{tuple(self.c2w.shape)} and {tuple(self.intrinsics.shape)}")
        if self.c2w.shape[:-2] != self.intrinsics.shape[:-1]:
            raise ValueError(f"c2w batch shape {tuple(self.c2w.shape[:-2])} != intrinsics batch shape "
                             f"{tuple(self.intrinsics.shape[:-1])}")

    # ----------------------------------------------------------------- construction / batching
    @classmethod
    def from_w2c(cls, w2c: Tensor, intrinsics: Tensor, width: int, height: int) -> "Cameras":
        return cls(rigid_inverse(w2c), intrinsics, width, height)

    @classmethod
    def from_K(cls, c2w: Tensor, K: Tensor, width: int, height: int) -> "Cameras":
        intr = torch.stack([K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]], dim=-1)
        return cls(c2w, intr, width, height)

    @staticmethod
    def stack(cams: list["Cameras"], dim: int = 0) -> "Cameras":
        _check_same_size(cams)
        if dim < 0:
            raise ValueError("Cameras.stack takes a non-negative batch dim")
        return Cameras(torch.stack([c.c2w for c in cams], dim),
                       torch.stack([c.intrinsics for c in cams], dim), cams[0].width, cams[0].height)

    @staticmethod
    def cat(cams: list["Cameras"], dim: int = 0) -> "Cameras":
        _check_same_size(cams)
        if dim < 0:
            raise ValueError("Cameras.cat takes a non-negative batch dim")
        return Cameras(torch.cat([c.c2w for c in cams], dim), torch.cat([c.intrinsics for c in cams], dim),
                       cams[0].width, cams[0].height)

    @property
    def batch_shape(self) -> torch.Size:
        return self.c2w.shape[:-2]

    def __len__(self) -> int:
        return self.batch_shape[0]

    def __getitem__(self, idx) -> "Cameras":
        """Index the batch dimensions (never the matrix ones)."""
        if not isinstance(idx, tuple):
            idx = (idx,)
        return Cameras(self.c2w[idx + (Ellipsis, slice(None), slice(None))],
                       self.intrinsics[idx + (Ellipsis, slice(None))], self.width, self.height)

    def reshape(self, *shape: int) -> "Cameras":
        return Cameras(self.c2w.reshape(*shape, 4, 4), self.intrinsics.reshape(*shape, 4), self.width, self.height)

    def to(self, *args, **kwargs) -> "Cameras":
        return Cameras(self.c2w.to(*args, **kwargs), self.intrinsics.to(*args, **kwargs), self.width, self.height)

    def pin_memory(self) -> "Cameras":
        return Cameras(self.c2w.pin_memory(), self.intrinsics.pin_memory(), self.width, self.height)

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    # ----------------------------------------------------------------- derived quantities
    @property
    def w2c(self) -> Tensor:  # [..., 4, 4]
        return rigid_inverse(self.c2w)

    @property
    def K(self) -> Tensor:  # [..., 3, 3]
        fx, fy, cx, cy = self.intrinsics.unbind(-1)
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        rows = [torch.stack([fx, zero, cx], -1), torch.stack([zero, fy, cy], -1), torch.stack([zero, zero, one], -1)]
        return torch.stack(rows, dim=-2)

    @property
    def centers(self) -> Tensor:  # [..., 3] camera centres in world space
        return self.c2w[..., :3, 3]

    @property
    def forward(self) -> Tensor:  # [..., 3] unit viewing direction (+z of the camera) in world space
        return F.normalize(self.c2w[..., :3, 2], dim=-1)

    @property
    def up(self) -> Tensor:  # [..., 3] unit camera "up" (-y of the camera) in world space
        return F.normalize(-self.c2w[..., :3, 1], dim=-1)

    # ----------------------------------------------------------------- rays
    def rays(self) -> tuple[Tensor, Tensor]:
        """Rays through pixel centres: origins and unit directions, both ``[..., H, W, 3]`` in world space."""
        fx, fy, cx, cy = (t[..., None, None] for t in self.intrinsics.unbind(-1))  # [..., 1, 1]
        dev, dt = self.c2w.device, self.c2w.dtype
        v, u = torch.meshgrid(torch.arange(self.height, device=dev, dtype=dt),
                              torch.arange(self.width, device=dev, dtype=dt), indexing="ij")  # [H, W]
        d_cam = torch.stack([(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, torch.ones_like(u + fx)], dim=-1)
        d_cam = F.normalize(d_cam, dim=-1)  # [..., H, W, 3]
        rot = self.c2w[..., None, None, :3, :3]  # [..., 1, 1, 3, 3]
        d_world = F.normalize((rot @ d_cam[..., None])[..., 0], dim=-1)
        origins = self.centers[..., None, None, :].expand_as(d_world)
        return origins, d_world

    def ray_features(self) -> Tensor:
        """GS-LRM's 6 ray channels ``[..., 6, H, W]``: direction (3), then the ray's point closest to the origin (3).

        With the image as ``rgb * 2 - 1`` in front, these make the 9-channel "custom Plücker" input.
        """
        o, d = self.rays()  # [..., H, W, 3]
        nearest = o - (o * d).sum(-1, keepdim=True) * d
        return torch.cat([d, nearest], dim=-1).movedim(-1, -3)

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """World points ``[..., N, 3]`` -> continuous pixel coordinates ``[..., N, 2]`` and camera depth ``[..., N]``."""
        w2c = self.w2c
        p_cam = (w2c[..., None, :3, :3] @ points[..., None])[..., 0] + w2c[..., None, :3, 3]
        z = p_cam[..., 2]
        fx, fy, cx, cy = (t[..., None] for t in self.intrinsics.unbind(-1))
        uv = torch.stack([fx * p_cam[..., 0] / z + cx, fy * p_cam[..., 1] / z + cy], dim=-1)
        return uv, z

    # ----------------------------------------------------------------- image-space edits -> new intrinsics
    def resized(self, width: int, height: int) -> "Cameras":
        """Cameras for the image resized (each axis with its own ratio) to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        scale = self.intrinsics.new_tensor([sx, sy, sx, sy])
        return Cameras(self.c2w, self.intrinsics * scale, width, height)

    def padded(self, left: int, top: int, right: int, bottom: int) -> "Cameras":
        """Cameras for the image with that many pixels added on each side (negative values crop)."""
        shift = self.intrinsics.new_tensor([0.0, 0.0, float(left), float(top)])
        return Cameras(self.c2w, self.intrinsics + shift, self.width + left + right, self.height + top + bottom)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> "Cameras":
        """Cameras for the ``width`` x ``height`` window whose top-left pixel is ``(x0, y0)``."""
        return self.padded(-x0, -y0, width + x0 - self.width, height + y0 - self.height)


def rigid_inverse(m: Tensor) -> Tensor:
    """Inverse of rigid 4x4 transforms ``[..., 4, 4]`` (rotation + translation) without a general inverse."""
    rot_t = m[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(m)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ m[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV camera-to-world ``[..., 4, 4]`` for cameras at ``eye`` looking at ``target`` with ``up`` roughly up."""
    fwd = F.normalize(target - eye, dim=-1)
    right = F.normalize(torch.linalg.cross(fwd, up.expand_as(fwd)), dim=-1)
    down = torch.linalg.cross(fwd, right)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = right, down, fwd, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def _check_same_size(cams: list[Cameras]) -> None:
    sizes = {(c.width, c.height) for c in cams}
    if len(sizes) != 1:
        raise ValueError(f"cannot batch cameras of different image sizes: {sorted(sizes)}")
