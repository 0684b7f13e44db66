"""Prepare a raw multi-camera dataset (the lab's mouse recordings) for GS-LRM: square images, normalized rigs.

RAW holds ``sample_*/images/*.png`` + ``sample_*/opencv_cameras.json`` at any image size and intrinsics. Two
passes: the first reads and checks EVERY sample (camera schema, every image decodes and has its frame's size,
view counts, a rig that can be normalized) and writes nothing; the second writes each sample atomically into OUT.
So bad input stops the run before OUT is touched, and a crash mid-way leaves only complete samples.
OUT gets ``sample_*/`` at ``size``², the file lists (relative paths), ``rig_report.json`` and ``rig_report.png``.
Each prepared camera file states ``"up"`` (the target axis), so normalizing it again at load time is the identity.
With ``crop: animal`` each view is cut to a square around its mask (grown by ``margin``) instead of the whole frame,
so the animal fills a good part of every view; the intrinsics move and scale with the window (`facelift.rigs.crop`).
With normalization off (``rig.enabled: false``) the rigs are checked and reported but written as they were (only
resized), so that each training run normalizes them its own way (``data.normalize_cameras``: rig ablations).
The split: a RAW set that has ``data_train.txt`` keeps its lists (``data_val.txt``, ``data_test.txt`` too: a set
split by animal stays split by animal); otherwise samples are split at random (``split: random`` forces that).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from facelift.atomic import write_json
from facelift.cameras import Cameras
from facelift.data.camera_json import CAMERA_FILE, CAMERA_KEYS, CameraFile, read_camera_file
from facelift.data.image_ops import RESIZE_MODES, fit_square
from facelift.data.multiview import split_mask
from facelift.data.rig import AXES, NormalizedRig, RigNormalization, normalize_rig
from facelift.data.rig_plot import plot_rigs
from facelift.data.sample_folder import (TEST_LIST, TRAIN_LIST, VAL_LIST, check_view_count, read_file_list,
                                        read_views, write_file_list, write_sample)
from facelift.errors import InputError
from facelift.progress import progress
from facelift.rigs.crop import SquareBox, animal_box, crop_views, frame_box

log = logging.getLogger(__name__)

REPORT_JSON, REPORT_PNG = "rig_report.json", "rig_report.png"
SPLITS = ("auto", "keep", "random")
CROPS = ("none", "animal")
RGB_MASK_THRESHOLD = 0.98  # RGB files: the animal is where some channel is below this (data.mask_threshold's default)


@dataclass
class PrepareConfig:
    size: int = 512  # side of the square output images
    resize_mode: str = "pad"  # pad (to square, then resize) | stretch (each axis its own ratio)
    val_fraction: float = 0.1  # random split: share of samples in data_val.txt (at least one from two samples on)
    test_fraction: float = 0.0  # random split: share of samples in data_test.txt (0: no test list)
    seed: int = 0  # seed of the random split
    split: str = "auto"  # auto: keep RAW's lists when it has data_train.txt, else random | keep | random
    crop: str = "none"  # none: the whole frame made square (resize_mode) | animal: a square around each view's mask
    margin: float = 0.15  # crop animal: the mask box's longer side grown by this share of it on each side
    rig: RigNormalization = field(default_factory=RigNormalization)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {self.size}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction
                + self.test_fraction < 1):
            raise ValueError(f"val_fraction and test_fraction must be in [0, 1) with a sum below 1, got "
                             f"{self.val_fraction} and {self.test_fraction}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if not self.margin >= 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")


@dataclass
class CheckedSample:
    name: str
    cam_file: CameraFile
    rig: NormalizedRig
    boxes: list[SquareBox] | None = None  # crop animal: each view's window (the whole frame where its mask is empty)
    empty_views: tuple[int, ...] = ()  # crop animal: views whose mask is empty (kept whole)

    def crop_report(self) -> dict | None:
        if self.boxes is None:
            return None
        return {"boxes_x0_y0_side": [[b.x0, b.y0, b.side] for b in self.boxes],
                "empty_mask_views": list(self.empty_views)}


def find_samples(src: Path) -> list[Path]:
    if not src.is_dir():
        raise InputError(src, "source folder not found")
    samples = sorted(p for p in src.iterdir() if p.is_dir() and p.name.startswith("sample_"))
    if not samples:
        raise InputError(src, "holds no sample_* folders")
    return samples


def check_sample(sample_dir: Path, config: PrepareConfig) -> CheckedSample:
    """Pass 1 for one sample: everything that can be wrong with it raises `InputError` here."""
    cam_file = read_camera_file(sample_dir / CAMERA_FILE)
    check_view_count(cam_file)
    images = read_views(cam_file, range(len(cam_file.frames)))  # decode every image (truncated files fail only here)
    cams = cam_file.cameras
    rig = normalize_rig(cams.c2w, cams.intrinsics, config.rig, cam_file.up, cam_file.path)
    if config.crop == "none":
        return CheckedSample(sample_dir.name, cam_file, rig)
    _, masks = split_mask(images, RGB_MASK_THRESHOLD)  # [V, 1, H, W]
    found = [animal_box(m, config.margin) for m in masks]
    boxes = [box or frame_box(cams.width, cams.height) for box in found]
    return CheckedSample(sample_dir.name, cam_file, rig, boxes, tuple(i for i, b in enumerate(found) if b is None))


def write_prepared(sample: CheckedSample, dst: Path, config: PrepareConfig) -> Path:
    """Pass 2 for one sample: square images at ``size`` (whole frames, or the animal crops) with the normalized
    cameras, written atomically."""
    raw = sample.cam_file.cameras
    if config.rig.enabled:
        cameras = Cameras(sample.rig.c2w, sample.rig.intrinsics, raw.width, raw.height)
    else:  # as recorded: the training run normalizes (a raw file's own "up" is kept below)
        cameras = raw
    images = read_views(sample.cam_file, range(len(raw)))  # [V, C, H, W]
    if images.shape[1] == 4:  # resize premultiplied so transparent pixels do not bleed their colour into edges
        alpha = images[:, 3:]
        premultiplied = torch.cat([images[:, :3] * alpha, alpha], dim=1)
        square, cameras = _square(premultiplied, cameras, sample, config, 0.0)
        alpha = square[:, 3:]
        rgb = torch.where(alpha > 0, square[:, :3] / alpha.clamp_min(1e-6), torch.zeros_like(square[:, :3]))
        images = torch.cat([rgb.clamp(0, 1), alpha], dim=1)
    else:  # RGB: padding is white, the background of segmented images
        images, cameras = _square(images, cameras, sample, config, 1.0)
    extra = [{k: v for k, v in frame.items() if k not in CAMERA_KEYS} for frame in sample.cam_file.frames]
    if config.rig.enabled:
        header = {"up": list(AXES[config.rig.up_axis])}
    else:
        header = {k: v for k, v in sample.cam_file.header.items() if k == "up"}
    return write_sample(dst / sample.name, images, cameras, extra, header)


def _square(images: Tensor, cameras: Cameras, sample: CheckedSample, config: PrepareConfig,
            pad: float) -> tuple[Tensor, Cameras]:
    """``images`` [V, C, H, W] -> [V, C, size, size] with their cameras: each view's crop, or the whole frame."""
    if sample.boxes is None:
        return fit_square(images, cameras, config.size, config.resize_mode, pad)
    return crop_views(images, cameras, sample.boxes, config.size, pad)


def split_samples(names: list[str], val_fraction: float, seed: int,
                  test_fraction: float = 0.0) -> dict[str, list[str]]:
    """Random split into train / val (/ test when ``test_fraction`` > 0), each sorted; a lone sample goes to train
    and val. Val and test get at least one sample each when asked for, train keeps at least one."""
    if len(names) == 1:
        log.warning("only one sample: it is both the training and the validation set")
        return {"train": list(names), "val": list(names)}
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    counts = [max(1, round(f * len(names))) if f > 0 else 0 for f in (val_fraction, test_fraction)]
    n_val = min(counts[0], len(names) - 1)
    n_test = min(counts[1], len(names) - 1 - n_val)
    lists = {"train": sorted(shuffled[n_val + n_test:]), "val": sorted(shuffled[:n_val])}
    if test_fraction > 0:
        lists["test"] = sorted(shuffled[n_val:n_val + n_test])
    return lists


def source_split(src: Path, names: list[str]) -> dict[str, list[str]]:
    """RAW's own lists (train, and val / test where present), as sample names; each must name a checked sample."""
    known, lists = set(names), {}
    for split, list_name in (("train", TRAIN_LIST), ("val", VAL_LIST), ("test", TEST_LIST)):
        path = src / list_name
        if split == "train" or path.exists():
            lists[split] = sorted(p.name for p in read_file_list(path))
            unknown = [n for n in lists[split] if n not in known]
            if unknown:
                raise InputError(path, f"names {len(unknown)} sample(s) that are not in {src}, e.g. {unknown[0]}")
    unlisted = known - {n for names_ in lists.values() for n in names_}
    if unlisted:
        log.warning("%d sample(s) of %s are in none of its lists; left out of the lists here too", len(unlisted), src)
    return lists


def _map(fn, items: list, workers: int, desc: str) -> list:
    """``fn`` over ``items`` in order, in ``workers`` processes (0: here), with a progress bar."""
    bar = dict(desc=desc, unit="sample", total=len(items))
    if workers <= 0:
        return [fn(x) for x in progress(items, **bar)]
    with multiprocessing.get_context("spawn").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(progress(pool.imap(fn, items, chunksize=4), **bar))


def prepare_dataset(src: Path, dst: Path, config: PrepareConfig, workers: int = 0) -> dict:
    """Check all of ``src``, then write ``dst``; returns the rig report (also written to ``dst``). ``workers``:
    processes that check and write samples (0: this one)."""
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise InputError(dst, "the output folder must differ from the source folder")
    sample_dirs = find_samples(src)
    checked = _map(functools.partial(check_sample, config=config), sample_dirs, workers, "checking")
    for sample in checked:
        if len(sample.cam_file.frames) != len(checked[0].cam_file.frames):
            raise InputError(sample.cam_file.path, f"has {len(sample.cam_file.frames)} views but "
                                                   f"{checked[0].name} has {len(checked[0].cam_file.frames)}")
    log.info("checked %d samples of %d views in %s", len(checked), len(checked[0].cam_file.frames), src)
    names = [s.name for s in checked]
    keep = config.split == "keep" or (config.split == "auto" and (src / TRAIN_LIST).exists())
    lists = source_split(src, names) if keep else split_samples(names, config.val_fraction, config.seed,
                                                                 config.test_fraction)

    dst.mkdir(parents=True, exist_ok=True)
    stale = {p.name for p in dst.glob("sample_*") if p.is_dir()} - set(names)
    if stale:
        log.warning("%d sample folder(s) already in %s are not in %s; left as they are and not listed",
                    len(stale), dst, src)
    _map(functools.partial(write_prepared, dst=dst, config=config), checked, workers, "writing")
    for split, list_name in (("train", TRAIN_LIST), ("val", VAL_LIST), ("test", TEST_LIST)):
        if split in lists:
            write_file_list(dst / list_name, [dst / n for n in lists[split]])
        elif (dst / list_name).exists():  # a list left from an earlier run would name samples of another split
            (dst / list_name).unlink()

    report = {"source": str(src), "settings": asdict(config),
              "samples": {s.name: s.rig.report.to_dict() for s in checked}}
    if config.crop != "none":
        report["crops"] = {s.name: s.crop_report() for s in checked}
        empty = sum(len(s.empty_views) for s in checked)
        if empty:
            log.warning("%d view(s) have an empty mask and were kept whole instead of cropped (see %s, crops)",
                        empty, dst / REPORT_JSON)
    write_json(dst / REPORT_JSON, report)
    plot_rigs(dst / REPORT_PNG, [(s.name, s.cam_file.cameras, Cameras(s.rig.c2w, s.rig.intrinsics,
                                                                      s.cam_file.cameras.width,
                                                                      s.cam_file.cameras.height), s.rig.report)
                                 for s in checked], config.rig)
    warned = sum(bool(s.rig.report.warnings) for s in checked)
    log.info("wrote %d samples (%s; split %s) at %dx%d to %s; %d sample(s) with rig warnings, see %s",
             len(checked), ", ".join(f"{len(v)} {k}" for k, v in lists.items()), "kept from the source" if keep
             else "at random", config.size, config.size, dst, warned, dst / REPORT_JSON)
    return report

