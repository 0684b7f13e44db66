"""The PyTorch renderer: analytic footprints, a per-pixel sequential reference, gradients, the render() contract."""

import functools
import math

import pytest
import torch

from facelift.cameras import Cameras, look_at
from facelift.gaussians import Gaussians
from facelift.render import Renders, render
from facelift.render.projection import project
from facelift.render.sh import sh_to_rgb
from facelift.render.torch_rasterizer import render_torch


def _camera_on_axis(distance: float, size: int, f: float) -> Cameras:
    """One camera on -Z looking at the origin (+Y down in the image, as OpenCV)."""
    c2w = look_at(torch.tensor([[0.0, 0.0, -distance]]), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    return Cameras(c2w[None], torch.tensor([[[f, f, size / 2, size / 2]]]), size, size)


def _one_gaussian(log_scales, quat=(1.0, 0.0, 0.0, 0.0), opacity=0.8, rgb=(0.9, 0.2, 0.1)) -> Gaussians:
    dc = (torch.tensor(rgb) - 0.5) / 0.28209479177387814
    return Gaussians(torch.zeros(1, 1, 3), torch.tensor([[quat]]), torch.tensor([[log_scales]]),
                     torch.logit(torch.tensor([[opacity]])), dc.reshape(1, 1, 1, 3))


def _analytic_alpha(size: int, var_x: float, var_y: float, opacity: float) -> torch.Tensor:
    c = torch.arange(size) + 0.5 - size / 2  # pixel centres relative to the principal point
    v, u = torch.meshgrid(c, c, indexing="ij")
    alpha = opacity * torch.exp(-0.5 * (u**2 / (var_x + 0.3) + v**2 / (var_y + 0.3)))  # +0.3 px^2 dilation
    return torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))


def test_single_gaussian_renders_its_analytic_footprint():
    size, f, d, s, o = 32, 40.0, 2.0, 0.1, 0.8
    g, cams = _one_gaussian([math.log(s)] * 3, opacity=o), _camera_on_axis(d, size, f)
    bg = torch.tensor([0.0, 0.5, 1.0])
    out = render(g, cams, bg, backend="torch")
    alpha = _analytic_alpha(size, (f * s / d) ** 2, (f * s / d) ** 2, o)
    torch.testing.assert_close(out.alpha[0, 0, 0], alpha, atol=1e-6, rtol=1e-5)
    expect = alpha * torch.tensor([0.9, 0.2, 0.1])[:, None, None] + (1 - alpha) * bg[:, None, None]
    torch.testing.assert_close(out.rgb[0, 0], expect, atol=1e-6, rtol=1e-5)
    drawn = alpha > 0
    torch.testing.assert_close(out.depth[0, 0, 0][drawn], torch.full((int(drawn.sum()),), d))
    assert (out.depth[0, 0, 0][~drawn] == 0).all() and drawn.sum() > 50 and not drawn[0].any()


def test_rotated_anisotropic_gaussian_swaps_its_axes():
    size, f, d = 32, 40.0, 2.0
    sx, sy = 0.12, 0.04
    cams = _camera_on_axis(d, size, f)
    quarter = (math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4))  # 90 deg about Z = the optical axis
    out = render(_one_gaussian([math.log(sx), math.log(sy), -3.0], quat=quarter, opacity=0.99), cams, 0.0,
                 backend="torch")
    alpha = _analytic_alpha(size, (f * sy / d) ** 2, (f * sx / d) ** 2, 0.99)
    torch.testing.assert_close(out.alpha[0, 0, 0], alpha, atol=1e-6, rtol=1e-5)


def _sequential_reference(g: Gaussians, cams: Cameras, bg: torch.Tensor):
    """Per image, Gaussians one by one in depth order over all pixels, with gsplat's skip/termination rules."""
    b, v = cams.batch_shape
    h, w = cams.height, cams.width
    proj = project(g.means, g.quats, g.scales, g.opacities, cams, 0.01, 100.0)
    py, px = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    rgbs, alphas, depths, terminated = [], [], [], 0
    for i in range(b * v):
        s = i // v
        colors = sh_to_rgb(g.sh[s], g.means[s] - cams.centers.reshape(-1, 3)[i])
        trans, acc, dep = torch.ones(h, w), torch.zeros(h, w, 3), torch.zeros(h, w)
        done = torch.zeros(h, w, dtype=torch.bool)
        for n in torch.argsort(proj.depths[i]).tolist():
            if not proj.visible[i, n]:
                continue
            a, bb, c = proj.conics[i, n]
            dx, dy = proj.means2d[i, n, 0] - px, proj.means2d[i, n, 1] - py
            sigma = 0.5 * (a * dx * dx + c * dy * dy) + bb * dx * dy
            alpha = (g.opacities[s, n] * torch.exp(-sigma)).clamp(max=0.999)
            use = (sigma >= 0) & (alpha >= 1 / 255) & ~done
            stop = use & (trans * (1 - alpha) <= 1e-4)
            done |= stop
            use &= ~stop
            weight = torch.where(use, alpha * trans, torch.zeros_like(trans))
            acc += weight[..., None] * colors[n]
            dep += weight * proj.depths[i, n]
            trans = torch.where(use, trans * (1 - alpha), trans)
        rgbs.append(acc.permute(2, 0, 1) + trans * bg.reshape(-1, 3)[i, :, None, None])
        alphas.append(1 - trans)
        depths.append(dep / (1 - trans).clamp_min(1e-10))
        terminated += int(done.sum())
    shape = (b, v, -1, h, w)
    return (torch.stack(rgbs).reshape(shape), torch.stack(alphas).reshape(shape), torch.stack(depths).reshape(shape),
            terminated)


def _random_scene(b=2, n=300, v=3, h=21, w=27, seed=1, degree=2):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    sh = r(b, n, (degree + 1) ** 2, 3) * 0.3
    g = Gaussians(r(b, n, 3) * 0.3, r(b, n, 4), r(b, n, 3) * 0.5 - 2.5, r(b, n) * 2 + 3, sh)
    az = torch.rand(b, v, generator=gen) * 2 * math.pi
    eye = torch.stack([2 * az.cos(), 2 * az.sin(), torch.rand(b, v, generator=gen)], -1)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cams = Cameras(c2w, torch.tensor([30.0, 32.0, 13.0, 11.0]).expand(b, v, 4), w, h)  # off-centre principal point
    return g, cams, torch.rand(b, v, 3, generator=gen)


@functools.cache
def _scene_and_reference():
    g, cams, bg = _random_scene()
    return (g, cams, bg), _sequential_reference(g, cams, bg)


@pytest.mark.parametrize("tile_size,budget", [(8, 2**18), (16, 300), (4, 40)])
def test_tiled_rasterizer_equals_the_sequential_reference(tile_size, budget):
    """Small budgets force depth segments, so the transmittance and termination state must carry across them."""
    (g, cams, bg), (rgb, alpha, depth, terminated) = _scene_and_reference()
    assert terminated > 0  # the scene is dense enough to exercise the early-termination rule
    out = render_torch(g, cams, bg, 0.01, 100.0, tile_size, budget)
    torch.testing.assert_close(out[0], rgb, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out[1], alpha, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out[2], depth, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("store", [0, 300, None])  # every block recomputed in backward, the first few kept, all kept
def test_gradients_reach_every_parameter_and_match_finite_differences(store):
    g, cams, bg = _random_scene(b=1, n=40, v=2, h=16, w=16, seed=3, degree=1)
    g = g.to(torch.float64)
    cams, bg = cams.to(torch.float64), bg.double()
    params = [g.means, g.quats, g.log_scales, g.opacity_logits, g.sh]
    for p in params:
        p.requires_grad_(True)
    weights = torch.rand(1, 2, 5, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss(*ps):
        rgb, alpha, depth = render_torch(Gaussians(*ps), cams, bg, 0.01, 100.0, 4, 64, store)
        return (torch.cat([rgb, alpha, depth], 2) * weights).sum()

    value = loss(*params)
    grads = torch.autograd.grad(value, params)
    for p, grad in zip(params, grads):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    gen = torch.Generator().manual_seed(1)
    directions = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    eps = 1e-6
    with torch.no_grad():
        plus = loss(*[p + eps * d for p, d in zip(params, directions)])
        minus = loss(*[p - eps * d for p, d in zip(params, directions)])
    numeric = (plus - minus) / (2 * eps)
    analytic = sum((gr * d).sum() for gr, d in zip(grads, directions))
    assert analytic.item() == pytest.approx(numeric.item(), rel=1e-4)


def test_render_contract_backgrounds_autocast_and_backend_choice():
    g, cams, _ = _random_scene(b=2, n=50, v=2, h=12, w=10, degree=0)
    white = render(g, cams)
    assert isinstance(white, Renders) and white.rgb.shape == (2, 2, 3, 12, 10)
    assert white.alpha.shape == white.depth.shape == (2, 2, 1, 12, 10)
    per_sample = render(g, cams, torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), backend="torch")
    torch.testing.assert_close(per_sample.rgb[0], white.rgb[0])
    black = render(g, cams, torch.zeros(3))
    torch.testing.assert_close(per_sample.rgb[1], black.rgb[1])
    torch.testing.assert_close(white.rgb - black.rgb, (1 - white.alpha).expand_as(white.rgb))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert render(g, cams).rgb.dtype == torch.float32
    with pytest.raises(RuntimeError, match="CUDA"):
        render(g, cams, backend="gsplat")
    with pytest.raises(ValueError, match="backend"):
        render(g, cams, backend="opengl")


def test_near_and_far_planes_cull_whole_gaussians():
    cams = _camera_on_axis(2.0, 16, 20.0)
    g = _one_gaussian([math.log(0.1)] * 3, opacity=0.9)
    assert render(g, cams, near=0.01, far=100.0).alpha.max() > 0.5
    assert render(g, cams, near=2.5).alpha.max() == 0  # mean in front of the near plane
    assert render(g, cams, far=1.5).alpha.max() == 0
