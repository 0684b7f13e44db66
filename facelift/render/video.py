"""Video and contact-sheet output for rendered frame sequences (turntables)."""

from __future__ import annotations

import math
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from facelift.atomic import atomic_path
from facelift.gaussians import Gaussians
from facelift.image_io import to_uint8, write_image
from facelift.render.renderer import Backend
from facelift.render.turntable import angle_labels, orbit_cameras, render_turntable


class Mp4Stream:
    """An H.264 mp4 written while its frames are still being made: ffmpeg starts on entering, each `add`ed chunk
    is piped to it from a helper thread (so the caller renders the next chunk meanwhile), `finish` waits for the
    encoder and puts the file in place. Leaving the block on an error stops ffmpeg and leaves no file.

    ``with Mp4Stream(path, width, height) as video: video.add(frames); ...; video.finish()``

    yuv420p (what every player reads) needs even sizes: an odd edge is padded by repeating the last row/column.
    ``crf`` is x264's quality: lower is better and bigger (0 lossless, 18 visually lossless, 23 x264's default).
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int = 30, crf: int = 18):
        self.path, self.size, self.fps, self.crf = Path(path), (width, height), fps, crf
        self._files = ExitStack()
        self._jobs: list[Future] = []
        self._ffmpeg: subprocess.Popen | None = None

    def __enter__(self) -> Mp4Stream:
        import imageio_ffmpeg  # here, not at import: rendering and contact sheets work where ffmpeg is not installed

        tmp = self._files.enter_context(atomic_path(self.path))
        self._feeder = self._files.enter_context(ThreadPoolExecutor(max_workers=1))  # one: frames stay in order
        width, height = self.size
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-s", f"{width + width % 2}x{height + height % 2}", "-r", str(self.fps), "-i", "-", "-an",
                   "-c:v", "libx264", "-preset", "superfast",  # superfast: 1.6x veryfast's speed, ~2x its small size
                   "-crf", str(self.crf), "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)]
        # its own session: Ctrl+C stops us, not the encoder mid-file. Unlike a pre-exec hook (imageio-ffmpeg's
        # way), this lets Python spawn with vfork: ~0.1 s less from a process holding a CUDA context (H100 host)
        try:
            self._ffmpeg = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                            start_new_session=True)
        except BaseException as err:  # no encoder to run: the feeder stops and the empty temp file goes
            self._files.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def add(self, frames: Tensor) -> None:
        """Queue frames ``[N, 3, H, W]`` (float in [0, 1], on any device) for the video."""
        if tuple(frames.shape[-1:-3:-1]) != self.size:
            raise ValueError(f"frames of {tuple(frames.shape[-2:])} (H, W) for a {self.size[0]}x{self.size[1]} video")
        if frames.shape[-1] % 2 or frames.shape[-2] % 2:
            frames = F.pad(frames, (0, frames.shape[-1] % 2, 0, frames.shape[-2] % 2), mode="replicate")
        pixels = to_uint8(frames)  # [N, H, W, 3] on the host, converted where the frames are
        self._jobs.append(self._feeder.submit(self._ffmpeg.stdin.write, memoryview(pixels).cast("B")))

    def finish(self) -> Path:
        """Wait until every frame is encoded and the file is in place."""
        try:
            for job in self._jobs:
                job.result()
            self._ffmpeg.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg has stopped early: its exit status and message follow
        problem = self._ffmpeg.stderr.read().decode(errors="replace").strip()
        if self._ffmpeg.wait():
            raise RuntimeError(f"{self.path}: ffmpeg failed ({self._ffmpeg.returncode}): {problem}")
        self._ffmpeg = None
        self._files.close()  # the feeder stops; the finished file replaces ``path``
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._ffmpeg is None:  # finished (or never started)
            return
        if exc_type is None:
            try:
                self.finish()
                return
            except BaseException as err:
                self._abort(type(err), err, err.__traceback__)
                raise
        self._abort(exc_type, exc, tb)

    def _abort(self, exc_type, exc, tb) -> None:
        for job in self._jobs:  # frames not yet sent are dropped; the chunk being sent completes or fails
            job.cancel()
        wait(self._jobs)
        self._ffmpeg.kill()
        self._ffmpeg.wait()
        self._ffmpeg = None
        self._files.__exit__(exc_type, exc, tb)  # the feeder stops, the partial file goes


def write_mp4(path: str | Path, frames: Tensor, fps: int = 30, crf: int = 18) -> Path:
    """Write frames ``[N, 3, H, W]`` (float in [0, 1]) as an H.264 mp4, atomically (see `Mp4Stream`)."""
    with Mp4Stream(path, frames.shape[-1], frames.shape[-2], fps, crf) as video:
        video.add(frames)
        return video.finish()


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
                   crf: int = 18, background: Tensor | float = 1.0, backend: Backend = "auto",
                   angle_label: bool = True) -> tuple[Path, Path]:
    """Render FaceLift's turntable of one cloud and write ``path`` (mp4) and a contact sheet beside it (.png);
    ``angle_label``: each frame shows its degrees from the front."""
    labels = angle_labels(num_frames) if angle_label else None
    frames = render_turntable(gaussians, orbit_cameras(num_frames, size), background, backend, labels=labels)
    path = Path(path)
    return write_mp4(path, frames, fps, crf), write_contact_sheet(path.with_suffix(".png"), frames)
