"""A decode-once cache of a prepared set's camera files, rigs and view images (config ``data.cache``).

Today every item re-reads its camera file and re-decodes its PNGs; at study sizes (128², batch 8, ~20+ steps/s)
that decoding, not the model, bounds the step. The cache sits behind the dataset's one image reader
(`facelift.data.sample_folder.read_views`): a file is decoded the first time the dataset asks for it and kept,
so only what the dataset reads is ever decoded (views it never chooses, e.g. held-out cameras, stay on disk), and
the images it hands back are exactly the reader's: 8-bit files are kept as uint8 (a quarter of the bytes) because
``uint8 / 255`` in float32 is the reader's value bit for bit; anything else (16-bit PNGs) is kept as float32.

Modes: ``memory`` keeps the cache in ordinary CPU memory, filled by `warm` in the main process before the
DataLoader forks its workers, which then share those pages (pinned pages are not inherited by forked children, so
the loader pins the assembled batches instead, as before). ``device`` keeps it on the GPU: items are assembled
there by the same code, in the main process (no workers; CUDA cannot be used in forked workers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from facelift.cameras import Cameras
from facelift.data.camera_json import CameraFile, read_camera_file
from facelift.data.sample_folder import read_views
from facelift.errors import InputError

log = logging.getLogger("facelift")

CACHE_MODES = ("none", "memory", "device")


def cache_device(mode: str) -> torch.device | None:
    """Where a cache of ``mode`` lives: None for ``none``; ``device`` falls back to the CPU without CUDA."""
    if mode not in CACHE_MODES:
        raise ValueError(f"data.cache must be one of {CACHE_MODES}, got {mode!r}")
    if mode == "none":
        return None
    if mode == "device" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())  # Lightning sets each rank's device before setup
    return torch.device("cpu")


class ImageCache:
    """Camera files and view images keyed by path, decoded once and kept on ``device``."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.camera_files: dict[Path, CameraFile] = {}
        self.rigs: dict[Path, Cameras] = {}  # the dataset's cameras of each camera file (normalized or not)
        self.images: dict[Path, Tensor] = {}  # [C, H, W] uint8 (8-bit files) or float32 in [0, 1]

    def camera_file(self, path: Path) -> CameraFile:
        if path not in self.camera_files:
            self.camera_files[path] = read_camera_file(path)
        return self.camera_files[path]

    def rig(self, cam_file: CameraFile, compute: Callable[[CameraFile], Cameras]) -> Cameras:
        """``compute(cam_file)`` (the dataset's rig normalization: ~1 ms of float64 work a sample) once per file."""
        if cam_file.path not in self.rigs:
            self.rigs[cam_file.path] = compute(cam_file)
        return self.rigs[cam_file.path]

    def read_views(self, cam_file: CameraFile, views: list[int]) -> Tensor:
        """As `read_views`, ``[len(views), C, H, W]`` float32 in [0, 1], on the cache's device."""
        paths = [cam_file.image_path(v) for v in views]
        missing = [v for v, p in zip(views, paths) if p not in self.images]
        if missing:  # the file path's reader, with all its checks, on first use only
            for p, image in zip((cam_file.image_path(v) for v in missing), read_views(cam_file, missing)):
                self.images[p] = _compact(image).to(self.device)
        stored = [self.images[p] for p in paths]
        if len({s.shape[0] for s in stored}) > 1:  # views decoded in different calls can still disagree
            raise InputError(cam_file.path.parent, "mixes RGB and RGBA images; convert them to one kind")
        if all(s.dtype == torch.uint8 for s in stored):
            return torch.stack(stored).float() / 255  # one gather, one conversion for all views
        return torch.stack([s.float() / 255 if s.dtype == torch.uint8 else s for s in stored])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.images.values())


def _compact(image: Tensor) -> Tensor:
    """``[C, H, W]`` float32 -> uint8 when that gives the same float32 values back, else unchanged."""
    pixels = (image * 255).round().clamp(0, 255).to(torch.uint8)
    return pixels if torch.equal(pixels.float() / 255, image) else image


def warm(dataset: Dataset, workers: int = 8) -> None:
    """Fill a dataset's cache by loading every item once, in threads (PIL and torch release the GIL).

    The items go through the dataset's own ``__getitem__``, so exactly the files it reads are decoded; the global
    RNG is restored afterwards, so training draws the same views and augmentations as without the pass. Where a
    split reads only some views per item (``num_views`` below the rig's), the others are decoded on first use.
    """
    cache = getattr(dataset, "cache", None)
    if cache is None or len(dataset) == 0:
        return
    with torch.random.fork_rng(devices=[]), ThreadPoolExecutor(max(1, workers)) as pool:
        for _ in pool.map(dataset.__getitem__, range(len(dataset))):
            pass
    log.info("image cache: %d images of %d samples, %.2f GB on %s", len(cache.images), len(dataset),
             cache.nbytes() / 1e9, cache.device)
