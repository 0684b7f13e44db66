"""The lab around a synthetic mouse: six-camera rigs like the lab's, the arena behind the animal, calibration noise.

A `LabRig` is one physical set-up: six cameras aimed near the arena centre from uneven azimuths, distances 1.9-3.4
and elevations 10-30 deg, with the lab's intrinsics (fx ~ 408, fy ~ 410, cx ~ 144, cy ~ 128 at 288 x 256), and the
frame its calibration is written in (``raw_from_arena``: Z tilted 3-8 deg off the true up, origin 0.3-0.8 away from
the arena centre). Animals are rendered in the arena frame (Z up, floor z = 0, arena centre at the origin).

The arena is ray-cast per pixel, not rendered as Gaussians: a floor with a bedding-like texture and a soft shadow
under the animal, clear or coloured walls, a dim room beyond. The walls are drawn only where the animal is not (as
if of clear acrylic where they pass in front of it), so the animal's mask is its whole silhouette in every view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from facelift.cameras import Cameras, look_at

LAB_WIDTH, LAB_HEIGHT = 288, 256  # the lab's raw images
FLOORS = ((0.78, 0.78, 0.76), (0.72, 0.62, 0.45), (0.90, 0.90, 0.88), (0.35, 0.35, 0.37), (0.55, 0.60, 0.65))
WALLS = ((0.85, 0.88, 0.90), (0.12, 0.12, 0.13), (0.60, 0.60, 0.60), (0.93, 0.93, 0.93))


@dataclass(frozen=True)
class Arena:
    round: bool  # round open field, else square
    half_size: float  # radius, or half the side
    wall_height: float
    floor_rgb: tuple[float, float, float]
    wall_rgb: tuple[float, float, float]
    room_rgb: tuple[float, float, float]
    texture_scale: float  # bedding grain per unit length


@dataclass
class LabRig:
    cameras: Cameras  # [6] true poses in the arena frame (float64)
    aim: Tensor  # [3] the point the rig is built around (distances are measured from it)
    raw_from_arena: Tensor  # [4, 4] rigid map into the frame the calibration is written in
    arena: Arena


def _u(gen: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)


def _rodrigues(axis: Tensor, angle: Tensor | float) -> Tensor:
    """Rotations about unit ``axis`` [..., 3] by ``angle`` [...]: [..., 3, 3]."""
    angle = torch.as_tensor(angle, dtype=axis.dtype)
    zero = torch.zeros_like(axis[..., 0])
    k = torch.stack([torch.stack([zero, -axis[..., 2], axis[..., 1]], -1),
                     torch.stack([axis[..., 2], zero, -axis[..., 0]], -1),
                     torch.stack([-axis[..., 1], axis[..., 0], zero], -1)], -2)
    s, c = angle.sin()[..., None, None], angle.cos()[..., None, None]
    return torch.eye(3, dtype=axis.dtype) + s * k + (1 - c) * (k @ k)


def sample_lab_rig(gen: torch.Generator, width: int = LAB_WIDTH) -> LabRig:
    """One rig variant; ``width`` scales the image (and intrinsics) from the lab's 288 x 256."""
    n, s = 6, width / LAB_WIDTH
    height = round(width * LAB_HEIGHT / LAB_WIDTH)
    azimuth = torch.deg2rad(torch.arange(n) * 60.0 + _u(gen, -20, 20, n) + _u(gen, 0, 360, 1))
    elevation = torch.deg2rad(_u(gen, 10, 30, n))
    # stratified, then shuffled: every rig spans 1.9-3.4 unevenly
    distance = (1.9 + 1.5 * (torch.arange(n) + _u(gen, 0, 1, n)) / n)[torch.randperm(n, generator=gen)]
    aim = torch.tensor([0.0, 0.0, 0.12], dtype=torch.float64)
    eye = aim + distance[:, None] * torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(),
                                                 elevation.sin()], -1)
    target = aim + 0.04 * torch.randn(n, 3, generator=gen, dtype=torch.float64)  # aimed near, not at, the centre
    c2w = look_at(eye, target, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    roll = _rodrigues(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 3),
                      torch.deg2rad(_u(gen, -2, 2, n)))  # in camera axes: a turn about the optical axis
    c2w[:, :3, :3] = c2w[:, :3, :3] @ roll
    intrinsics = torch.stack([_u(gen, 404, 412, n), _u(gen, 406, 414, n), 144 + _u(gen, -3, 3, n),
                              128 + _u(gen, -3, 3, n)], -1) * s

    horizontal = F.pad(F.normalize(torch.randn(2, generator=gen, dtype=torch.float64), dim=0), (0, 1))
    raw_from_arena = torch.eye(4, dtype=torch.float64)
    turn = _rodrigues(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), _u(gen, 0, 2 * math.pi, 1)[0])
    raw_from_arena[:3, :3] = _rodrigues(horizontal, math.radians(float(_u(gen, 3, 8, 1)))) @ turn
    raw_from_arena[:3, 3] = F.normalize(torch.randn(3, generator=gen, dtype=torch.float64), dim=0) * _u(gen, 0.3, 0.8, 1)

    pick = lambda palette: palette[int(torch.randint(len(palette), (1,), generator=gen))]  # noqa: E731
    room = float(_u(gen, 0.12, 0.3, 1))
    arena = Arena(bool(torch.rand(1, generator=gen) < 0.5), float(_u(gen, 1.0, 1.35, 1)), float(_u(gen, 0.25, 0.45, 1)),
                  pick(FLOORS), pick(WALLS), (room, room * 1.02, room * 1.06), float(_u(gen, 25, 60, 1)))
    return LabRig(Cameras(c2w, intrinsics, width, height), aim, raw_from_arena, arena)


def to_raw_frame(cameras: Cameras, raw_from_arena: Tensor) -> Cameras:
    """The same cameras written in the calibration's frame (images unchanged: a rigid move of the whole scene)."""
    return Cameras(raw_from_arena.to(cameras.c2w) @ cameras.c2w, cameras.intrinsics, cameras.width, cameras.height)


def calibration_noise(cameras: Cameras, pixels: float, gen: torch.Generator) -> Cameras:
    """The cameras as a calibration ``pixels`` off would give them: each turned by ``pixels / f`` radians about a
    random axis across its view, so the subject's projections move by about ``pixels`` in a random direction."""
    if pixels <= 0:
        return cameras
    n = cameras.batch_shape.numel()
    c2w = cameras.c2w.reshape(n, 4, 4).double().clone()
    f = cameras.intrinsics.reshape(n, 4)[:, :2].double().mean(-1)
    angle = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    axis = torch.stack([angle.cos(), angle.sin(), torch.zeros_like(angle)], -1)  # in camera axes, across the view
    c2w[:, :3, :3] = c2w[:, :3, :3] @ _rodrigues(axis, pixels / f)
    return Cameras(c2w.reshape(cameras.c2w.shape).to(cameras.c2w.dtype), cameras.intrinsics, cameras.width,
                   cameras.height)


def _grain(xy: Tensor, seed: float) -> Tensor:
    """Smooth value noise in [0, 1] at ``xy`` [..., 2] (a hash on the integer lattice, bilinearly blended)."""
    cell = xy.floor()
    frac = xy - cell
    frac = frac * frac * (3 - 2 * frac)

    def corner(dx: float, dy: float) -> Tensor:
        h = torch.sin((cell[..., 0] + dx) * 127.1 + (cell[..., 1] + dy) * 311.7 + seed) * 43758.5453
        return h - h.floor()

    top = corner(0, 0) * (1 - frac[..., 0]) + corner(1, 0) * frac[..., 0]
    bottom = corner(0, 1) * (1 - frac[..., 0]) + corner(1, 1) * frac[..., 0]
    return top * (1 - frac[..., 1]) + bottom * frac[..., 1]


def arena_background(cameras: Cameras, arenas: list[Arena], shadow: Tensor) -> Tensor:
    """What each camera sees of the empty arena: ``[B, V, 3, H, W]`` for cameras ``[B, V]`` (arena frame) and one
    arena per sample; ``shadow`` [B, 3] is each animal's floor position and shadow radius."""
    return ArenaView(cameras, arenas)(shadow)


class ArenaView:
    """The empty arena as fixed cameras see it, ray-cast once; only the animal's shadow changes from frame to frame
    (a recording through a fixed rig: the rays, the walls and the floor's grain are the same in every frame).

    The shadow darkens floor pixels by a factor ``shade`` (1 away from the animal), and every later step before the
    final clamp is linear in the floor's colour, so the view is kept as the image with ``shade = 1`` and the floor's
    coefficient: ``clamp(static + floor_part * (shade - 1), 0, 1)``.
    """

    def __init__(self, cameras: Cameras, arenas: list[Arena]):
        o, d = cameras.to(torch.float32).rays()  # [B, V, H, W, 3]
        dev = o.device
        param = lambda get: torch.tensor([get(a) for a in arenas], dtype=torch.float32, device=dev)  # noqa: E731
        bshape = (len(arenas), 1, 1, 1)
        half, wall_h = param(lambda a: a.half_size).view(bshape), param(lambda a: a.wall_height).view(bshape)
        is_round = param(lambda a: float(a.round)).view(bshape) > 0.5
        grain_scale = param(lambda a: a.texture_scale).view(bshape)
        floor_rgb, wall_rgb, room_rgb = (param(lambda a, k=k: getattr(a, k)).view(len(arenas), 1, 1, 1, 3)
                                         for k in ("floor_rgb", "wall_rgb", "room_rgb"))

        # the far wall: where the ray leaves the arena's footprint (cameras stand outside it)
        oxy, dxy = o[..., :2], d[..., :2]
        a = (dxy * dxy).sum(-1).clamp_min(1e-9)
        b = (oxy * dxy).sum(-1)
        disc = b * b - a * ((oxy * oxy).sum(-1) - half * half)
        t_round_in = (-b - disc.clamp_min(0).sqrt()) / a
        t_round_out = (-b + disc.clamp_min(0).sqrt()) / a
        inv = 1 / torch.where(dxy.abs() < 1e-9, torch.full_like(dxy, 1e-9), dxy)
        t1, t2 = (-half[..., None] - oxy) * inv, (half[..., None] - oxy) * inv
        t_sq_in, t_sq_out = torch.minimum(t1, t2).amax(-1), torch.maximum(t1, t2).amin(-1)
        hits = torch.where(is_round, disc > 0, t_sq_in < t_sq_out)
        t_in = torch.where(is_round, t_round_in, t_sq_in)
        t_out = torch.where(is_round, t_round_out, t_sq_out)
        z_out = o[..., 2] + t_out * d[..., 2]
        far_wall = hits & (t_out > 0) & (z_out >= 0) & (z_out <= wall_h)
        z_in = o[..., 2] + t_in * d[..., 2]
        near_wall = hits & (t_in > 0) & (z_in >= 0) & (z_in <= wall_h)  # seen through: a slight tint

        t_floor = -o[..., 2] / torch.where(d[..., 2] < -1e-6, d[..., 2], torch.full_like(d[..., 2], -1e-6))
        p = o + t_floor[..., None] * d
        down = d[..., 2] < -1e-6
        inside = torch.where(is_round, p[..., :2].norm(dim=-1) < half, p[..., :2].abs().amax(-1) < half)
        floor_in = down & inside

        grain = 0.6 * _grain(p[..., :2] * grain_scale[..., None], 0.0) + 0.4 * _grain(
            p[..., :2] * grain_scale[..., None] * 3.7, 17.0)
        floor = floor_rgb * (0.8 + 0.35 * grain)[..., None]  # without the shadow (shade = 1)
        wall = wall_rgb * (0.85 + 0.15 * z_out.clamp(0, 1) / wall_h)[..., None]
        room = room_rgb * (1 + 0.5 * d[..., 2:].clamp(-1, 1))  # brighter towards the ceiling lights
        table = 0.6 * floor_rgb * (0.9 + 0.1 * grain[..., None])
        out = torch.where((down & ~inside & ~far_wall)[..., None], table, room.expand_as(floor))
        out = torch.where(far_wall[..., None], wall.expand_as(out), out)
        out = torch.where(floor_in[..., None], floor, out)
        out = torch.where(near_wall[..., None], 0.85 * out + 0.15 * wall_rgb, out)
        self.static = out  # [B, V, H, W, 3] before the clamp
        # what ``shade - 1`` multiplies: the floor's colour, times 0.85 where a near wall tints it
        self.floor_part = torch.where(floor_in[..., None], floor * torch.where(near_wall, 0.85, 1.0)[..., None], 0.0)
        self.floor_xy = p[..., :2]  # [B, V, H, W, 2] where each pixel's ray meets the floor

    def __call__(self, shadow: Tensor) -> Tensor:
        """``shadow`` [B, 3] (floor x, y and radius per sample; B may be any count where the view was made for one
        sample) -> ``[B, V, 3, H, W]``."""
        shadow = shadow.to(self.static.device, torch.float32)
        centre, radius = shadow[:, None, None, None, :2], shadow[:, 2].view(-1, 1, 1, 1)
        shade = 1 - 0.45 * torch.exp(-((self.floor_xy - centre) ** 2).sum(-1) / (2 * radius ** 2))  # [B, V, H, W]
        out = self.static + self.floor_part * (shade - 1)[..., None]
        return out.clamp(0, 1).movedim(-1, -3)  # [B, V, 3, H, W]
