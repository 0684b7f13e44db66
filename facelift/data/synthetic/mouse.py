"""Procedural laboratory mice as 3D Gaussians: a distinct animal per seed, posed along a bent spine.

An animal is an identity (`MouseShape`: coat, body length and girth, head, ears, legs, tail, shade) and a posture
(`MousePose`: spine bend, rearing, hunch, head turn, tail curl, feet, place and heading on the floor). The body is a
chain of ellipsoids along the spine; head, snout, nose, eyes, ears, legs, feet and tail are more ellipsoids. Each
ellipsoid's surface is tiled with flat Gaussians (thin along the surface normal). Fur Gaussians are stretched along
their part's long axis (the spine: fur lies towards the tail) and their colours carry the coat's pattern (agouti
ticking, streaks, a lighter belly) and a light from above baked in, since the renderer has no lighting.
Every animal has exactly ``count`` Gaussians, so that many animals render as one batch.

World: Z up, the floor at z = 0, FaceLift's units (nose to tail base ~0.6-0.8: the lab's framing at distance ~2.7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from facelift.gaussians import SH_C0, Gaussians

COATS = ("black", "white", "agouti", "brown")  # the common lab strains' looks: C57BL/6, BALB/c, wild type, ...
# per coat: back, belly, ticking (agouti's yellow band; None: no ticking), skin (ears, feet, nose), tail, eyes
PALETTES = {
    "black": ((0.08, 0.075, 0.07), (0.12, 0.11, 0.105), None, (0.42, 0.33, 0.33), (0.22, 0.18, 0.18), (0.02,) * 3),
    "white": ((0.92, 0.91, 0.87), (0.95, 0.94, 0.91), None, (0.95, 0.70, 0.68), (0.93, 0.75, 0.71), (0.62, 0.1, 0.12)),
    "agouti": ((0.16, 0.12, 0.09), (0.78, 0.72, 0.60), (0.62, 0.46, 0.26), (0.80, 0.60, 0.56), (0.45, 0.37, 0.33),
               (0.02,) * 3),
    "brown": ((0.40, 0.26, 0.15), (0.62, 0.50, 0.38), None, (0.82, 0.62, 0.58), (0.55, 0.42, 0.36), (0.02,) * 3),
}
FUR, SKIN, TAIL, EYE = range(4)  # surface kinds: fur (back/belly blend), skin, tail, eye
LIGHT = F.normalize(torch.tensor([0.35, -0.3, 1.0], dtype=torch.float64), dim=0)  # the room light, from above


@dataclass(frozen=True)
class MouseShape:
    """What stays the same for one animal across its recordings."""

    coat: str  # one of COATS
    body_length: float  # tail base to neck along the spine
    girth: float  # body width and height factor
    head_scale: float
    ear_scale: float
    leg_length: float
    tail_length: float
    tint: tuple[float, float, float]  # this animal's shade of its coat (colour multiplier)
    fur_phase: float  # offset of its streak pattern


@dataclass(frozen=True)
class MousePose:
    """One posture of an animal, placed on the floor."""

    bend: float  # lateral spine bend, radians from tail base to neck (signed)
    rear: float  # spine pitch at the neck, radians (0: on all fours, ~0.9: rearing)
    arch: float  # hunch: the spine rises behind and falls in front by this pitch, radians
    head_yaw: float  # head turn relative to the neck, radians
    head_pitch: float  # head nod relative to the neck, radians
    tail_curl: tuple[float, float, float]  # tail heading change: total turn, wave amplitude, wave cycles
    feet: tuple[float, float, float, float]  # forward offset of each foot (hind left/right, fore left/right)
    position: tuple[float, float]  # body centre on the floor
    heading: float  # direction the body faces, radians from +X


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=gen, dtype=torch.float64))


def sample_shape(gen: torch.Generator) -> MouseShape:
    """A random animal: the four coats equally likely, sizes within a few tens of percent of an adult mouse."""
    coat = COATS[int(torch.randint(len(COATS), (1,), generator=gen))]
    shade = _u(gen, 0.85, 1.15)
    tint = tuple(shade * _u(gen, 0.95, 1.05) for _ in range(3))
    length = _u(gen, 0.40, 0.56)
    return MouseShape(coat, length, _u(gen, 0.85, 1.2), _u(gen, 0.9, 1.12), _u(gen, 0.8, 1.25),
                      _u(gen, 0.13, 0.18), length * _u(gen, 0.8, 1.1), tint, _u(gen, 0, 2 * math.pi))


def sample_pose(gen: torch.Generator, spread: float = 0.1) -> MousePose:
    """A random posture within ``spread`` of the floor's origin, any heading."""
    rear = _u(gen, 0.0, 0.9) if _u(gen, 0, 1) < 0.3 else _u(gen, -0.05, 0.15)  # a third of the time rearing up
    r, a = spread * math.sqrt(_u(gen, 0, 1)), _u(gen, 0, 2 * math.pi)
    return MousePose(_u(gen, -1.1, 1.1), rear, _u(gen, -0.05, 0.3), _u(gen, -0.6, 0.6), _u(gen, -0.35, 0.3),
                     (_u(gen, -2.5, 2.5), _u(gen, 0, 0.6), _u(gen, 0.5, 2.0)),
                     tuple(_u(gen, -0.05, 0.05) for _ in range(4)), (r * math.cos(a), r * math.sin(a)),
                     _u(gen, 0, 2 * math.pi))


# --------------------------------------------------------------------- parts
class _Parts:
    """Ellipsoids collected while building an animal: centre, radii, rotation (columns = its axes), kind."""

    def __init__(self) -> None:
        self.centres, self.radii, self.rots, self.kinds = [], [], [], []

    def add(self, centre: Tensor, radii, rot: Tensor, kind: int) -> None:
        self.centres.append(centre)
        self.radii.append(torch.as_tensor(radii, dtype=torch.float64))
        self.rots.append(rot)
        self.kinds.append(kind)

    def segment(self, a: Tensor, b: Tensor, radius: float, kind: int, overlap: float = 1.15) -> None:
        """A limb or tail piece from ``a`` to ``b``: long axis along it, ``overlap`` so neighbours join."""
        d = b - a
        self.add((a + b) / 2, (overlap * float(d.norm()) / 2, radius, radius), _frame(d), kind)


def _frame(x: Tensor) -> Tensor:
    """Rotation [3, 3] whose first column is along ``x``, second horizontal (left), third up-ish."""
    x = F.normalize(x, dim=0)
    side = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype), x)
    if side.norm() < 1e-6:  # pointing straight up or down
        side = torch.tensor([0.0, 1.0, 0.0], dtype=x.dtype)
    y = F.normalize(side, dim=0)
    return torch.stack([x, y, torch.linalg.cross(x, y)], dim=1)


def _direction(yaw: float, pitch: float) -> Tensor:
    return torch.tensor([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)],
                        dtype=torch.float64)


def _turn(rot: Tensor, axis: int, angle: float) -> Tensor:
    """``rot`` turned about its own axis ``axis`` by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    local = torch.eye(3, dtype=torch.float64)
    local[i, i], local[i, j], local[j, i], local[j, j] = c, -s, s, c
    return rot @ local


def _profile(s: float, knots: tuple[float, ...]) -> float:
    """Piecewise-linear body cross-section along the spine (knots at s = 0, 0.3, 0.6, 0.85, 1)."""
    xs = (0.0, 0.3, 0.6, 0.85, 1.0)
    for k in range(4):
        if s <= xs[k + 1]:
            t = (s - xs[k]) / (xs[k + 1] - xs[k])
            return knots[k] * (1 - t) + knots[k + 1] * t
    return knots[-1]


def build_parts(shape: MouseShape, pose: MousePose, segments: int = 10) -> _Parts:
    """Every ellipsoid of the animal in its own frame: tail base near the origin, facing +X, floor at z = 0."""
    parts, g = _Parts(), shape.girth
    width, height = (0.10, 0.17, 0.155, 0.12, 0.085), (0.09, 0.135, 0.13, 0.11, 0.08)
    half_w = lambda s: g * _profile(s, width)  # noqa: E731
    half_h = lambda s: g * _profile(s, height)  # noqa: E731
    step = shape.body_length / segments
    points = [torch.tensor([0.0, 0.0, 0.55 * shape.leg_length + 0.10 * g], dtype=torch.float64)]
    frames = []
    for k in range(segments):  # integrate the spine: yaw bends it sideways, pitch rears and hunches it
        s = (k + 0.5) / segments
        d = _direction(pose.bend * (s - 0.5), pose.rear * s * s + pose.arch * (1 - 2 * s))
        points.append(points[-1] + step * d)
        frames.append(_frame(d))
        parts.add((points[-2] + points[-1]) / 2, (1.2 * step, half_w(s), half_h(s)), frames[-1], FUR)  # overlapping
    parts.add(points[0] + 0.3 * step * frames[0][:, 0], (0.09 * g, half_w(0) * 1.05, half_h(0) * 1.05), frames[0],
              FUR)  # the rump

    spine = lambda s: points[0] + (points[-1] - points[0]) * s  # noqa: E731  (for limb attachment, roughly)
    # head: continues the neck, turned and nodded; snout, nose, eyes and ears hang on its frame
    hs = shape.head_scale
    neck = frames[-1]
    yaw0 = math.atan2(float(neck[1, 0]), float(neck[0, 0]))
    pitch0 = math.asin(max(-1.0, min(1.0, float(neck[2, 0]))))
    head = _frame(_direction(yaw0 + pose.head_yaw, 0.6 * pitch0 + pose.head_pitch - 0.15))
    fwd, left, up = head.unbind(1)
    centre = points[-1] + 0.08 * hs * fwd
    parts.add(centre, (0.115 * hs, 0.078 * hs, 0.072 * hs), head, FUR)
    parts.add(centre + 0.095 * hs * fwd - 0.012 * hs * up, (0.07 * hs, 0.045 * hs, 0.04 * hs), head, FUR)
    parts.add(centre + 0.163 * hs * fwd - 0.014 * hs * up, (0.016 * hs,) * 3, head, SKIN)  # nose
    for side in (1, -1):
        parts.add(centre + hs * (0.05 * fwd + side * 0.056 * left + 0.028 * up), (0.017 * hs,) * 3, head, EYE)
        ear = _turn(_turn(head, 2, side * 0.5), 0, -side * 0.35)  # angled out and back, a thin disc
        es = shape.ear_scale * hs
        base = centre + hs * (-0.025 * fwd + side * 0.05 * left + 0.06 * up)
        parts.add(base + 0.035 * es * ear[:, 2], (0.012 * hs, 0.048 * es, 0.046 * es), ear, SKIN)

    # legs: thigh + shin to a foot on the floor (or hanging, when rearing lifts the shoulders out of reach)
    body_x = F.normalize(torch.cat([(points[-1] - points[0])[:2], torch.zeros(1, dtype=torch.float64)]), dim=0)
    body_y = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), body_x)
    for i, (s, thick, foot_len, knee) in enumerate(((0.18, 0.045, 0.035, 0.04), (0.18, 0.045, 0.035, 0.04),
                                                     (0.85, 0.026, 0.022, -0.03), (0.85, 0.026, 0.022, -0.03))):
        side = 1 if i % 2 == 0 else -1
        attach = spine(s) + side * 0.7 * half_w(s) * body_y - 0.3 * half_h(s) * torch.tensor([0, 0, 1.0],
                                                                                              dtype=torch.float64)
        foot = attach + pose.feet[i] * body_x + side * 0.03 * body_y
        foot[2] = 0.012
        reach = 1.1 * shape.leg_length * (1.0 if i < 2 else 0.8)
        if (foot - attach).norm() > reach:  # dangling forelimb
            foot = attach + reach * F.normalize(foot - attach, dim=0)
        mid = (attach + foot) / 2 + knee * body_x
        parts.segment(attach, mid, thick * g, FUR)
        parts.segment(mid, foot, 0.4 * thick, FUR)
        parts.add(foot + 0.4 * foot_len * body_x, (foot_len, 0.4 * foot_len, 0.011), _frame(body_x), SKIN)

    # tail: from under the rump, dropping to the floor within its first fifth, then curling on the floor
    n = 28  # short overlapping pieces: a tail, not a string of beads
    base = points[0] - 0.04 * frames[0][:, 0] - torch.tensor([0.0, 0.0, 0.02], dtype=torch.float64)
    heading0 = math.atan2(-float(frames[0][1, 0]), -float(frames[0][0, 0]))
    turn, amp, cycles = pose.tail_curl
    prev = base
    seg = shape.tail_length / n
    for k in range(1, n + 1):
        t = k / n
        phi = heading0 + turn * t + amp * math.sin(2 * math.pi * cycles * t)
        nxt = prev + seg * torch.tensor([math.cos(phi), math.sin(phi), 0.0], dtype=torch.float64)
        radius = 0.026 * (1 - t) + 0.008
        nxt[2] = max(radius, float(base[2]) * (1 - min(1.0, t / 0.2)))
        parts.segment(prev, nxt, radius, TAIL, overlap=1.6)
        prev = nxt
    return parts


def _ellipsoid_area(radii: Tensor) -> Tensor:  # [P, 3] -> [P], Knud Thomsen's approximation (within ~1 %)
    p = 1.6075
    a, b, c = radii.unbind(-1)
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def _split_count(weights: Tensor, count: int, least: int = 6) -> Tensor:
    """Integers >= ``least`` summing to ``count``, proportional to ``weights`` (largest remainders)."""
    spare = count - least * len(weights)
    if spare < 0:
        raise ValueError(f"{count} Gaussians cannot cover {len(weights)} parts ({least} each at least)")
    share = weights / weights.sum() * spare
    out = share.floor().long()
    out[torch.argsort(share - out, descending=True)[: spare - int(out.sum())]] += 1
    return out + least


def _quaternions(rot: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] -> unit quaternions [N, 4], w first (the branch with the largest divisor)."""
    m = rot
    t = torch.stack([1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    cands = torch.stack([
        torch.stack([t[:, 0], m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], t[:, 1], m[:, 1, 0] + m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] + m[:, 0, 1], t[:, 2], m[:, 2, 1] + m[:, 1, 2]], -1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] + m[:, 1, 2], t[:, 3]], -1),
    ], 1)  # [N, 4 branches, 4]
    best = t.argmax(-1)
    return F.normalize(cands[torch.arange(len(m)), best], dim=-1)


def mouse_gaussians(shape: MouseShape, pose: MousePose, count: int, gen: torch.Generator) -> Gaussians:
    """The posed animal as ``[1, count]`` Gaussians (float32) on the floor at ``pose.position``."""
    parts = build_parts(shape, pose)
    centres, radii, rots = torch.stack(parts.centres), torch.stack(parts.radii), torch.stack(parts.rots)
    kinds = torch.tensor(parts.kinds)
    area = _ellipsoid_area(radii)
    per_part = _split_count(area, count)
    pid = torch.repeat_interleave(torch.arange(len(area)), per_part)  # [N] part of each Gaussian
    unit = F.normalize(torch.randn(count, 3, generator=gen, dtype=torch.float64), dim=-1)
    r, rot = radii[pid], rots[pid]
    means = (rot @ (unit * r)[..., None])[..., 0] + centres[pid]
    normal = F.normalize((rot @ F.normalize(unit / r, dim=-1)[..., None])[..., 0], dim=-1)
    # each Gaussian lies flat on the surface, its long side along the part's axis (fur lies along the body)
    along = rot[:, :, 0] - (rot[:, :, 0] * normal).sum(-1, keepdim=True) * normal
    fallback = rot[:, :, 1] - (rot[:, :, 1] * normal).sum(-1, keepdim=True) * normal
    along = F.normalize(torch.where(along.norm(dim=-1, keepdim=True) > 0.2, along, fallback), dim=-1)
    frame = torch.stack([along, torch.linalg.cross(normal, along), normal], dim=-1)  # columns: along, across, normal
    spacing = (area / per_part).sqrt()[pid]
    furry = (kinds[pid] == FUR)[:, None]
    stretch = torch.where(furry, torch.tensor([1.8, 0.8, 0.3], dtype=torch.float64),
                          torch.tensor([0.8, 0.8, 0.3], dtype=torch.float64))
    log_scales = (stretch * spacing[:, None]).log()

    colours = _colours(shape, kinds[pid], means, normal, rot, gen)
    heading = torch.tensor([[math.cos(pose.heading), -math.sin(pose.heading), 0.0],
                            [math.sin(pose.heading), math.cos(pose.heading), 0.0], [0.0, 0.0, 1.0]],
                           dtype=torch.float64)
    middle = (centres[:, :2].amin(0) + centres[:, :2].amax(0)) / 2  # the animal's own centre goes to position
    means = torch.cat([means[:, :2] - middle, means[:, 2:]], dim=-1) @ heading.T
    means[:, :2] += torch.tensor(pose.position, dtype=torch.float64)
    quats = _quaternions(heading @ frame)
    sh = ((colours - 0.5) / SH_C0).reshape(1, count, 1, 3)
    return Gaussians(means[None].float(), quats[None].float(), log_scales[None].float(),
                     torch.full((1, count), 5.0), sh.float())  # opacity sigmoid(5) = 0.993


def _colours(shape: MouseShape, kinds: Tensor, means: Tensor, normal: Tensor, rot: Tensor,
             gen: torch.Generator) -> Tensor:
    """[N, 3] colours in [0, 1]: the coat's pattern, the animal's shade, a light from above."""
    back, belly, ticking, skin, tail, eye = (torch.tensor(c, dtype=torch.float64) if c else None
                                             for c in PALETTES[shape.coat])
    n = len(kinds)
    belly_w = torch.sigmoid(-10 * (normal[:, 2:] + 0.3))  # where the surface faces the floor
    top = back.expand(n, 3)
    if ticking is not None:  # agouti: banded hairs, seen as a fine salt-and-pepper of yellow and dark
        top = torch.where(torch.rand(n, 1, generator=gen, dtype=torch.float64) < 0.45, ticking, top)
    fur = top * (1 - belly_w) + belly * belly_w
    # streaks along the fur (across the part's side axis), wavy so they do not look ruled
    u = (means * rot[:, :, 1]).sum(-1)
    v = (means * rot[:, :, 0]).sum(-1)
    streak = 1 + 0.12 * torch.sin(90 * u + 6 * torch.sin(30 * v + shape.fur_phase))
    fur = fur * streak[:, None]
    table = torch.stack([back, skin, tail, eye])  # indexed by kind; FUR rows replaced below
    colour = torch.where((kinds == FUR)[:, None], fur, table[kinds])
    colour = colour * torch.tensor(shape.tint, dtype=torch.float64)
    colour = colour * (1 + 0.07 * torch.randn(n, 1, generator=gen, dtype=torch.float64))  # hair-to-hair jitter
    shade = 0.55 + 0.45 * (normal @ LIGHT).clamp_min(0)
    return (colour * shade[:, None]).clamp(0.01, 0.99)
