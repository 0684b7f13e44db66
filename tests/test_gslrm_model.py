"""GS-LRM network: shapes, pixel alignment and its Gaussian order, train/inference difference, checkpointing, bf16."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from facelift.cameras import Cameras, look_at
from facelift.models.gslrm import GSLRM, GSLRMConfig
from facelift.views import Views

from conftest import REPO

TINY = dict(patch_size=8, d=64, d_head=16, n_layer=2, n_gaussians=2, sh_degree=0)


def ring_views(b: int = 2, v: int = 3, size: int = 32, seed: int = 0) -> Views:
    """Random images seen from cameras on a ring of radius 2.7 around the origin (FaceLift's rig), Z up."""
    gen = torch.Generator().manual_seed(seed)
    az = torch.linspace(0, 2 * math.pi, v + 1)[:v] + torch.rand(b, 1, generator=gen)  # [B, V]
    eye = torch.stack([2.7 * az.cos(), 2.7 * az.sin(), torch.full_like(az, 0.5)], dim=-1)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    f = size / (2 * math.tan(math.radians(25)))
    intr = torch.tensor([f, f * 1.05, size / 2 + 0.7, size / 2 - 0.4]).expand(b, v, 4)  # off-centre on purpose
    images = torch.rand(b, v, 3, size, size, generator=gen)
    index = torch.stack(torch.meshgrid(torch.arange(v), torch.arange(b), indexing="xy"), -1)  # [B, V, 2]
    return Views(images, torch.ones(b, v, 1, size, size), Cameras(c2w, intr, size, size), index)


@pytest.fixture(scope="module")
def net() -> GSLRM:
    torch.manual_seed(0)
    model = GSLRM(**TINY, clip_xyz=True)
    with torch.no_grad():  # larger output weights so positions spread over the whole depth range (and get clipped)
        model.heads.pixel_proj.weight.mul_(40.0)
    return model.eval()


def test_forward_shapes_and_batch_independence(net):
    views = ring_views(b=2, v=3, size=32)
    with torch.no_grad():
        g = net(views)
        alone = net(Views(views.images[1:], views.masks[1:], views.cameras[1:], views.index[1:]))
    n = 2 + 3 * 32 * 32
    assert (g.batch_size, g.num_gaussians, g.sh_degree) == (2, n, 0)
    assert g.means.dtype == torch.float32
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        torch.testing.assert_close(getattr(g, name)[1:], getattr(alone, name), atol=1e-5, rtol=1e-5)
    assert (g.log_scales <= -1.2).all()  # FaceLift's cap on the Gaussians' size


def test_pixel_gaussians_lie_on_their_pixel_rays_in_patch_order(net):
    """Project each pixel Gaussian into its own view: it must land on the centre of its own pixel, where the
    pixel order is (view, patch row, patch column, row in patch, column in patch)."""
    views = ring_views(b=1, v=2, size=32)
    with torch.no_grad():
        g = net(views)
    p, hp, wp = 8, 4, 4
    idx = torch.arange(2 * 32 * 32).reshape(2, hp, wp, p, p)  # Gaussian number by (view, h, w, row, col)
    for view in range(2):
        for r, c in [(0, 0), (5, 3), (17, 30), (31, 31)]:
            k = 2 + idx[view, r // p, c // p, r % p, c % p]
            uv, z = views.cameras[0, view].project(g.means[0, k][None])
            torch.testing.assert_close(uv[0], torch.tensor([c + 0.5, r + 0.5]), atol=1e-3, rtol=0)
            assert z.item() > 0


def test_clip_xyz_only_in_training(net):
    views = ring_views(b=1, v=2, size=32)
    with torch.no_grad():
        inference = net.eval()(views)
        train = net.train()(views)
    net.eval()
    pixel = inference.means[:, 2:]
    assert pixel.abs().max() > 1.0  # the test has something to clip
    torch.testing.assert_close(train.means[:, 2:], pixel.clamp(-1, 1))
    torch.testing.assert_close(train.means[:, :2], inference.means[:, :2])  # the learned Gaussians are not clipped
    torch.testing.assert_close(train.sh, inference.sh)


def test_default_training_forward_is_unclamped_as_in_facelift(net):
    """FaceLift's training never applies its clamp (its `inference` mapping reads as true), so neither does ours."""
    default = GSLRM(**TINY)
    default.load_state_dict(net.state_dict())
    assert default.config.clip_xyz is False
    views = ring_views(b=1, v=2, size=32)
    with torch.no_grad():
        train = default.train()(views)
        inference = default.eval()(views)
    assert train.means[:, 2:].abs().max() > 1.0
    torch.testing.assert_close(train.means, inference.means)


@pytest.mark.parametrize("keep_attention", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(keep_attention):
    views = ring_views(b=1, v=2, size=16)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = GSLRM(**TINY, gradient_checkpointing=checkpointing, checkpoint_keeps_attention=keep_attention).train()
        g = model(views)
        (g.means.square().mean() + g.sh.mean() + g.opacities.mean()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


def test_kept_attention_is_not_recomputed():
    """With checkpoint_keeps_attention the attention kernel runs once per block (forward only), else twice."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountAttention(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "scaled_dot_product" in func.__name__ and "backward" not in func.__name__:
                CountAttention.calls += 1
            return func(*args, **(kwargs or {}))

    views = ring_views(b=1, v=1, size=16)
    for keep, expected in ((True, 2), (False, 4)):
        model = GSLRM(**TINY, gradient_checkpointing=True, checkpoint_keeps_attention=keep).train()
        CountAttention.calls = 0
        with CountAttention():
            model(views).means.sum().backward()
        assert CountAttention.calls == expected


def test_bf16_autocast_and_bf16_weights_track_float32(net):
    views = ring_views(b=1, v=2, size=16)
    with torch.no_grad():
        ref = net(views)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = net(views)
        half = GSLRM(**TINY).to(torch.bfloat16).eval()
        half.load_state_dict(net.state_dict())
        bf16 = half(views)
    for g in (auto, bf16):
        assert g.means.dtype == torch.float32 and torch.isfinite(g.means).all()
        assert (g.means - ref.means).abs().max() < 0.1  # positions in a head of size ~2
        assert (g.opacities - ref.opacities).abs().max() < 0.05


def test_bad_inputs_are_refused(net):
    with pytest.raises(ValueError, match="multiples of patch_size=8"):
        net(ring_views(b=1, v=1, size=20))
    with pytest.raises(ValueError, match="attention_backend"):
        GSLRM(**TINY, attention_backend="xformers")
    with pytest.raises(TypeError):
        GSLRM(**TINY, depth_bias=1.0)


def test_configs_instantiate_and_full_size_is_the_official_architecture():
    with initialize_config_dir(str(REPO / "conf" / "model"), version_base=None):
        tiny = instantiate(compose("gslrm_tiny").net)
        full_cfg = compose("gslrm").net
    assert isinstance(tiny, GSLRM) and tiny.config.d == 64 and tiny.config.n_layer == 2
    with torch.device("meta"):
        full = instantiate(full_cfg)
    assert full.config == GSLRMConfig()  # the dataclass defaults are the official checkpoint's architecture
    assert round(sum(p.numel() for p in full.parameters()) / 1e6, 1) == 303.6
