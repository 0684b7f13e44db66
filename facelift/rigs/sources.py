"""Recorded frames per camera: ``<folder>/<camera name>.mp4`` (any ffmpeg video) or ``<folder>/<camera name>/``
(a folder of numbered image files, sorted by name). Every problem is an `InputError` naming the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from facelift.errors import InputError
from facelift.image_io import read_image, to_uint8

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class FrameSource:
    """One camera's frames: ``count``, ``size`` (w, h) and ``frames(indices)`` -> (index, uint8 [H, W, 3])."""

    path: Path
    count: int
    size: tuple[int, int]

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def frames(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        for i in indices:
            yield i, self.read(i)

    def _checked(self, frame: np.ndarray, index: int, where: Path) -> np.ndarray:
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=-1)
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise InputError(where, f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the others "
                                    f"{self.size[0]}x{self.size[1]}")
        return np.ascontiguousarray(frame[..., :3])


class FolderSource(FrameSource):
    def __init__(self, path: Path):
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not self.files:
            raise InputError(path, f"frame folder holds no image ({', '.join(FRAME_SUFFIXES)})")
        self.count = len(self.files)
        try:
            with Image.open(self.files[0]) as im:
                self.size = im.size
        except (OSError, SyntaxError, ValueError) as err:
            raise InputError(self.files[0], f"frame 0 cannot be decoded ({err})") from None

    def read(self, index: int) -> np.ndarray:
        image = read_image(self.files[index])  # names the file when it cannot be decoded
        return self._checked(to_uint8(image[:3]), index, self.files[index])


class VideoSource(FrameSource):
    def __init__(self, path: Path):
        import imageio.v2 as imageio
        import imageio_ffmpeg

        self.path = path
        try:
            self.count = int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
            with imageio.get_reader(str(path), "ffmpeg") as reader:
                self.size = tuple(int(s) for s in reader.get_meta_data()["size"])
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
            raise InputError(path, f"not a readable video ({type(err).__name__}: {str(err).splitlines()[0]})") \
                from None
        if self.count < 1:
            raise InputError(path, "video holds no frame")

    def frames(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Decode once from the start up to the last wanted frame (seeking costs a decode from a keyframe anyway)."""
        import imageio.v2 as imageio

        wanted = set(indices)
        if not wanted:
            return
        last, decoded = max(wanted), -1
        try:
            with imageio.get_reader(str(self.path), "ffmpeg") as reader:
                for decoded, frame in enumerate(reader):
                    if decoded in wanted:
                        yield decoded, self._checked(np.asarray(frame), decoded, self.path)
                    if decoded >= last:
                        return
        except (OSError, RuntimeError, ValueError, IndexError) as err:
            detail = str(err).splitlines()[0] if str(err) else "no detail"
            raise InputError(self.path, f"frame {decoded + 1} cannot be decoded ({type(err).__name__}: {detail})"
                             ) from None
        raise InputError(self.path, f"frame {decoded + 1} cannot be decoded: the video ends after {decoded + 1} "
                                    f"frames of the {self.count} it announced")


def open_source(folder: Path, name: str) -> FrameSource | None:
    """The frames of camera ``name`` under ``folder``, or None when it has neither a video nor a frame folder."""
    if (folder / name).is_dir():
        return FolderSource(folder / name)
    for suffix in VIDEO_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return VideoSource(folder / f"{name}{suffix}")
    return None


def open_sources(folder: Path, names: list[str], rig_path: Path, what: str = "video") -> list[FrameSource]:
    """One source per camera name, in rig order; refuses a missing folder, a rig whose names match nothing there,
    a camera without a source, and sources of different frame counts."""
    if not folder.is_dir():
        raise InputError(folder, f"{what} folder not found")
    found = {name: open_source(folder, name) for name in names}
    if not any(found.values()):
        present = sorted(p.name for p in folder.iterdir())[:8]
        raise InputError(rig_path, f"none of the rig's cameras ({', '.join(names)}) has a {what} in {folder} "
                                   f"(<name>.mp4 or <name>/; found: {', '.join(present) or 'nothing'})")
    missing = [n for n, s in found.items() if s is None]
    if missing:
        raise InputError(folder / f"{missing[0]}.mp4", f"camera {missing[0]} of the rig has no {what} (neither "
                                                       f"{missing[0]}.mp4 nor a frame folder {missing[0]}/)")
    sources = [found[n] for n in names]
    for s in sources[1:]:
        if s.count != sources[0].count:
            raise InputError(s.path, f"has {s.count} frames, {sources[0].path.name} has {sources[0].count}: the "
                                     "cameras' recordings must be synchronised frame for frame")
    return sources
