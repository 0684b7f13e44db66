"""Synthetic data: procedural head-like and mouse-like Gaussian scenes, their camera rigs, and rendered samples.

A scene is a `Gaussians` cloud built from ellipsoidal "blobs" (each the surface of an ellipsoid tiled with small
isotropic Gaussians). Scenes are rendered with the project's own renderer into the FaceLift sample-folder layout,
RGBA so that masks come from the rendered alpha (``scripts/make_synthetic.py`` writes them). Everything is
deterministic given the seed.

World conventions: Z up; the head faces -Y (FaceLift's front camera sits on -Y); the mouse stands on z = 0.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from facelift.cameras import Cameras, look_at
from facelift.data.sample_folder import TRAIN_LIST, VAL_LIST, write_file_list, write_sample
from facelift.gaussians import SH_C0, Gaussians
from facelift.render import render
from facelift.render.turntable import orbit_cameras


@dataclass(frozen=True)
class Blob:
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    rgb: Tensor  # [3] in [0, 1]
    share: float  # fraction of the scene's Gaussians
    region: str = "all"  # which part of the surface: all | upper | back_or_upper (hair)


def _uniform(gen: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)


def _rotation_z(angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _rotation_axis(axis: Tensor, angle: float) -> Tensor:
    """Rodrigues: rotation by ``angle`` about the unit ``axis`` [3]."""
    k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
                     dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _surface_points(gen: torch.Generator, blob: Blob, count: int) -> Tensor:
    """``count`` points on the blob's ellipsoid surface (restricted to its region), ``[count, 3]``."""
    pts = []
    while sum(len(p) for p in pts) < count:
        unit = torch.nn.functional.normalize(torch.randn(4 * count, 3, generator=gen, dtype=torch.float64), dim=-1)
        keep = {"all": torch.ones(len(unit), dtype=torch.bool), "upper": unit[:, 2] > 0.1,
                "back_or_upper": (unit[:, 2] > 0.25) | (unit[:, 1] > 0.1)}[blob.region]
        pts.append(unit[keep])
    unit = torch.cat(pts)[:count]
    return unit * torch.tensor(blob.radii, dtype=torch.float64) + torch.tensor(blob.center, dtype=torch.float64)


def _ellipsoid_area(radii: tuple[float, float, float]) -> float:
    a, b, c = radii  # Knud Thomsen's approximation, within about 1 %
    p = 1.6075
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def blobs_to_gaussians(gen: torch.Generator, blobs: list[Blob], count: int, pose: Tensor | None = None,
                       offset: Tensor | None = None) -> Gaussians:
    """Tile each blob's surface with isotropic Gaussians about as wide as their spacing, then move all the points
    by ``pose`` [3, 3] and ``offset`` [3] (isotropic Gaussians need no rotation of their own)."""
    means, log_scales, colors = [], [], []
    total = sum(b.share for b in blobs)
    for blob in blobs:
        n = max(8, round(count * blob.share / total))
        pts = _surface_points(gen, blob, n)
        spacing = math.sqrt(_ellipsoid_area(blob.radii) / n)
        means.append(pts)
        log_scales.append(torch.full((n, 3), math.log(0.6 * spacing), dtype=torch.float64))
        jitter = 0.04 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
        colors.append((blob.rgb.double() + jitter).clamp(0.02, 0.98))
    xyz = torch.cat(means)
    if pose is not None:
        xyz = xyz @ pose.T
    if offset is not None:
        xyz = xyz + offset
    n = len(xyz)
    sh = ((torch.cat(colors) - 0.5) / SH_C0).reshape(1, n, 1, 3)
    quats = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(1, n, 4)
    return Gaussians(xyz[None].float(), quats.contiguous(), torch.cat(log_scales)[None].float(),
                     torch.full((1, n), 4.0), sh.float())  # opacity sigmoid(4) = 0.98


def _pick(gen: torch.Generator, palette: list[tuple[float, float, float]]) -> Tensor:
    base = torch.tensor(palette[int(torch.randint(len(palette), (1,), generator=gen))], dtype=torch.float64)
    brightness = 1 + 0.1 * torch.randn(1, generator=gen, dtype=torch.float64)
    return (base * brightness + 0.02 * torch.randn(3, generator=gen, dtype=torch.float64)).clamp(0.03, 0.97)


SKIN = [(0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.72, 0.51, 0.37), (0.49, 0.33, 0.22), (0.33, 0.22, 0.15)]
HAIR = [(0.10, 0.08, 0.07), (0.35, 0.22, 0.12), (0.62, 0.45, 0.25), (0.85, 0.75, 0.50), (0.55, 0.55, 0.55)]
CLOTH = [(0.20, 0.25, 0.55), (0.55, 0.15, 0.15), (0.25, 0.45, 0.25), (0.45, 0.45, 0.45), (0.85, 0.85, 0.80)]
FUR = [(0.95, 0.95, 0.93), (0.12, 0.11, 0.11), (0.45, 0.33, 0.22), (0.60, 0.58, 0.55)]
PINK = (0.93, 0.65, 0.65)


def head_scene(gen: torch.Generator, count: int = 8000) -> Gaussians:
    """A head-like bust facing -Y: head, hair, nose, ears, eyes, mouth, neck, shoulders; random tones and pose."""
    skin, hair, cloth = _pick(gen, SKIN), _pick(gen, HAIR), _pick(gen, CLOTH)
    white, dark = torch.tensor([0.95, 0.95, 0.95]), torch.tensor([0.08, 0.06, 0.05])
    lips = skin * torch.tensor([1.0, 0.6, 0.6], dtype=torch.float64)
    w, d, h = (float(v) for v in _uniform(gen, 0.9, 1.1, 3))  # head proportions
    head = [Blob((0.0, 0.0, 0.15), (0.40 * w, 0.46 * d, 0.52 * h), skin, 40),
            Blob((0.0, 0.03, 0.2), (0.43 * w, 0.49 * d, 0.5 * h), hair, 25, "back_or_upper"),
            Blob((0.0, -0.47 * d, 0.08), (0.06, 0.09, 0.09), skin, 2),
            Blob((0.41 * w, 0.0, 0.12), (0.05, 0.09, 0.12), skin, 2),
            Blob((-0.41 * w, 0.0, 0.12), (0.05, 0.09, 0.12), skin, 2),
            Blob((0.15 * w, -0.40 * d, 0.25), (0.06, 0.03, 0.04), white, 1),
            Blob((-0.15 * w, -0.40 * d, 0.25), (0.06, 0.03, 0.04), white, 1),
            Blob((0.15 * w, -0.43 * d, 0.25), (0.025, 0.015, 0.025), dark, 0.5),
            Blob((-0.15 * w, -0.43 * d, 0.25), (0.025, 0.015, 0.025), dark, 0.5),
            Blob((0.0, -0.42 * d, -0.12), (0.11, 0.03, 0.03), lips, 1)]
    # the head turns (yaw) and nods (pitch) about the origin; the bust stays
    yaw, pitch = (float(v) for v in _uniform(gen, -0.35, 0.35, 2) * torch.tensor([1.0, 0.5], dtype=torch.float64))
    turn = _rotation_z(yaw) @ _rotation_axis(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), pitch)
    bust = [Blob((0.0, 0.0, -0.45), (0.19, 0.19, 0.25), skin, 5),
            Blob((0.0, 0.05, -0.85), (0.7, 0.36, 0.3), cloth, 20, "upper")]
    head_count = round(count * 0.75)
    g_head = blobs_to_gaussians(gen, head, head_count, pose=turn)
    return Gaussians.cat([g_head, blobs_to_gaussians(gen, bust, count - head_count)])


def mouse_scene(gen: torch.Generator, count: int = 6000) -> Gaussians:
    """A mouse-like animal on the ground (z = 0): body, head, ears, eyes, nose, tail; random coat, pose, heading."""
    fur, skin = _pick(gen, FUR), torch.tensor(PINK, dtype=torch.float64)
    eye = torch.tensor([0.05, 0.04, 0.04])
    length = float(_uniform(gen, 0.30, 0.40, 1))
    rear = float(_uniform(gen, 0.0, 0.6, 1))  # body pitch up (rearing), radians
    turn = float(_uniform(gen, -0.5, 0.5, 1))  # head yaw relative to the body
    # body along +X from its rear end, pitched up about that end; the head sits at the front end
    pitch = _rotation_axis(torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64), rear)
    rear_end = torch.tensor([-length, 0.0, 0.17], dtype=torch.float64)
    g_body = blobs_to_gaussians(gen, [Blob((length, 0.0, 0.0), (length, 0.17, 0.15), fur, 1)], round(count * 0.5),
                                pose=pitch, offset=rear_end)
    front = pitch @ torch.tensor([2 * length, 0.0, 0.0], dtype=torch.float64) + rear_end
    head = [Blob((0.0, 0.0, 0.0), (0.14, 0.10, 0.10), fur, 20),
            Blob((0.14, 0.0, -0.01), (0.025, 0.025, 0.025), skin, 1),
            Blob((0.02, 0.07, 0.10), (0.045, 0.012, 0.06), skin, 4),
            Blob((0.02, -0.07, 0.10), (0.045, 0.012, 0.06), skin, 4),
            Blob((0.07, 0.06, 0.04), (0.018, 0.018, 0.018), eye, 1),
            Blob((0.07, -0.06, 0.04), (0.018, 0.018, 0.018), eye, 1)]
    g_head = blobs_to_gaussians(gen, head, round(count * 0.35), pose=_rotation_z(turn) @ pitch, offset=front)
    # tail: a tapering chain of blobs from the rear end, sinking to the ground and curling sideways
    steps, bend = 14, float(_uniform(gen, -1.5, 1.5, 1))
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    x = -length - 0.03 + torch.cumsum(0.05 * torch.cos(math.pi + bend * t), 0)
    y = torch.cumsum(0.05 * torch.sin(math.pi + bend * t), 0)
    z = 0.12 - 0.09 * t
    tail = [Blob((float(x[i]), float(y[i]), float(z[i])), (0.025 - 0.013 * float(t[i]),) * 3, skin * 0.9, 1)
            for i in range(steps)]
    g_tail = blobs_to_gaussians(gen, tail, count - g_body.num_gaussians - g_head.num_gaussians)
    g = Gaussians.cat([g_body, g_head, g_tail])
    heading = _rotation_z(float(_uniform(gen, 0, 2 * math.pi, 1))).float()
    grow = 1.25  # to the size the lab's framing gives: about a third of the image width at 2.6
    return Gaussians(grow * g.means @ heading.T, g.quats, g.log_scales + math.log(grow), g.opacity_logits, g.sh)


def random_cloud(gen: torch.Generator, n: int, sh_degree: int = 0, pixel_size: float = 0.005,
                 radius: float = 0.8) -> Gaussians:
    """Benchmark cloud like GS-LRM's output: small, mostly translucent Gaussians in a shell around the origin.

    Scales are log-normal around 1.4 ``pixel_size`` (world size of one pixel at the subject: 2.7 / fx).
    """
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    direction = torch.nn.functional.normalize(r(n, 3), dim=-1)
    means = direction * radius * (0.75 + 0.25 * torch.rand(n, 1, generator=gen))
    sh = 0.3 * r(n, (sh_degree + 1) ** 2, 3)
    sh[:, 0] = (torch.rand(n, 3, generator=gen) - 0.5) / SH_C0
    log_scales = (math.log(1.4 * pixel_size) + 0.5 * r(1, n, 3)).clamp_max(-1.2)
    return Gaussians(means[None], r(1, n, 4), log_scales, r(1, n) * 1.5 - 1.0, sh[None])


# --------------------------------------------------------------------- rigs
MOUSE_WIDTH, MOUSE_HEIGHT = 288, 256  # the lab's raw images


def human_rig(num_views: int = 32, size: int = 512) -> Cameras:
    """FaceLift's training ring (the public sample's cameras): distance 2.7, elevation 20 deg, Z up, hfov 50 deg,
    azimuths 0, 360/V, ... counter-clockwise from +X."""
    return orbit_cameras(num_views, size, start_azimuth_deg=0.0)


def mouse_rig(gen: torch.Generator, width: int = MOUSE_WIDTH) -> tuple[Cameras, Tensor]:
    """Six cameras like the lab's raw calibration, in the subject's frame, and the 4x4 map to the raw frame.

    Uneven azimuths, distances 1.9-3.4, elevations 10-30 deg, each camera aimed near (not at) the animal,
    fx ~ 408, fy ~ 410, cx = 144, cy = 128 at 288 x 256 (scaled with ``width``). The raw frame's origin is 0.3-0.8
    away from the animal and its Z axis tilted 3-8 deg from the true up, as in a real calibration.
    """
    n = 6
    height, s = round(width * MOUSE_HEIGHT / MOUSE_WIDTH), width / MOUSE_WIDTH
    azimuth = torch.deg2rad(torch.arange(n) * 60.0 + _uniform(gen, -20, 20, n) + _uniform(gen, 0, 360, 1))
    elevation = torch.deg2rad(_uniform(gen, 10, 30, n))
    distance = _uniform(gen, 1.9, 3.4, n)
    target = torch.tensor([0.0, 0.0, 0.12], dtype=torch.float64) + 0.05 * torch.randn(n, 3, generator=gen,
                                                                                         dtype=torch.float64)
    eye = target + distance[:, None] * torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(),
                                                    elevation.sin()], -1)
    c2w = look_at(eye, target, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    fx, fy = _uniform(gen, 404, 412, n) * s, _uniform(gen, 406, 414, n) * s
    intrinsics = torch.stack([fx, fy, torch.full_like(fx, 144 * s), torch.full_like(fx, 128 * s)], -1)

    axis = torch.nn.functional.pad(torch.nn.functional.normalize(torch.randn(2, generator=gen, dtype=torch.float64),
                                                                 dim=0), (0, 1))  # horizontal
    raw_from_subject = torch.eye(4, dtype=torch.float64)
    raw_from_subject[:3, :3] = _rotation_axis(axis, math.radians(float(_uniform(gen, 3, 8, 1)))) @ _rotation_z(
        float(_uniform(gen, 0, 2 * math.pi, 1)))
    direction = torch.nn.functional.normalize(torch.randn(3, generator=gen, dtype=torch.float64), dim=0)
    raw_from_subject[:3, 3] = direction * _uniform(gen, 0.3, 0.8, 1)
    return Cameras(c2w.float(), intrinsics.float(), width, height), raw_from_subject.float()


# --------------------------------------------------------------------- samples
@dataclass
class SyntheticSample:
    images: Tensor  # [V, 4, H, W] straight (not premultiplied) RGB and alpha in [0, 1]
    cameras: Cameras  # [V] as written to disk (the mouse rig in its raw frame)
    gaussians: Gaussians  # [1, N] the scene in the frame of ``cameras``


def render_rgba(gaussians: Gaussians, cameras: Cameras) -> Tensor:
    """``[V, 4, H, W]`` RGBA renders of one cloud: colour un-premultiplied so that compositing gives the render."""
    out = render(gaussians, cameras[None], 0.0, backend="torch")
    alpha = out.alpha[0]
    rgb = torch.where(alpha > 0, out.rgb[0] / alpha.clamp_min(1e-6), torch.zeros_like(out.rgb[0]))
    return torch.cat([rgb.clamp(0, 1), alpha], dim=1)


def make_sample(rig: str, seed: int, size: int | None = None, num_views: int = 32) -> SyntheticSample:
    """One deterministic sample: ``rig`` "human" (head on FaceLift's ring; ``size`` default 512, ``num_views``)
    or "mouse" (mouse on the raw six-camera rig; ``size`` is the width, default 288)."""
    gen = torch.Generator().manual_seed(seed)
    if rig == "human":
        scene = head_scene(gen)
        cameras = human_rig(num_views, size or 512)
        return SyntheticSample(render_rgba(scene, cameras), cameras, scene)
    if rig == "mouse":
        scene = mouse_scene(gen)
        cameras, raw_from_subject = mouse_rig(gen, size or MOUSE_WIDTH)
        images = render_rgba(scene, cameras)  # a rigid move of scene and rig together leaves the images unchanged
        rot, shift = raw_from_subject[:3, :3], raw_from_subject[:3, 3]
        moved = Gaussians(scene.means @ rot.T + shift, scene.quats, scene.log_scales, scene.opacity_logits, scene.sh)
        raw = Cameras(raw_from_subject @ cameras.c2w, cameras.intrinsics, cameras.width, cameras.height)
        return SyntheticSample(images, raw, moved)  # isotropic Gaussians: moving the means moves the scene
    raise ValueError(f"unknown rig {rig!r}; use human or mouse")


# --------------------------------------------------------------------- datasets
log = logging.getLogger("facelift")


def sample_seed(seed: int, index: int) -> int:
    """Sample ``index`` of a set depends on (seed, index) only, so a larger set extends a smaller one."""
    return seed * 1_000_003 + index


def write_dataset(out: str | Path, rig: str = "human", num_samples: int = 16, size: int | None = None,
                  num_views: int = 32, seed: int = 0) -> Path:
    """Write ``num_samples`` samples (``out/sample_00000``...) in the FaceLift sample-folder layout, then
    ``data_train.txt`` / ``data_val.txt`` (relative paths; the last tenth, at least one sample, is validation).

    Mouse frames carry ``view_id`` as the lab's files do. Each sample folder is written atomically.
    """
    out = Path(out)
    samples = []
    start = time.perf_counter()
    for i in range(num_samples):
        sample = make_sample(rig, sample_seed(seed, i), size, num_views)
        extra = [{"view_id": v} for v in range(len(sample.cameras))] if rig == "mouse" else None
        samples.append(write_sample(out / f"sample_{i:05d}", sample.images, sample.cameras, extra))
        log.info("%s: %d views %dx%d (%.1f s)", samples[-1].name, len(sample.cameras), sample.cameras.width,
                 sample.cameras.height, time.perf_counter() - start)
    n_val = max(1, len(samples) // 10)
    write_file_list(out / TRAIN_LIST, samples[:-n_val] or samples)  # one sample: the same in both lists
    write_file_list(out / VAL_LIST, samples[-n_val:])
    log.info("wrote %d %s samples, %s and %s to %s", len(samples), rig, TRAIN_LIST, VAL_LIST, out)
    return out
