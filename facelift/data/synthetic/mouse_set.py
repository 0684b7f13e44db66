"""A synthetic mouse study set: thousands of distinct animals on a few six-camera lab rigs, split by animal.

Each sample folder is one recording: one animal (`facelift.data.synthetic.mouse`) in one posture, seen by the six
cameras of its rig (`facelift.data.synthetic.mouse_lab`), in the raw layout ``scripts/prepare_mouse_data.py`` reads:
``images/cam_00v.png`` RGBA (colour = the camera frame, arena included; alpha = the animal's mask) and
``opencv_cameras.json`` in the rig's calibration frame, with ``view_id`` per frame, optionally off by
``calib_noise_px``. Animal i's looks depend on (seed, i) only, so every animal is distinct and a larger set extends a
smaller one; the rig of animal i is i mod ``num_rigs``. Animals (all their postures) go to one list each of
``data_train.txt`` / ``data_val.txt`` / ``data_test.txt``: no animal is seen in two splits.

Scenes are built and PNGs written in ``workers`` processes; rendering happens here, ``batch_size`` samples at a
time on ``device`` (every animal has the same number of Gaussians, so a batch is one render call).
``generation.json`` records the counts, the bytes on disk and the seconds: total, and how long this process waited
for each stage (building and writing overlap the rendering); ``animals.json`` each sample's animal, rig, split,
shape and pose; ``preview.png`` the first samples' views.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from facelift.atomic import write_json
from facelift.cameras import Cameras
from facelift.data.synthetic.mouse_lab import LabRig, arena_background, calibration_noise, sample_lab_rig, to_raw_frame
from facelift.data.sample_folder import TEST_LIST, TRAIN_LIST, VAL_LIST, write_file_list, write_sample
from facelift.data.synthetic.blob_scenes import sample_seed
from facelift.data.synthetic.mouse import mouse_gaussians, sample_pose, sample_shape
from facelift.gaussians import Gaussians
from facelift.image_io import image_grid, to_uint8, write_image
from facelift.progress import progress
from facelift.render import render
from facelift.stages import resolve_device

log = logging.getLogger("facelift")

BACKGROUNDS = ("arena", "white")


@dataclass
class MouseSetConfig:
    num_animals: int = 2000  # distinct animals
    poses_per_animal: int = 1  # recordings (postures, places) of each animal
    num_rigs: int = 4  # rig variants (camera set-ups); animal i uses rig i mod num_rigs
    width: int = 288  # image width (height = width x 256 / 288, intrinsics scaled: the lab's 288 x 256)
    gaussians: int = 20000  # per animal (all equal, so animals batch)
    calib_noise_px: float = 0.0  # written cameras off by this many pixels at the subject (random direction)
    background: str = "arena"  # arena: the lab's arena behind the animal | white: segmented images
    val_fraction: float = 0.05  # share of animals in data_val.txt
    test_fraction: float = 0.1  # share of animals in data_test.txt
    seed: int = 0  # the whole set is a function of this
    device: str = "cpu"  # where to render: cpu | cuda | cuda:N
    render_backend: str = "auto"  # auto (gsplat on CUDA when it loads) | gsplat | torch
    batch_size: int = 16  # samples per render call
    workers: int = 0  # processes that build scenes and write PNGs (0: all in this one)

    def __post_init__(self) -> None:
        if self.num_animals < 3:
            raise ValueError("num_animals must be at least 3 (one animal each for train, val and test)")
        if min(self.poses_per_animal, self.num_rigs, self.batch_size) < 1 or self.width < 16:
            raise ValueError("poses_per_animal, num_rigs and batch_size must be >= 1 and width >= 16")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        if not (0 < self.val_fraction and 0 < self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be > 0 with a sum below 1")
        if self.calib_noise_px < 0:
            raise ValueError(f"calib_noise_px must be >= 0, got {self.calib_noise_px}")


@dataclass(frozen=True)
class PlannedSample:
    name: str  # sample folder name
    animal: int
    pose: int  # which recording of the animal
    rig: int
    split: str  # train | val | test


def rig_seed(seed: int, rig: int) -> int:
    return 2**41 + seed * 1009 + rig  # apart from the animals' seeds


def pose_seed(seed: int, animal: int, pose: int) -> int:
    return 2**42 + sample_seed(seed, animal) * 256 + pose


def make_rigs(config: MouseSetConfig) -> list[LabRig]:
    return [sample_lab_rig(torch.Generator().manual_seed(rig_seed(config.seed, r)), config.width)
            for r in range(config.num_rigs)]


def split_animals(num_animals: int, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """The split of each animal: a seeded shuffle, at least one animal in val and in test."""
    order = list(range(num_animals))
    random.Random(seed).shuffle(order)
    n_test = max(1, round(test_fraction * num_animals))
    n_val = max(1, round(val_fraction * num_animals))
    split = ["train"] * num_animals
    for rank, animal in enumerate(order[:n_test + n_val]):
        split[animal] = "test" if rank < n_test else "val"
    return split


def plan_samples(config: MouseSetConfig) -> list[PlannedSample]:
    digits = max(5, len(str(config.num_animals - 1)))
    split = split_animals(config.num_animals, config.val_fraction, config.test_fraction, config.seed)
    return [PlannedSample(f"sample_{a:0{digits}d}" + (f"_{k}" if config.poses_per_animal > 1 else ""), a, k,
                          a % config.num_rigs, split[a])
            for a in range(config.num_animals) for k in range(config.poses_per_animal)]


@dataclass
class Scene:
    """One sample ready to render: the animal, the true cameras, and what gets written."""

    plan: PlannedSample
    gaussians: Gaussians  # [1, N] arena frame
    written: Cameras  # [6] calibration frame, noise included: what opencv_cameras.json says
    shadow: tuple[float, float, float]  # floor x, y and radius of the soft shadow under the animal
    meta: dict  # shape and pose, for animals.json


def build_scene(plan: PlannedSample, config: MouseSetConfig, rigs: list[LabRig]) -> Scene:
    shape = sample_shape(torch.Generator().manual_seed(sample_seed(config.seed, plan.animal)))
    gen = torch.Generator().manual_seed(pose_seed(config.seed, plan.animal, plan.pose))
    pose = sample_pose(gen)
    gaussians = mouse_gaussians(shape, pose, config.gaussians, gen)
    rig = rigs[plan.rig]
    written = calibration_noise(to_raw_frame(rig.cameras, rig.raw_from_arena), config.calib_noise_px, gen)
    return Scene(plan, gaussians, written, (*pose.position, 0.6 * shape.body_length),
                 {**asdict(plan), "shape": asdict(shape), "pose": asdict(pose)})


def render_scenes(scenes: list[Scene], rigs: list[LabRig], config: MouseSetConfig) -> np.ndarray:
    """``[B, 6, H, W, 4]`` uint8 RGBA: the frame (animal over the arena or white) and the animal's alpha."""
    device = torch.device(config.device)
    gaussians = Gaussians.cat([s.gaussians for s in scenes], dim=0).to(device)
    cameras = Cameras.stack([rigs[s.plan.rig].cameras.to(torch.float32) for s in scenes]).to(device)
    out = render(gaussians, cameras, 0.0, backend=config.render_backend)  # over black: colour premultiplied
    if config.background == "arena":
        shadow = torch.tensor([s.shadow for s in scenes], dtype=torch.float32)
        background = arena_background(cameras, [rigs[s.plan.rig].arena for s in scenes], shadow)
    else:
        background = torch.ones_like(out.rgb)
    frame = out.rgb + (1 - out.alpha) * background
    return to_uint8(torch.cat([frame, out.alpha], dim=2))


# ----------------------------------------------------------------- worker processes
_STATE: dict = {}


def _init_worker(config: MouseSetConfig, rigs: list[LabRig], out: Path) -> None:
    torch.set_num_threads(1)  # parallelism comes from the processes
    _STATE.update(config=config, rigs=rigs, out=out)


def _build(plan: PlannedSample) -> Scene:
    return build_scene(plan, _STATE["config"], _STATE["rigs"])


def _write(job: tuple[str, np.ndarray, Cameras]) -> int:
    name, pixels, cameras = job
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255  # exact: to_uint8 gives the bytes back
    folder = write_sample(_STATE["out"] / name, images, cameras, [{"view_id": v} for v in range(len(cameras))])
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class _Done:
    """A result already computed, with the ``get()`` of the pool's asynchronous results (the in-process path)."""

    def __init__(self, value) -> None:
        self.value = value

    def get(self):
        return self.value


def generate_mouse_set(out: str | Path, config: MouseSetConfig) -> dict:
    """Write the set into ``out``; returns what ``generation.json`` holds."""
    resolve_device(config.device)  # a CUDA device where none is: one line, before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rigs, plan = make_rigs(config), plan_samples(config)
    seconds = {"build": 0.0, "render": 0.0, "write": 0.0}
    log.info("%d animals x %d posture(s) on %d rig(s): %d samples of 6 views at %dx%d, %d Gaussians each; "
             "rendering on %s, %d worker(s)", config.num_animals, config.poses_per_animal, config.num_rigs, len(plan),
             rigs[0].cameras.width, rigs[0].cameras.height, config.gaussians, config.device, config.workers)
    pool = None
    if config.workers > 0:  # spawned before this process touches CUDA; spawn, as forking a threaded torch is unsafe
        pool = multiprocessing.get_context("spawn").Pool(config.workers, _init_worker, (config, rigs, out))
    else:
        _STATE.update(config=config, rigs=rigs, out=out)
    chunk = config.batch_size * max(1, config.workers)
    parts = [plan[i:i + chunk] for i in range(0, len(plan), chunk)]
    # a pipeline: while this process renders chunk k, the workers build chunk k + 1 and write chunk k - 1
    submit = (lambda fn, items: pool.map_async(fn, items)) if pool else (lambda fn, items: _Done([fn(x) for x in items]))
    meta, written_bytes, preview = [], 0, []
    try:
        bar = progress(total=len(plan), desc="animals", unit="sample")
        building, writing = submit(_build, parts[0]), None
        for k, part in enumerate(parts):
            t0 = time.perf_counter()
            scenes = building.get()
            if k + 1 < len(parts):
                building = submit(_build, parts[k + 1])
            t1 = time.perf_counter()
            jobs = []
            for b in range(0, len(scenes), config.batch_size):
                batch = scenes[b:b + config.batch_size]
                jobs += [(s.plan.name, px, s.written) for s, px in zip(batch, render_scenes(batch, rigs, config))]
            preview += [torch.from_numpy(px[..., :3]).permute(0, 3, 1, 2).float() / 255
                        for _, px, _ in jobs[:max(0, 4 - len(preview))]]
            t2 = time.perf_counter()
            if writing is not None:
                written_bytes += sum(writing.get())
            writing = submit(_write, jobs)
            t3 = time.perf_counter()
            seconds["build"] += t1 - t0
            seconds["render"] += t2 - t1
            seconds["write"] += t3 - t2
            meta += [s.meta for s in scenes]
            bar.update(len(part))
        t3 = time.perf_counter()
        written_bytes += sum(writing.get())
        seconds["write"] += time.perf_counter() - t3
        bar.close()
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    lists = {}
    for split, list_name in (("train", TRAIN_LIST), ("val", VAL_LIST), ("test", TEST_LIST)):
        names = [p.name for p in plan if p.split == split]
        write_file_list(out / list_name, [out / n for n in names])
        lists[split] = {"animals": len({p.animal for p in plan if p.split == split}), "samples": len(names),
                        "list": list_name}
    write_json(out / "animals.json", meta)
    if preview:
        write_image(out / "preview.png", image_grid(*preview))
    seconds["total"] = time.perf_counter() - start
    report = {
        "num_animals": config.num_animals, "poses_per_animal": config.poses_per_animal, "num_samples": len(plan),
        "views_per_sample": 6, "image_size": [rigs[0].cameras.width, rigs[0].cameras.height], "splits": lists,
        "settings": asdict(config), "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "samples_per_second": round(len(plan) / max(seconds["total"], 1e-9), 3),
        "disk_bytes": written_bytes, "rigs": [rig_summary(r) for r in rigs],
    }
    write_json(out / "generation.json", report)
    log.info("wrote %d samples (%s) to %s in %.1f s (build %.1f, render %.1f, write %.1f), %.1f MB",
             len(plan), ", ".join(f"{v['animals']} {k} animals" for k, v in lists.items()), out, seconds["total"],
             seconds["build"], seconds["render"], seconds["write"], written_bytes / 1e6)
    return report


def rig_summary(rig: LabRig) -> dict:
    """What a reader of generation.json wants to know about a rig: distances, elevations, the raw frame's tilt."""
    offset = rig.cameras.centers - rig.aim
    distance = offset.norm(dim=-1)
    tilt = math.degrees(math.acos(max(-1.0, min(1.0, float(rig.raw_from_arena[2, 2])))))
    return {"distances": [round(float(d), 4) for d in distance],
            "elevations_deg": [round(math.degrees(math.asin(float(z / d))), 2) for z, d in zip(offset[:, 2], distance)],
            "raw_up_tilt_deg": round(tilt, 3), "raw_origin_offset": round(float(rig.raw_from_arena[:3, 3].norm()), 4),
            "arena": asdict(rig.arena)}
