"""Recordings in: a rig's synchronised videos (and masks) -> FaceLift sample folders, one per frame.

Per frame and camera: the view is undistorted (image and camera: `lens.undistort_maps` draws it for the camera's
pinhole, same pose, focal lengths and principal point, no distortion or skew left), cut to a square around the
animal (`crop.animal_box` of its mask) with the intrinsics moved and scaled (`crop.crop_square`), resized to
``size`` and written as RGBA (alpha = mask) with ``opencv_cameras.json`` in the rig's world frame and units. So every
written camera projects the world exactly onto its written pixels. Normalization is prepare_mouse_data.py's job.

Without masks the animal is what differs from a static background, estimated per camera as the median of
``background_frames`` frames spread over the imported range (written to ``RAW/backgrounds/`` for inspection).
The split is by time (neighbouring frames are near-duplicates, a random split would leak): the first
``split[0]`` of the frames train, the next ``split[1]`` validate, the rest test.
Every input is checked before anything is written; each sample is written atomically; a re-run skips the samples
already there (and refuses to mix in other settings: ``import.json``).
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from facelift.atomic import write_json
from facelift.cameras import Cameras
from facelift.data.camera_json import CAMERA_FILE
from facelift.data.sample_folder import TEST_LIST, TRAIN_LIST, VAL_LIST, write_file_list, write_sample
from facelift.errors import InputError
from facelift.image_io import read_image, write_image
from facelift.rigs import lens
from facelift.rigs.crop import animal_box, crop_square
from facelift.rigs.rig import Rig, RigCamera, read_rig
from facelift.rigs.sources import FrameSource, open_sources

SETTINGS_FILE = "import.json"


@dataclass
class ImportConfig:
    rig: Path  # rig.json (scripts/import_rig.py)
    videos: Path  # VIDEOS/<camera name>.mp4 or VIDEOS/<camera name>/ frames
    out: Path  # RAW: sample_<frame>/, data_{train,val,test}.txt, import.json
    masks: Path | None = None  # MASKS/ like VIDEOS (white = animal); None: background subtraction
    size: int = 512  # side of the written square views
    frames: str = "::"  # START:STOP:STEP of the recording's frames (Python slice, empty parts: the defaults)
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / val / test shares, in time order
    margin: float = 0.15  # crop window = the mask's bounding box's longer side grown by this on each side
    background_frames: int = 25  # frames whose median is the static background (no masks)
    background_threshold: float = 0.12  # a pixel is animal where any channel differs from it by more than this
    mask_threshold: float = 0.5  # mask video value above which a pixel is animal
    workers: int = 0  # processes that undistort, crop and write the frames (0: this one; decoding stays here)

    def settings(self) -> dict:
        """What a sample's content depends on: a re-run must use the same (the frames and split may change)."""
        keep = ("size", "margin", "background_frames", "background_threshold", "mask_threshold")
        return {**{k: v for k, v in asdict(self).items() if k in keep}, "masks": self.masks is not None}


def parse_frames(spec: str, count: int, where) -> list[int]:
    """``START:STOP:STEP`` -> the frame indices it selects out of ``count``."""
    parts = spec.split(":")
    try:
        if len(parts) > 3:
            raise ValueError
        values = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
        indices = list(range(count))[slice(*values)]
    except ValueError:
        raise InputError(where, f"--frames {spec!r}: expected START:STOP:STEP (integers, parts may be empty)") \
            from None
    if not indices:
        raise InputError(where, f"--frames {spec!r} selects no frame of the {count} recorded")
    return indices


def split_by_time(n: int, shares: tuple[float, float, float]) -> tuple[int, int]:
    """Counts (train, val) of ``n`` frames in time order; the rest are test."""
    total = sum(shares)
    n_train = int(round(n * shares[0] / total))
    n_val = int(round(n * (shares[0] + shares[1]) / total)) - n_train
    return n_train, n_val


def import_recordings(cfg: ImportConfig) -> dict:
    """Run the import; returns the report also written to ``RAW/import.json``."""
    rig = read_rig(cfg.rig)
    if cfg.size < 8 or len(cfg.split) != 3 or min(cfg.split) < 0 or sum(cfg.split) <= 0:
        raise InputError(None, f"--size must be >= 8 and --split three non-negative shares, got {cfg.size}, "
                               f"{list(cfg.split)}")
    videos = open_sources(cfg.videos, rig.names, cfg.rig, "video")
    masks = open_sources(cfg.masks, rig.names, cfg.rig, "mask video") if cfg.masks is not None else None
    _check_sizes(rig, videos, masks)
    indices = parse_frames(cfg.frames, videos[0].count, cfg.videos)
    settings = {**cfg.settings(), "rig": str(cfg.rig.resolve()), "cameras": rig.names}
    _claim_output(cfg.out, settings)

    pinholes = [f.pinhole() for f in rig.frames]
    maps = [lens.undistort_maps(vars(f), vars(p)) for f, p in zip(rig.frames, pinholes)]
    backgrounds = None if masks is not None else [_background(cfg, s) for s in videos]

    todo = [i for i in indices if not (cfg.out / sample_name(i) / CAMERA_FILE).is_file()]
    skipped: dict[int, list[str]] = _read_skipped(cfg.out)
    streams = [s.frames(todo) for s in videos]
    mask_streams = [s.frames(todo) for s in masks] if masks is not None else None
    bar = tqdm(total=len(indices), initial=len(indices) - len(todo), desc="frames", unit="frame", file=sys.stdout,
               disable=None)

    def decoded():  # (frame index, its views [V] uint8 [H, W, 3], their masks [V] bool [H, W]), in time order
        for index in todo:
            views = [next(stream)[1] for stream in streams]
            if mask_streams is not None:
                alphas = [next(stream)[1][..., 0].astype(np.float32) / 255.0 > cfg.mask_threshold
                          for stream in mask_streams]
            else:
                alphas = [_foreground(view, bg, cfg.background_threshold) for view, bg in zip(views, backgrounds)]
            yield index, views, alphas

    def done(index: int, empty: list[str]) -> None:
        if empty:
            skipped[index] = empty
            write_json(cfg.out / "skipped.json", {str(k): v for k, v in sorted(skipped.items())})
        bar.update(1)

    if cfg.workers <= 0:
        for index, views, alphas in decoded():
            done(index, _write_frame(cfg, index, rig, pinholes, maps, views, alphas))
    else:
        # frames go to the workers as they are decoded, at most two each in flight: a full-resolution frame of six
        # views is ~20 MB, so the recording is never held in memory
        context = multiprocessing.get_context("spawn")
        with context.Pool(cfg.workers, _init_writer, (cfg, rig, pinholes, maps)) as pool:
            pending: deque = deque()  # (frame index, its job), oldest first

            def finish_oldest() -> None:
                index, job = pending.popleft()
                done(index, job.get())

            for index, views, alphas in decoded():
                pending.append((index, pool.apply_async(_write_frame_here, (index, views, alphas))))
                while len(pending) >= 2 * cfg.workers:
                    finish_oldest()
            while pending:
                finish_oldest()
    bar.close()
    return _finish(cfg, indices, skipped, settings)


def written_at(entries: list[Path], k: int) -> int | None:
    return int(entries[k].name.split("_")[1]) if entries else None


def sample_name(index: int) -> str:
    return f"sample_{index:06d}"


def _check_sizes(rig: Rig, videos: list[FrameSource], masks: list[FrameSource] | None) -> None:
    for f, video in zip(rig.frames, videos):
        if video.size != (f.w, f.h):
            raise InputError(video.path, f"is {video.size[0]}x{video.size[1]} but the rig's camera {f.name} is "
                                         f"{f.w}x{f.h}")
    for video, mask in zip(videos, masks or []):
        if mask.size != video.size:
            raise InputError(mask.path, f"mask is {mask.size[0]}x{mask.size[1]}, its video {video.path.name} is "
                                        f"{video.size[0]}x{video.size[1]}")
        if mask.count != video.count:
            raise InputError(mask.path, f"mask has {mask.count} frames, its video {video.path.name} {video.count}")


def _claim_output(out: Path, settings: dict) -> None:
    """Write ``import.json`` with the settings, or check that an earlier run used the same ones (resume)."""
    path = out / SETTINGS_FILE
    if path.is_file():
        before = json.loads(path.read_text()).get("settings", {})
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise InputError(path, f"this folder was imported with other settings ({', '.join(changed)}); "
                                   "use another --out or the same options (--frames and --split may change)")
        return
    write_json(path, {"settings": settings})


def _read_skipped(out: Path) -> dict[int, list[str]]:
    path = out / "skipped.json"
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}


def _background(cfg: ImportConfig, source: FrameSource) -> np.ndarray:
    """The per-pixel median [H, W, 3] uint8 of frames spread over the imported range (cached in backgrounds/)."""
    path = cfg.out / "backgrounds" / f"{source.path.stem}.png"
    if path.is_file():
        return (read_image(path)[:3].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    indices = parse_frames(cfg.frames, source.count, cfg.videos)
    picks = sorted({indices[int(i)] for i in np.linspace(0, len(indices) - 1, min(cfg.background_frames,
                                                                                  len(indices)))})
    stack = np.stack([frame for _, frame in source.frames(picks)])  # [F, H, W, 3]
    median = np.median(stack, axis=0).astype(np.uint8)
    write_image(path, median)
    return median


def _foreground(view: np.ndarray, background: np.ndarray, threshold: float) -> np.ndarray:
    """Animal mask [H, W] bool: differs from the background, cleaned of speckle, the large components kept."""
    diff = np.abs(view.astype(np.int16) - background.astype(np.int16)).max(-1) > threshold * 255
    diff = cv2.morphologyEx(diff.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(diff, connectivity=8)
    if count <= 1:
        return np.zeros(view.shape[:2], bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.nonzero(areas >= 0.1 * areas.max())[0]  # the animal, and parts an occluder split off it
    return np.isin(labels, keep)


_WRITER: tuple = ()  # a worker's (cfg, rig, pinholes, maps), set once by _init_writer


def _init_writer(*state) -> None:
    global _WRITER
    torch.set_num_threads(1)  # one core a worker
    _WRITER = state


def _write_frame_here(index: int, views, alphas) -> list[str]:
    cfg, rig, pinholes, maps = _WRITER
    return _write_frame(cfg, index, rig, pinholes, maps, views, alphas)


def _write_frame(cfg: ImportConfig, index: int, rig: Rig, pinholes: list[RigCamera], maps, views, alphas
                 ) -> list[str]:
    """Undistort, crop and write one frame's views as a sample; returns the cameras where no animal was seen
    (then nothing is written: a sample needs every view)."""
    images, cameras, empty = [], [], []
    for f, pinhole, m, view, alpha in zip(rig.frames, pinholes, maps, views, alphas):
        rgb = lens.remap(view, m)  # [H, W, 3] uint8
        a = lens.remap(alpha.astype(np.float32), m)  # [H, W] in [0, 1]; outside the recorded frame: 0
        rgba = torch.from_numpy(np.concatenate([rgb.astype(np.float32) / 255.0, a[..., None]], -1)).permute(2, 0, 1)
        box = animal_box(rgba[3], margin=cfg.margin)
        if box is None:
            empty.append(f.name)
            continue
        image, cams = crop_square(rgba, pinhole.to_cameras(), box, cfg.size)
        images.append(image.clamp(0, 1))
        cameras.append(cams)
    if empty:
        return empty
    header = {"frame": index, "units": rig.units}
    write_sample(cfg.out / sample_name(index), torch.stack(images), Cameras.cat(cameras),
                 extra=[{"name": f.name} for f in rig.frames], header=header)
    return []


def _finish(cfg: ImportConfig, indices: list[int], skipped: dict, settings: dict) -> dict:
    written = [i for i in indices if (cfg.out / sample_name(i) / CAMERA_FILE).is_file()]
    n_train, n_val = split_by_time(len(written), cfg.split)
    dirs = [cfg.out / sample_name(i) for i in written]
    lists = {"train": dirs[:n_train], "val": dirs[n_train:n_train + n_val], "test": dirs[n_train + n_val:]}
    for name, entries in zip((TRAIN_LIST, VAL_LIST, TEST_LIST), lists.values()):
        write_file_list(cfg.out / name, entries)
    report = {"settings": settings, "frames": cfg.frames, "selected": len(indices), "written": len(written),
              "skipped_no_animal": sorted(skipped),
              "split": {name: {"count": len(entries), "first_frame": written_at(entries, 0),
                               "last_frame": written_at(entries, -1)} for name, entries in lists.items()}}
    write_json(cfg.out / SETTINGS_FILE, report)
    return report
