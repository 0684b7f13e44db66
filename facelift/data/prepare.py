"""Prepare a raw multi-camera dataset (the lab's mouse recordings) for GS-LRM: square images, normalized rigs.

RAW holds ``sample_*/images/*.png`` + ``sample_*/opencv_cameras.json`` at any image size and intrinsics. Two
passes: the first reads and checks EVERY sample (camera schema, every image decodes and has its frame's size,
view counts, a rig that can be normalized) and writes nothing; the second writes each sample atomically into OUT.
So bad input stops the run before OUT is touched, and a crash mid-way leaves only complete samples.
OUT gets ``sample_*/`` at ``size``², ``data_train.txt`` / ``data_val.txt`` (relative paths), ``rig_report.json``
and ``rig_report.png``. Each prepared camera file states ``"up"`` (the target axis), so normalizing it again at load
time is the identity.
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from facelift.atomic import write_json
from facelift.cameras import Cameras
from facelift.data.camera_json import CAMERA_FILE, CAMERA_KEYS, CameraFile, read_camera_file
from facelift.data.image_ops import RESIZE_MODES, fit_square
from facelift.data.rig import AXES, NormalizedRig, RigNormalization, normalize_rig
from facelift.data.rig_plot import plot_rigs
from facelift.data.sample_folder import (TRAIN_LIST, VAL_LIST, check_view_count, read_views, write_file_list,
                                        write_sample)
from facelift.errors import InputError

log = logging.getLogger(__name__)

REPORT_JSON, REPORT_PNG = "rig_report.json", "rig_report.png"


@dataclass
class PrepareConfig:
    size: int = 512  # side of the square output images
    resize_mode: str = "pad"  # pad (to square, then resize) | stretch (each axis its own ratio)
    val_fraction: float = 0.1  # share of samples in data_val.txt (at least one when there are two or more)
    seed: int = 0  # seed of the train/val split
    rig: RigNormalization = field(default_factory=RigNormalization)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {self.size}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class CheckedSample:
    name: str
    cam_file: CameraFile
    rig: NormalizedRig


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
    read_views(cam_file, range(len(cam_file.frames)))  # decode every image (truncated files fail only here)
    cams = cam_file.cameras
    rig = normalize_rig(cams.c2w, cams.intrinsics, config.rig, cam_file.up, cam_file.path)
    return CheckedSample(sample_dir.name, cam_file, rig)


def write_prepared(sample: CheckedSample, dst: Path, config: PrepareConfig) -> Path:
    """Pass 2 for one sample: square images at ``size`` with the normalized cameras, written atomically."""
    raw = sample.cam_file.cameras
    cameras = Cameras(sample.rig.c2w, sample.rig.intrinsics, raw.width, raw.height)
    images = read_views(sample.cam_file, range(len(raw)))  # [V, C, H, W]
    if images.shape[1] == 4:  # resize premultiplied so transparent pixels do not bleed their colour into edges
        alpha = images[:, 3:]
        premultiplied = torch.cat([images[:, :3] * alpha, alpha], dim=1)
        square, cameras = fit_square(premultiplied, cameras, config.size, config.resize_mode, 0.0)
        alpha = square[:, 3:]
        rgb = torch.where(alpha > 0, square[:, :3] / alpha.clamp_min(1e-6), torch.zeros_like(square[:, :3]))
        images = torch.cat([rgb.clamp(0, 1), alpha], dim=1)
    else:  # RGB: padding is white, the background of segmented images
        images, cameras = fit_square(images, cameras, config.size, config.resize_mode, 1.0)
    extra = [{k: v for k, v in frame.items() if k not in CAMERA_KEYS} for frame in sample.cam_file.frames]
    header = {"up": list(AXES[config.rig.up_axis])}
    return write_sample(dst / sample.name, images, cameras, extra, header)


def split_samples(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Random train/val split, each sorted; a lone sample goes to both lists."""
    if len(names) == 1:
        log.warning("only one sample: it is both the training and the validation set")
        return list(names), list(names)
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    n_val = min(len(names) - 1, max(1, round(val_fraction * len(names)))) if val_fraction > 0 else 0
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def prepare_dataset(src: Path, dst: Path, config: PrepareConfig) -> dict:
    """Check all of ``src``, then write ``dst``; returns the rig report (also written to ``dst``)."""
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise InputError(dst, "the output folder must differ from the source folder")
    sample_dirs = find_samples(src)
    checked = []
    for sample_dir in tqdm(sample_dirs, desc="checking", unit="sample", file=sys.stdout, disable=None):
        sample = check_sample(sample_dir, config)
        if checked and len(sample.cam_file.frames) != len(checked[0].cam_file.frames):
            raise InputError(sample.cam_file.path, f"has {len(sample.cam_file.frames)} views but "
                                                   f"{checked[0].name} has {len(checked[0].cam_file.frames)}")
        checked.append(sample)
    log.info("checked %d samples of %d views in %s", len(checked), len(checked[0].cam_file.frames), src)

    dst.mkdir(parents=True, exist_ok=True)
    stale = {p.name for p in dst.glob("sample_*") if p.is_dir()} - {s.name for s in checked}
    if stale:
        log.warning("%d sample folder(s) already in %s are not in %s; left as they are and not listed",
                    len(stale), dst, src)
    for sample in tqdm(checked, desc="writing", unit="sample", file=sys.stdout, disable=None):
        write_prepared(sample, dst, config)
    train, val = split_samples([s.name for s in checked], config.val_fraction, config.seed)
    write_file_list(dst / TRAIN_LIST, [dst / n for n in train])
    write_file_list(dst / VAL_LIST, [dst / n for n in val])

    report = {"source": str(src), "settings": asdict(config),
              "samples": {s.name: s.rig.report.to_dict() for s in checked}}
    write_json(dst / REPORT_JSON, report)
    plot_rigs(dst / REPORT_PNG, [(s.name, s.cam_file.cameras, Cameras(s.rig.c2w, s.rig.intrinsics,
                                                                      s.cam_file.cameras.width,
                                                                      s.cam_file.cameras.height), s.rig.report)
                                 for s in checked], config.rig)
    warned = sum(bool(s.rig.report.warnings) for s in checked)
    log.info("wrote %d samples (%d train, %d val) at %dx%d to %s; %d sample(s) with rig warnings, see %s",
             len(checked), len(train), len(val), config.size, config.size, dst, warned, dst / REPORT_JSON)
    return report

