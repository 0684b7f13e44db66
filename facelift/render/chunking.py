"""Splitting one batched render into rasterizer calls that stay under a bound on Gaussian-tile intersections.

gsplat 1.5.3 lists every (image, Gaussian, 16 px tile) it has to composite in one array per call and indexes it with
32-bit offsets: past 2^31 intersections a call writes out of bounds ("CUDA error: an illegal memory access"). Random
init makes every Gaussian ~20 px wide, so a full-size batch (2 samples x 8 views of 512², 1 M Gaussians each) reaches
2.1 x 10^9 within a few steps. Each call here renders a group of whole samples, or of one sample's views, whose
intersections sum to at most the budget; the images are concatenated back, so images and gradients are those of
one call (each image is rasterized independently of the others either way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from facelift.cameras import Cameras
from facelift.gaussians import Gaussians

TILE_SIZE = 16  # gsplat's default tile side (px); intersections are counted per tile
# Per-call budget: a quarter of the int32 limit leaves room for estimate error, and keeps the call's sort buffers
# (~24 bytes per intersection) near 13 GB.
MAX_INTERSECTIONS = 2**29


@dataclass(frozen=True)
class Chunk:
    """One rasterizer call: samples ``[b0, b1)`` and, of those, views ``[v0, v1)``."""

    b0: int
    b1: int
    v0: int
    v1: int


def tile_intersections(means2d: Tensor, radii: Tensor, width: int, height: int,
                       tile_size: int = TILE_SIZE) -> Tensor:
    """Tiles each projected Gaussian touches, summed per image, as gsplat's ``isect_tiles`` counts them.

    ``means2d`` [..., N, 2] pixel coordinates, ``radii`` [..., N, 2] screen half-sizes (0 = culled). Returns int64
    counts [...]: a box covers tiles ``floor(m / t - r / t)`` to ``ceil(m / t + r / t)`` (exclusive), clamped to the
    image, in gsplat's order of float operations so that boxes on a tile edge round the same way.
    """
    limit = means2d.new_tensor([-(-width // tile_size), -(-height // tile_size)])  # tiles per row / column
    centre, reach = means2d / tile_size, radii / tile_size  # [..., N, 2] in tiles
    lo = torch.minimum(torch.floor(centre - reach).clamp_min(0), limit)
    hi = torch.minimum(torch.ceil(centre + reach).clamp_min(0), limit)
    span = (hi - lo).to(torch.int64)  # [..., N, 2]
    seen = (radii > 0).all(-1)
    return torch.where(seen, span[..., 0] * span[..., 1], 0).sum(-1)


def plan_chunks(counts: Tensor, budget: int = MAX_INTERSECTIONS) -> list[Chunk]:
    """Group ``counts`` [B, V] (intersections per image) into as few calls as the budget allows, in order.

    Consecutive whole samples share a call while their sum fits; a sample that alone exceeds the budget is split
    into runs of consecutive views. One view over the budget cannot be split and is an error.
    """
    per_view = counts.tolist()
    b_total, v_total = len(per_view), len(per_view[0]) if per_view else 0
    chunks: list[Chunk] = []
    start, load = 0, 0  # the open group of whole samples [start, b)
    for b, views in enumerate(per_view):
        total = sum(views)
        if total <= budget and load + total <= budget:
            load += total
            continue
        if b > start:
            chunks.append(Chunk(start, b, 0, v_total))
        start, load = b, total
        if total <= budget:
            continue
        start, load = b + 1, 0  # split this sample by views
        v0, run = 0, 0
        for v, n in enumerate(views):
            if n > budget:
                raise RuntimeError(f"one view has {n:,} Gaussian-tile intersections, more than the renderer's "
                                   f"per-call budget of {budget:,}: the Gaussians are far too large for the image")
            if run + n > budget:
                chunks.append(Chunk(b, b + 1, v0, v))
                v0, run = v, 0
            run += n
        chunks.append(Chunk(b, b + 1, v0, v_total))
    if start < b_total:
        chunks.append(Chunk(start, b_total, 0, v_total))
    return chunks


RenderFn = Callable[[Gaussians, Cameras, Tensor], tuple[Tensor, ...]]


def render_chunks(fn: RenderFn, gaussians: Gaussians, cameras: Cameras, background: Tensor,
                  chunks: list[Chunk]) -> tuple[Tensor, ...]:
    """Run ``fn(gaussians, cameras [B', V'], background [B', V', 3])`` per chunk; outputs [B, V, ...] reassembled."""
    if len(chunks) == 1:
        return fn(gaussians, cameras, background)
    rows: list[tuple[Tensor, ...]] = []  # one per group of samples, all views
    pending: list[tuple[Tensor, ...]] = []  # view runs of the sample being split
    for c in chunks:
        out = fn(gaussians[c.b0:c.b1], cameras[c.b0:c.b1, c.v0:c.v1], background[c.b0:c.b1, c.v0:c.v1])
        if c.v0 == 0 and c.v1 == cameras.batch_shape[1]:
            rows.append(out)
            continue
        pending.append(out)
        if c.v1 == cameras.batch_shape[1]:  # the sample's last run
            rows.append(tuple(torch.cat(parts, dim=1) for parts in zip(*pending)))
            pending = []
    return tuple(torch.cat(parts, dim=0) for parts in zip(*rows))
