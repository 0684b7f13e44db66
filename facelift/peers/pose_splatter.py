"""Pose Splatter (Goffinet et al., NeurIPS 2025; github.com/jackgoffinet/pose-splatter) on this project's recordings.

Its input, as its code reads it (read from its scripts; nothing of it is copied here):

- a JSON config (`src/config_utils.py`): ``data_directory`` + ``video_fns`` / ``mask_video_fns`` (one per camera,
  opened with ``cv2.VideoCapture``, masks white = animal); ``project_directory`` + the files its steps write;
  ``image_width`` / ``image_height`` / ``image_downsample``; ``holdout_views``; ``frame_jump``; the voxel grid's side
  ``ell`` (and ``ell_tracking``) in its normalized world, ``grid_size`` voxels a side, ``volume_idx`` (the crop of the
  grid, sides multiples of 16); training weights and intervals;
- the cameras, an HDF5 file with group ``camera_parameters`` holding ``rotation`` [C, 3, 3], ``translation``
  [C, 3] (world -> camera, ``x = R X + t``) and ``intrinsic`` [C, 3, 3] (K, pinhole, no distortion);
- ``vertical_lines.npz`` whose ``up`` its code negates and turns onto +z (a reflection about z: `up_vector`);
  it then shifts the world by the cameras' mean position (adding it: ``translation + R @ mean(R^T t)``) and scales
  it so the farthest camera is at distance 1. Written here with the cameras' mean at the origin (`centred`), that
  shift is none, and its world is this one turned and scaled (`normalization_scale`).

What is written here (`export`): each camera's frames undistorted (`facelift.rigs.lens`, the same maps as
import_recordings.py) and resized by ``scale`` as numbered PNGs (lossless, so both methods see the same masks;
``cv2.VideoCapture`` reads ``%06d.png`` sequences frame by frame as videos), the masks likewise, the cameras (the
undistorted pinholes at that scale, in the rig's units, its world moved by ``frames.json``'s ``world_offset``:
the cameras' mean), the world's up, and the config with
``image_downsample`` 1 (its own downsampling takes every n-th pixel; resizing here keeps the pixel grid exact).
Pixel convention: gsplat, which draws its renders, puts pixel centres at +0.5 like this project, so K is written as
this project's (its shape carving rounds projections to integers: a half-pixel bias in its voxels, its own).
Frames go in time order, one PNG per protocol frame, so its frame i is `Protocol.frames[i]` and its own split (the
thirds of `facelift.peers.protocol`) is the protocol's.

Its steps (`steps`), run from the checkout given (``--repo``) by `facelift.peers.launch`: centre and rotation,
crop indices (its volume sum; `volume_idx` picks the crop and writes it into the config), images (HDF5),
Zarr copy, training, evaluation (renders of the test third, all cameras, and its own metrics). Its up-direction
step is interactive (lines clicked on the frames); the rig's known up (`facelift.rigs.report.up_axis`) stands in.
`collect` resamples its renders into the protocol's views (`facelift.peers.protocol`).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from facelift.atomic import write_json
from facelift.errors import InputError, SetupError
from facelift.image_io import write_image
from facelift.peers.protocol import Protocol, render_path, truth_camera
from facelift.rigs import lens
from facelift.rigs.report import up_axis
from facelift.rigs.rig import Rig, RigCamera, read_rig
from facelift.rigs.sources import open_sources

REPOSITORY = "https://github.com/jackgoffinet/pose-splatter"
CONFIG, CAMERAS, UP_FILE = "config.json", "camera_params.h5", "vertical_lines.npz"
REPO_FILES = ("train_script.py", "evaluate_model.py", "calculate_center_rotation.py", "src/model.py")
GRID_MULTIPLE = 16  # its U-Nets halve the cropped grid four times


@dataclass
class ExportConfig:
    scale: float = 0.5  # image scale of its frames (1152 x 1024 -> 576 x 512)
    grid_mm: float = 240.0  # side of its voxel cube in rig units (a 72 mm mouse with its tail, walking or rearing)
    grid_size: int = 112  # voxels a side (its configs' value)
    tracking_margin: float = 0.25 / 0.22  # its configs' ell_tracking / ell: the centring grid is a little larger
    crop_threshold: float = 0.01  # a grid slice is kept where carved in this share of the frames (its crop step)
    fps: int = 100  # the recording's frame rate (written, used by its feature scripts only)


def check_repo(repo: str | Path | None) -> Path:
    """The checkout, or a `SetupError` saying which repository to clone where."""
    repo = Path(repo) if repo else None
    if repo is None or not all((repo / f).is_file() for f in REPO_FILES):
        where = repo if repo is not None else Path("pose-splatter")
        raise SetupError(f"Pose Splatter's code is not at {where}: run `git clone {REPOSITORY} {where}` and pass "
                         f"--repo {where}")
    return repo.resolve()


def up_vector(world_up: np.ndarray) -> np.ndarray:
    """The ``up`` to write so that its orientation (``u = -up``, then the rotation taking +z onto ``u`` applied to
    the cameras as ``R R2^T``) leaves ``world_up`` pointing along its +z: a reflection of the true up about z."""
    up = np.asarray(world_up, dtype=np.float64)
    return np.array([up[0], up[1], -up[2]]) / np.linalg.norm(up)


def scaled_pinholes(rig: Rig, scale: float) -> list[RigCamera]:
    """The distortion-free cameras its frames are drawn for: each camera's pinhole at the scaled (even) size."""
    return [f.pinhole() for f in rig.scaled(scale).frames] if scale != 1.0 else [f.pinhole() for f in rig.frames]


def write_cameras(path: str | Path, cameras: list[RigCamera]) -> Path:
    """Its camera file: ``camera_parameters/{rotation, translation, intrinsic}`` (float64)."""
    import h5py

    path = Path(path)
    k = np.stack([[[c.fx, c.skew, c.cx], [0.0, c.fy, c.cy], [0.0, 0.0, 1.0]] for c in cameras])  # [C, 3, 3]
    with h5py.File(path, "w") as f:
        group = f.create_group("camera_parameters")
        group["rotation"] = np.stack([c.w2c[:3, :3] for c in cameras])  # [C, 3, 3]
        group["translation"] = np.stack([c.w2c[:3, 3] for c in cameras])  # [C, 3]
        group["intrinsic"] = k
    return path


def centred(cameras: list[RigCamera]) -> tuple[list[RigCamera], np.ndarray]:
    """The cameras in the world moved so that their mean position is the origin (a point ``X`` of the rig's world
    is ``X - offset`` there), and that ``offset`` [3]."""
    offset = np.mean([c.centre for c in cameras], axis=0)
    shift = np.eye(4)
    shift[:3, 3] = offset  # written-world point + offset = rig-world point
    return [RigCamera(c.name, c.w, c.h, c.fx, c.fy, c.cx, c.cy, c.skew, list(c.dist), c.w2c @ shift)
            for c in cameras], offset


def normalization_scale(cameras: list[RigCamera]) -> float:
    """Its world scale: 1 / the largest camera distance from the cameras' mean position (its `ell` unit)."""
    centres = np.stack([c.centre for c in cameras])
    return 1.0 / float(np.linalg.norm(centres - centres.mean(0), axis=1).max())


def export(protocol: Protocol, rig_path: Path, videos: Path, masks: Path, out: Path,
           cfg: ExportConfig = ExportConfig()) -> dict:
    """Write ``out/data/`` (frames, masks) and ``out/project/`` (config, cameras, up, frames.json); returns the
    config. Refuses a rig whose camera count is not the protocol's."""
    rig = read_rig(rig_path)
    if len(rig.frames) != protocol.num_cameras:
        raise InputError(rig_path, f"has {len(rig.frames)} cameras, the protocol's set ({protocol.raw}) "
                                   f"{protocol.num_cameras}")
    pinholes = scaled_pinholes(rig, cfg.scale)
    if len({(p.w, p.h) for p in pinholes}) != 1:
        raise InputError(rig_path, "cameras of different image sizes: Pose Splatter takes one width and height")
    video_src = open_sources(videos, rig.names, rig_path, "video")
    mask_src = open_sources(masks, rig.names, rig_path, "mask video")
    data, project = out / "data", out / "project"
    position = {f: i for i, f in enumerate(protocol.frames)}  # its frame number of each recording frame
    for k, (cam, pin, vs, ms) in enumerate(zip(rig.frames, pinholes, video_src, mask_src)):
        full = cam.pinhole()
        maps = lens.undistort_maps(vars(cam), vars(full))
        for (f, view), (_, mask) in zip(vs.frames(protocol.frames), ms.frames(protocol.frames)):
            i = position[f]
            rgb = cv2.resize(lens.remap(view, maps), (pin.w, pin.h), interpolation=cv2.INTER_AREA)
            alpha = lens.remap(mask[..., 0].astype(np.float32) / 255.0, maps)
            alpha = cv2.resize(alpha, (pin.w, pin.h), interpolation=cv2.INTER_AREA) > 0.5
            write_image(data / "frames" / f"{k}" / f"{i:06d}.png", rgb)
            write_image(data / "masks" / f"{k}" / f"{i:06d}.png", (alpha * 255).astype(np.uint8))
    project.mkdir(parents=True, exist_ok=True)
    written, offset = centred(pinholes)
    write_cameras(project / CAMERAS, written)
    axis, sign = up_axis(rig)
    world_up = np.eye(3)[axis] * sign
    np.savez(project / UP_FILE, img_nums=np.zeros(0, int), lines=np.zeros((0, 2, 2)), up=up_vector(world_up))
    ell = cfg.grid_mm * normalization_scale(pinholes)
    n = len(rig.frames)
    config = {
        "data_directory": str(data.resolve()), "project_directory": str(project.resolve()),
        "video_fns": [f"frames/{k}/%06d.png" for k in range(n)],
        "mask_video_fns": [f"masks/{k}/%06d.png" for k in range(n)],
        "holdout_views": [protocol.holdout],
        "volume_directory": "volumes", "image_directory": "images", "render_directory": "renders",
        "image_compression_level": 2, "volume_compression_level": 2, "camera_fn": CAMERAS,
        "vertical_lines_fn": UP_FILE, "center_rotation_fn": "center_rotation.npz", "volume_sum_fn": "volume_sum.npy",
        "model_fn": "checkpoint.pt", "feature_fn": "features.npy", "embedding_fn": "embedding.npy",
        "image_width": pinholes[0].w, "image_height": pinholes[0].h, "image_downsample": 1,
        "adaptive_camera": False, "fps": cfg.fps, "ell": ell, "ell_tracking": ell * cfg.tracking_margin,
        "grid_size": cfg.grid_size, "frame_jump": 1,
        "volume_idx": [[0, cfg.grid_size // GRID_MULTIPLE * GRID_MULTIPLE]] * 3,  # replaced by the crop step
        # its configs' training settings (configs/mouse_*.json)
        "volume_fill_color": 0.38, "img_lambda": 0.5, "ssim_lambda": 0.0, "lr": 1e-4,
        "valid_every": 5, "plot_every": 1, "save_every": 1,
    }
    write_json(project / CONFIG, config)
    write_json(project / "frames.json", {"frames": protocol.frames, "holdout": protocol.holdout,
                                         "crop_threshold": cfg.crop_threshold, "grid_mm": cfg.grid_mm,
                                         "scale": cfg.scale, "world_offset": offset.tolist()})
    return config


def volume_idx(volume_sum: np.ndarray, frames: int, threshold: float) -> list[list[int]]:
    """Per axis of the grid, the span of slices carved in at least ``threshold`` of ``frames``, grown about its
    middle to a multiple of 16 and kept inside the grid."""
    spans = []
    n = volume_sum.shape[0]
    for axis in range(3):
        profile = volume_sum.sum(axis=tuple(a for a in range(3) if a != axis))
        hit = np.nonzero(profile >= max(1.0, threshold * frames))[0]
        lo, hi = (int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, n)
        side = min(n // GRID_MULTIPLE * GRID_MULTIPLE, math.ceil((hi - lo) / GRID_MULTIPLE) * GRID_MULTIPLE)
        start = min(max(0, (lo + hi - side) // 2), n - side)
        spans.append([start, start + side])
    return spans


def steps(repo: Path, project: Path, epochs: int, max_batches: int | None, scatter_shim: bool,
          resume: bool = False) -> list[list[str]]:
    """Its steps as command lines, in order (each run with the project folder as working directory)."""
    config = str(project / CONFIG)
    launch = [sys.executable, "-m", "facelift.peers.launch"]
    gpu = launch + (["--scatter-shim"] if scatter_shim else []) + ["--gsplat"]
    images = str(project / "images")
    train = [*gpu, str(repo / "train_script.py"), config, "--epochs", str(epochs)]
    return [[*launch, str(repo / "calculate_center_rotation.py"), config],
            [*launch, str(repo / "calculate_crop_indices.py"), config],
            ["facelift:volume_idx"],  # the crop chosen from its volume sum, written into the config
            [*launch, str(repo / "write_images.py"), config],
            [*launch, str(repo / "copy_to_zarr.py"), f"{images}/images.h5", f"{images}/images.zarr", "--overwrite"],
            train + (["--max_batches", str(max_batches)] if max_batches else []) + (["--load"] if resume else []),
            [*gpu, str(repo / "evaluate_model.py"), config, "--force"]]


def set_volume_idx(project: Path) -> list[list[int]]:
    """Write the crop of the grid (`volume_idx`) chosen from its volume sum into the config."""
    config = json.loads((project / CONFIG).read_text())
    meta = json.loads((project / "frames.json").read_text())
    path = project / config["volume_sum_fn"]
    if not path.is_file():
        raise InputError(path, "volume sum not found: its crop step (calculate_crop_indices.py) did not finish")
    counted = len(meta["frames"]) // 3  # its crop step sums the first third of the frames (the training frames)
    config["volume_idx"] = volume_idx(np.load(path), counted, meta["crop_threshold"])
    write_json(project / CONFIG, config)
    return config["volume_idx"]


def shell_line(command: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in command)


def collect(protocol: Protocol, project: Path, folder: Path, supersample: int = 4) -> dict:
    """Its renders of the test frames (``images/rendered_images.h5``: [frames, C, h, w, 4]) resampled into the
    protocol's views, written as a render folder; returns its own metrics (``metrics_test.csv``) per camera."""
    import h5py

    config = json.loads((project / CONFIG).read_text())
    path = project / config["image_directory"] / "rendered_images.h5"
    if not path.is_file():
        raise InputError(path, "renders not found: its evaluation step (evaluate_model.py) did not finish")
    rig_cams = _config_cameras(project)
    with h5py.File(path, "r") as f:
        renders = f["images"]
        if renders.shape[0] != len(protocol.frames) or renders.shape[1] != protocol.num_cameras:
            raise InputError(path, f"holds {renders.shape[:2]} frames x cameras, the protocol "
                                   f"{len(protocol.frames)} x {protocol.num_cameras}")
        for i in range(2 * protocol.cut, len(protocol.frames)):  # the test third, its rows as the protocol's
            frame = protocol.frames[i]
            cams = truth_camera(protocol, frame)
            for k in range(protocol.num_cameras):
                rgba = renders[i, k].astype(np.float32) / 255.0  # [h, w, 4]
                out = warp_to_view(rgba, rig_cams[k], cams.intrinsics[k].tolist(), protocol.size, supersample)
                write_image(render_path(folder, frame, k), torch.from_numpy(out).permute(2, 0, 1))
    own = project / "metrics_test.csv"
    return {"pose_splatter_own_metrics": _own_metrics(own) if own.is_file() else None}


def warp_to_view(rgba: np.ndarray, source: tuple[float, float, float, float], target: list[float], size: int,
                 supersample: int = 4) -> np.ndarray:
    """A full-frame render ``[h, w, 4]`` of the pinhole ``source`` (fx, fy, cx, cy) drawn for another pinhole of the
    same pose ``target`` (fx, fy, cx, cy) at ``size`` x ``size``: sampled bilinearly at ``supersample`` points a side
    per output pixel and averaged (so a finer render is filtered, not aliased); outside the render: white, alpha 0.
    RGB in and out is over white (as its renders are drawn); the average is taken of the opacity-weighted colour."""
    m = supersample
    fx, fy, cx, cy = source
    tfx, tfy, tcx, tcy = target
    v, u = np.mgrid[0:size * m, 0:size * m].astype(np.float64)
    tu, tv = (u + 0.5) / m, (v + 0.5) / m  # sample points in the target's pixels (centre convention)
    su = (tu - tcx) / tfx * fx + cx - lens.OPENCV_TO_PROJECT
    sv = (tv - tcy) / tfy * fy + cy - lens.OPENCV_TO_PROJECT
    alpha = rgba[..., 3:]
    premult = np.concatenate([rgba[..., :3] - (1.0 - alpha), alpha], -1)  # its rgb is over white; linear in this
    fine = cv2.remap(premult.astype(np.float32), su.astype(np.float32), sv.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    coarse = fine.reshape(size, m, size, m, 4).mean(axis=(1, 3))
    alpha = coarse[..., 3:]
    return np.concatenate([coarse[..., :3] + (1.0 - alpha), alpha], -1).clip(0, 1)  # over white again


def _config_cameras(project: Path) -> list[tuple[float, float, float, float]]:
    import h5py

    with h5py.File(project / CAMERAS, "r") as f:
        k = np.asarray(f["camera_parameters"]["intrinsic"])
    return [(float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2])) for m in k]


def _own_metrics(path: Path) -> list[dict]:
    """Its ``metrics_test.csv``: a header line ``# iou<TAB>l1<TAB>...`` and one row per camera."""
    lines = path.read_text().splitlines()
    names = lines[0].lstrip("# ").split("\t")
    return [dict(zip(names, (float(x) for x in line.split(",")))) for line in lines[1:] if line.strip()]
