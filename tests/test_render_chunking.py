"""Splitting a render under gsplat's intersection limit: the plan, the count, and that chunks change nothing."""

import functools
import math

import pytest
import torch

from facelift.cameras import Cameras
from facelift.gaussians import Gaussians
from facelift.render.chunking import Chunk, plan_chunks, render_chunks, tile_intersections
from facelift.render.projection import project
from facelift.render.torch_rasterizer import render_torch
from facelift.render.turntable import orbit_cameras


def _covered(chunks: list[Chunk], b: int, v: int) -> list[tuple[int, int]]:
    return [(i, j) for c in chunks for i in range(c.b0, c.b1) for j in range(c.v0, c.v1)]


def test_plan_groups_whole_samples_and_splits_only_a_sample_over_budget():
    counts = torch.tensor([[3, 3], [2, 2], [1, 1], [6, 5], [1, 1]])  # sums 6, 4, 2, 11, 2
    chunks = plan_chunks(counts, budget=8)
    assert chunks == [Chunk(0, 1, 0, 2), Chunk(1, 3, 0, 2), Chunk(3, 4, 0, 1), Chunk(3, 4, 1, 2), Chunk(4, 5, 0, 2)]
    assert _covered(chunks, 5, 2) == [(i, j) for i in range(5) for j in range(2)]  # every image once, in order


@pytest.mark.parametrize("seed", range(5))
def test_plan_keeps_every_call_under_budget_and_covers_each_image_once(seed):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 40, (7, 5), generator=gen)
    budget = 45
    chunks = plan_chunks(counts, budget)
    assert sorted(_covered(chunks, 7, 5)) == [(i, j) for i in range(7) for j in range(5)]
    assert len(_covered(chunks, 7, 5)) == 35
    for c in chunks:
        assert int(counts[c.b0:c.b1, c.v0:c.v1].sum()) <= budget
    for a, b in zip(chunks, chunks[1:]):  # whole-sample groups are maximal: the next sample would not fit
        if a.v0 == 0 and a.v1 == 5 and b.v0 == 0 and b.v1 == 5:
            assert int(counts[a.b0:b.b0 + 1].sum()) > budget
    assert plan_chunks(counts, int(counts.sum())) == [Chunk(0, 7, 0, 5)]  # all fits: one call


def test_plan_refuses_one_view_over_budget():
    with pytest.raises(RuntimeError, match="12 Gaussian-tile intersections.*budget of 10"):
        plan_chunks(torch.tensor([[3, 12]]), budget=10)


def test_tile_intersections_count_boxes_as_gsplat_does():
    # 40 x 24 image, 16 px tiles: 3 x 2 tiles
    means2d = torch.tensor([[20.0, 20.0],  # box x [15, 25] -> tiles 0..1, y [15, 25] -> 0..1: 4
                            [-10.0, 5.0],  # box x [-13, -7]: left of the image -> 0
                            [8.0, 8.0],  # radius 0: culled -> 0
                            [39.0, 3.0],  # box x [9, 69] -> tiles 0..2 (clamped), y [-27, 33] -> 0..1: 6
                            [16.0, 8.0]])  # box x [16, 16] on a tile edge: floor 1, ceil 1 -> 0 tiles wide
    radii = torch.tensor([[5.0, 5.0], [3.0, 3.0], [0.0, 0.0], [30.0, 30.0], [0.0001, 1.0]])
    radii[4, 0] = 0.0  # gsplat: a zero radius on either axis culls the Gaussian
    assert tile_intersections(means2d, radii, 40, 24).item() == 4 + 6
    only_first = radii.clone()
    only_first[1:] = 0.0
    per_image = tile_intersections(means2d.expand(2, -1, -1), torch.stack([radii, only_first]), 40, 24)  # [2]
    assert per_image.tolist() == [10, 4]


def _scene(b: int, n: int, seed: int) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(means=(torch.rand(b, n, 3, generator=gen) - 0.5) * 1.2,
                     quats=torch.randn(b, n, 4, generator=gen),
                     log_scales=torch.log(torch.rand(b, n, 3, generator=gen) * 0.08 + 0.02),
                     opacity_logits=torch.randn(b, n, generator=gen),
                     sh=torch.randn(b, n, 1, 3, generator=gen) * 0.5)


def test_chunked_render_gives_the_same_images_and_gradients():
    b, v, size = 3, 4, 24
    ring = orbit_cameras(v, size).to(torch.float32)
    cams = Cameras(ring.c2w.expand(b, -1, -1, -1), ring.intrinsics.expand(b, -1, -1), size, size)
    bg = torch.rand(b, 3, generator=torch.Generator().manual_seed(3))[:, None].expand(b, v, 3)
    scene = _scene(b, 64, 0)
    proj = project(scene.means, scene.quats, scene.scales, scene.opacities, cams, 0.01, 100.0)
    counts = tile_intersections(proj.means2d, torch.where(proj.visible[..., None], proj.radii, 0.0), size, size)
    counts = counts.reshape(b, v)
    assert counts.min() > 0
    # a budget that groups no two samples and splits the largest one by views
    budget = int(counts.sum(1).max()) - 1
    chunks = plan_chunks(counts, budget)
    assert any(c.v1 - c.v0 < v for c in chunks) and len(chunks) > b

    def run(plan):
        leaves = _scene(b, 64, 0)
        for t in (leaves.means, leaves.log_scales, leaves.opacity_logits, leaves.sh):
            t.requires_grad_(True)
        fn = functools.partial(render_torch, near=0.01, far=100.0)
        rgb, alpha, depth = render_chunks(fn, leaves, cams, bg, plan)
        weights = torch.linspace(0, 1, rgb.numel()).reshape(rgb.shape)
        ((rgb * weights).sum() + alpha.sum() + 0.1 * depth.sum()).backward()
        return rgb.detach(), alpha.detach(), [leaves.means.grad, leaves.log_scales.grad, leaves.sh.grad]

    whole, split = run([Chunk(0, b, 0, v)]), run(chunks)
    assert whole[0].shape == (b, v, 3, size, size) and whole[1].amax() > 0.5
    torch.testing.assert_close(split[0], whole[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(split[1], whole[1], rtol=0, atol=1e-6)
    for gs, gw in zip(split[2], whole[2]):
        assert gw.abs().max() > 0 and not math.isnan(gw.sum().item())
        torch.testing.assert_close(gs, gw, rtol=1e-5, atol=1e-6)
