"""`render`: Gaussians + cameras -> images, alpha and depth, through gsplat (CUDA) or the pure-PyTorch twin (CPU).

Both backends use the full pinhole K (principal point included; the original FaceLift rasterizer assumed it centred),
near 0.01 / far 100, a 0.3 px^2 screen dilation, SH colours ``max(SH(dir) + 0.5, 0)`` and gsplat's compositing.
Rendering always runs in float32, also inside an autocast region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from facelift.cameras import Cameras
from facelift.gaussians import Gaussians
from facelift.render.gsplat_backend import gsplat_extension, render_gsplat
from facelift.render.torch_rasterizer import render_torch

Backend = Literal["auto", "gsplat", "torch"]


@dataclass
class Renders:
    rgb: Tensor  # [B, V, 3, H, W] colour composited over the background
    alpha: Tensor  # [B, V, 1, H, W] accumulated opacity, 1 - final transmittance
    depth: Tensor  # [B, V, 1, H, W] expected camera-space z: sum(w_i z_i) / alpha (gsplat's "ED"), 0 where empty


def render(gaussians: Gaussians, cameras: Cameras, background: Tensor | float = 1.0, backend: Backend = "auto",
           near: float = 0.01, far: float = 100.0) -> Renders:
    """Render each sample's Gaussians ``[B, N]`` into its cameras ``[B, V]``.

    ``background``: a float, an RGB ``[3]`` or one colour per sample ``[B, 3]``.
    ``backend``: ``auto`` = gsplat when the tensors are on CUDA and its extension loads, else torch.
    """
    b = gaussians.batch_size
    if cameras.c2w.dim() != 4 or cameras.batch_shape[0] != b:
        raise ValueError(f"render wants cameras [B={b}, V], got batch shape {tuple(cameras.batch_shape)}")
    v = cameras.batch_shape[1]
    device = gaussians.means.device
    bg = torch.as_tensor(background, dtype=torch.float32, device=device)
    bg = bg.expand(3) if bg.dim() == 0 else bg
    bg = bg.expand(b, 3) if bg.dim() == 1 else bg
    bg = bg[:, None].expand(b, v, 3)  # [B, V, 3]

    if backend not in ("auto", "gsplat", "torch"):
        raise ValueError(f"unknown render backend {backend!r}; use auto, gsplat or torch")
    use_gsplat = backend == "gsplat" or (backend == "auto" and device.type == "cuda" and gsplat_extension() is not None)
    if backend == "gsplat" and (device.type != "cuda" or gsplat_extension() is None):
        raise RuntimeError("render backend 'gsplat' needs CUDA tensors and gsplat's CUDA extension")
    with torch.autocast(device.type, enabled=False):
        gaussians, cameras = gaussians.to(torch.float32), cameras.to(torch.float32)
        fn = render_gsplat if use_gsplat else render_torch
        rgb, alpha, depth = fn(gaussians, cameras, bg, near, far)
    return Renders(rgb, alpha, depth)
