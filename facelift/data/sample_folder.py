"""FaceLift's sample-folder layout and file lists.

A sample is a folder ``sample_x/`` holding ``images/cam_000.png ...`` and ``opencv_cameras.json`` (see
`facelift.data.camera_json`). A file list is a text file with one sample folder per line, relative to the list's own
folder or absolute. Lists written on another machine hold paths that do not exist here (FaceLift's own list holds
``/mnt/localssd/...``); those are resolved by their trailing components relative to the list file (e.g.
``/mnt/x/gslrm/sample_000`` -> ``<list dir>/sample_000``), and the reader says so once per list.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor

from facelift.atomic import atomic_dir, write_text
from facelift.cameras import Cameras
from facelift.data.camera_json import CAMERA_FILE, CameraFile, cameras_to_frames, read_camera_file, write_camera_file
from facelift.errors import InputError
from facelift.image_io import read_image, write_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what counts as a view image in images/
TRAIN_LIST, VAL_LIST, TEST_LIST = "data_train.txt", "data_val.txt", "data_test.txt"  # the lists our tools write
_ANNOUNCED: set[Path] = set()  # lists whose foreign paths were already reported in this process


# --------------------------------------------------------------------------------------------- samples
def write_sample(sample_dir: str | Path, images: Tensor, cameras: Cameras, extra: list[dict] | None = None,
                 header: dict | None = None) -> Path:
    """Write ``images`` [V, C, H, W] in [0, 1] (C = 3 or 4) and ``cameras`` [V] as a sample folder, atomically.

    The folder is built beside its final place and renamed into it; an existing sample is replaced only once the
    new one is complete, so a crash leaves either the old or the new sample, never a mix. ``extra``: per-frame
    JSON fields (e.g. ``view_id``); ``header``: top-level JSON fields besides ``id`` (e.g. the rig's ``up``).
    """
    sample_dir = Path(sample_dir)
    if images.dim() != 4 or images.shape[1] not in (3, 4) or len(images) != len(cameras):
        raise ValueError(f"write_sample wants images [V, 3|4, H, W] for {len(cameras)} cameras, "
                         f"got {tuple(images.shape)}")
    if (cameras.width, cameras.height) != (images.shape[-1], images.shape[-2]):
        raise ValueError(f"cameras are for {cameras.width}x{cameras.height}, images are "
                         f"{images.shape[-1]}x{images.shape[-2]}")
    with atomic_dir(sample_dir) as tmp:
        names = [f"images/cam_{i:03d}.png" for i in range(len(images))]
        for name, image in zip(names, images):
            write_image(tmp / name, image)
        frames = cameras_to_frames(cameras, names, extra)
        write_camera_file(tmp / CAMERA_FILE, frames, {"id": sample_dir.name, **(header or {})})
    return sample_dir


def read_sample(sample_dir: str | Path) -> tuple[Tensor, Cameras, list[dict]]:
    """Read a whole sample: images [V, C, H, W] float in [0, 1] (C = 4 when the files have alpha), float32
    cameras [V], and the raw frame dicts."""
    sample_dir = Path(sample_dir)
    cam_file = read_camera_file(sample_dir / CAMERA_FILE)
    check_view_count(cam_file)
    images = read_views(cam_file, range(len(cam_file.frames)))
    return images, cam_file.cameras.to(torch.float32), cam_file.frames


def read_views(cam_file: CameraFile, views) -> Tensor:
    """The images of the chosen views [len(views), C, H, W]; each must have the size its frame states and all
    the same channel count."""
    images = [read_view(cam_file, v) for v in views]
    channels = {im.shape[0] for im in images}
    if len(channels) > 1:
        raise InputError(cam_file.path.parent, "mixes RGB and RGBA images; convert them to one kind")
    return torch.stack(images)


def read_view(cam_file: CameraFile, view: int) -> Tensor:  # [C, H, W]
    path = cam_file.image_path(view)
    if not path.is_file():
        raise InputError(path, f"image not found ({CAMERA_FILE} frame {view} names it)")
    image = read_image(path)
    cams = cam_file.cameras
    if tuple(image.shape[-2:]) != (cams.height, cams.width):
        raise InputError(path, f"image is {image.shape[-1]}x{image.shape[-2]} but {CAMERA_FILE} frame {view} says "
                               f"{cams.width}x{cams.height}")
    return image


def check_view_count(cam_file: CameraFile) -> None:
    """The camera file must have one frame per image in ``images/`` (a missing or extra view is a broken sample).

    The error names the files: the missing image (and the frame that names it), or the images no frame names; a
    bare count would leave the user to find which of many views is wrong."""
    paths = [cam_file.image_path(i) for i in range(len(cam_file.frames))]
    missing = [(i, p) for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        (view, path), others = missing[0], missing[1:]
        also = f"; also missing: {', '.join(f'{p.name} (frame {i})' for i, p in others[:5])}" if others else ""
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        raise InputError(path, f"image not found ({CAMERA_FILE} frame {view} names it){also}{more}")
    folder = cam_file.path.parent / "images"
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if len(images) != len(cam_file.frames):
        named = {p.resolve() for p in paths}
        unnamed = [p.name for p in images if p.resolve() not in named]
        which = f"; no frame names {', '.join(unnamed[:5])}{' ...' if len(unnamed) > 5 else ''}" if unnamed else ""
        raise InputError(cam_file.path, f"has {len(cam_file.frames)} frames but {folder} holds {len(images)} "
                                        f"images{which}")


# --------------------------------------------------------------------------------------------- file lists
def read_file_list(list_path: str | Path) -> list[Path]:
    """Sample folders named by a list file (blank lines ignored), each checked to exist."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise InputError(list_path, "file list not found")
    base = list_path.parent
    samples, resolved = [], []
    for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        path = Path(entry) if Path(entry).is_absolute() else base / entry
        if not path.is_dir():
            found = _resolve_foreign(Path(entry), base)
            if found is None:
                raise InputError(list_path, f"line {lineno}: sample folder {entry} not found (nor any trailing "
                                            "part of it relative to the list file)")
            resolved.append((entry, found))
            path = found
        samples.append(path)
    if resolved and list_path.resolve() not in _ANNOUNCED:
        _ANNOUNCED.add(list_path.resolve())
        log.warning("%s: %d path(s) do not exist on this machine; resolved them by their trailing components "
                    "relative to the list file (e.g. %s -> %s)", list_path, len(resolved), *resolved[0])
    if not samples:
        raise InputError(list_path, "file list is empty")
    return samples


def _resolve_foreign(path: Path, base: Path) -> Path | None:
    """The longest trailing part of ``path`` that exists under ``base`` (longest first: the most specific)."""
    parts = path.parts[1:] if path.is_absolute() else path.parts
    for start in range(len(parts)):
        candidate = base.joinpath(*parts[start:])
        if candidate.is_dir():
            return candidate
    return None


def write_file_list(list_path: str | Path, sample_dirs: list[str | Path]) -> Path:
    """Write a list of sample folders relative to the list's folder, atomically."""
    list_path = Path(list_path)
    list_path.parent.mkdir(parents=True, exist_ok=True)
    base = list_path.parent.resolve()
    lines = [Path(os.path.relpath(Path(d).resolve(), base)).as_posix() for d in sample_dirs]
    return write_text(list_path, "".join(f"{line}\n" for line in lines))
