"""Turntable orbits as FaceLift renders them: a ring of cameras around the origin, Z up, starting at the front.

The front is the camera on -Y (azimuth 270 deg), where FaceLift's first inference camera sits ((0, -2.7, 0)); the
azimuth then grows, i.e. the camera moves counter-clockwise seen from +Z.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from facelift.cameras import Cameras, look_at
from facelift.gaussians import Gaussians
from facelift.image_io import label_image
from facelift.progress import progress
from facelift.render.renderer import Backend, render


def orbit_angles_deg(num_frames: int) -> Tensor:
    """``[N]`` degrees each frame of a turn has turned from the first: 0, 360/N, ... (float64)."""
    return torch.arange(num_frames, dtype=torch.float64) * 360.0 / num_frames


def angle_labels(num_frames: int) -> list[str]:
    """Each orbit frame's label, its degrees from the first (front) frame: "0°", "2°", ..."""
    return [f"{a:.0f}°" for a in orbit_angles_deg(num_frames).tolist()]


def orbit_cameras(num_frames: int = 150, width: int = 512, height: int | None = None, radius: float = 2.7,
                  elevation_deg: float = 20.0, hfov_deg: float = 50.0, start_azimuth_deg: float = 270.0) -> Cameras:
    """``num_frames`` cameras ``[N]`` evenly spaced over one turn (see `ring_cameras`)."""
    azimuths = start_azimuth_deg + orbit_angles_deg(num_frames)
    return ring_cameras(azimuths, width, height, radius, elevation_deg, hfov_deg)


def ring_cameras(azimuths_deg, width: int = 512, height: int | None = None, radius: float = 2.7,
                 elevation_deg: float = 20.0, hfov_deg: float = 50.0, dtype: torch.dtype = torch.float32) -> Cameras:
    """Cameras ``[N]`` at the given azimuths (degrees, counter-clockwise from +X seen from +Z) on a ring around the
    origin, looking at it with +Z up.

    Focal length from the horizontal field of view: fx = fy = (W / 2) / tan(hfov / 2) (548.99 px at 512 and 50 deg);
    principal point at the image centre.
    """
    height = height or width
    az = torch.deg2rad(torch.as_tensor(azimuths_deg, dtype=torch.float64))
    el = math.radians(elevation_deg)
    eye = torch.stack([radius * math.cos(el) * az.cos(), radius * math.cos(el) * az.sin(),
                       torch.full_like(az, radius * math.sin(el))], dim=-1)  # [N, 3]
    c2w = look_at(eye, torch.zeros(3, dtype=eye.dtype), torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype))
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    intrinsics = torch.tensor([f, f, width / 2, height / 2], dtype=torch.float64).expand(len(az), 4)
    return Cameras(c2w.to(dtype), intrinsics.to(dtype).contiguous(), width, height)


@torch.no_grad()
def turntable_chunks(gaussians: Gaussians, cameras: Cameras, background: Tensor | float = 1.0,
                     backend: Backend = "auto", chunk: int = 16, labels: list[str] | None = None) -> Iterator[Tensor]:
    """Frames of one cloud (batch size 1) seen from ``cameras`` ``[N]``, ``chunk`` views at a time (bounded memory;
    a video encoder can take each chunk while the next renders): ``[<=chunk, 3, H, W]`` float in [0, 1], on the
    cloud's device. ``labels``: one text per camera written into its frame's corner (e.g. `angle_labels`). A
    progress bar counts the frames (a 512² turntable of a large cloud takes minutes on a CPU)."""
    if gaussians.batch_size != 1:
        raise ValueError(f"a turntable renders one cloud; got a batch of {gaussians.batch_size}")
    if labels is not None and len(labels) != len(cameras):
        raise ValueError(f"{len(labels)} labels for {len(cameras)} turntable cameras")
    cameras = cameras.to(gaussians.means.device)
    with progress(total=len(cameras), desc="turntable", unit="frame", leave=False) as bar:
        for i in range(0, len(cameras), chunk):
            frames = render(gaussians, cameras[i:i + chunk][None], background, backend).rgb[0].clamp(0, 1)
            if labels is not None:
                frames = torch.stack([label_image(f, text) for f, text in zip(frames, labels[i:i + chunk])])
            bar.update(len(frames))
            yield frames


def render_turntable(gaussians: Gaussians, cameras: Cameras, background: Tensor | float = 1.0,
                     backend: Backend = "auto", chunk: int = 16, labels: list[str] | None = None) -> Tensor:
    """All frames ``[N, 3, H, W]`` at once (see `turntable_chunks`)."""
    return torch.cat(list(turntable_chunks(gaussians, cameras, background, backend, chunk, labels)))
