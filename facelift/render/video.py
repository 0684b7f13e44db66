"""Video and contact-sheet output for rendered frame sequences (turntables)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from facelift.atomic import atomic_path
from facelift.gaussians import Gaussians
from facelift.image_io import to_uint8, write_image
from facelift.render.renderer import Backend
from facelift.render.turntable import orbit_cameras, render_turntable


def write_mp4(path: str | Path, frames: Tensor, fps: int = 30, quality: int = 8) -> Path:
    """Write frames ``[N, 3, H, W]`` (float in [0, 1]) as an H.264 mp4, atomically.

    yuv420p (what every player reads) needs even sizes: an odd edge is padded by repeating the last row/column.
    ``quality`` is imageio-ffmpeg's 0-10 scale.
    """
    import imageio_ffmpeg  # here, not at import: rendering and contact sheets work where ffmpeg is not installed

    path = Path(path)
    if frames.shape[-1] % 2 or frames.shape[-2] % 2:
        frames = F.pad(frames, (0, frames.shape[-1] % 2, 0, frames.shape[-2] % 2), mode="replicate")
    height, width = frames.shape[-2:]
    with atomic_path(path) as tmp:
        # x264 preset superfast: 1.6x veryfast's speed for ~2x its (still small) size
        writer = imageio_ffmpeg.write_frames(str(tmp), (width, height), fps=fps, quality=quality, codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=1,
                                             output_params=["-preset", "superfast"])
        writer.send(None)  # start the encoder
        for frame in to_uint8(frames):  # converted in one go, where the frames are: [N, H, W, 3]
            writer.send(frame)
        writer.close()
    return path


def write_contact_sheet(path: str | Path, frames: Tensor, count: int = 8, columns: int = 4) -> Path:
    """A PNG grid of ``count`` frames evenly spaced through ``frames`` ``[N, 3, H, W]``, ``columns`` per row."""
    count = min(count, len(frames))
    picks = frames[torch.linspace(0, len(frames) - 1, count).round().long()]  # [count, 3, H, W]
    rows = math.ceil(count / columns)
    columns = min(columns, count)
    pad = rows * columns - count
    if pad:
        picks = torch.cat([picks, picks.new_ones(pad, *picks.shape[1:])])
    _, c, h, w = picks.shape
    grid = picks.reshape(rows, columns, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, columns * w)
    return write_image(path, grid)


def save_turntable(path: str | Path, gaussians: Gaussians, num_frames: int = 150, size: int = 512, fps: int = 30,
                   background: Tensor | float = 1.0, backend: Backend = "auto") -> tuple[Path, Path]:
    """Render FaceLift's turntable of one cloud and write ``path`` (mp4) and a contact sheet beside it (.png)."""
    frames = render_turntable(gaussians, orbit_cameras(num_frames, size), background, backend)
    path = Path(path)
    return write_mp4(path, frames, fps), write_contact_sheet(path.with_suffix(".png"), frames)
