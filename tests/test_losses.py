"""GS-LRM losses: the VGG19 perceptual loss and its three weight readers, offline LPIPS, SSIM, the geometric terms,
the weighted sum with FaceLift's warmups, the foreground-only variant, and the loss configs."""

import socket

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from conftest import REPO
from facelift.cameras import Cameras, look_at
from facelift.errors import InputError, MissingWeightsError
from facelift.losses import GSLRMLoss
from facelift.losses.geometry_terms import pixelalign_loss, pointsdist_loss
from facelift.losses.image_terms import l2_loss, ssim_loss
from facelift.losses.lpips_loss import LPIPSLoss
from facelift.losses.perceptual import CAFFE_MEAN, PerceptualLoss, VGG19Features
from facelift.losses.vgg19_weights import (MATCONVNET_NAMES, OFFICIAL_PREFIX, TORCHVISION_INDICES,
                                           read_matconvnet)
from facelift.views import Views


def _images(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def _views(images, masks=None, distance=2.7):
    """Views of batch 1 seen by cameras on a ring looking at the origin (Z up)."""
    b, v, _, h, w = images.shape
    az = torch.linspace(0, 2 * torch.pi, v + 1)[:v]
    eye = torch.stack([distance * az.cos(), distance * az.sin(), torch.full_like(az, 0.5)], -1)  # [V, 3]
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    intr = torch.tensor([w * 1.1, h * 1.1, w / 2, h / 2]).expand(v, 4)
    cams = Cameras(c2w[None].expand(b, v, 4, 4), intr[None].expand(b, v, 4), w, h)
    masks = torch.ones(b, v, 1, h, w) if masks is None else masks
    return Views(images, masks, cams, torch.zeros(b, v, 2, dtype=torch.long))


@pytest.fixture(scope="module")
def random_perceptual():
    return PerceptualLoss(None, allow_random_init=True)


# ----------------------------------------------------------------- perceptual (VGG19)
def test_perceptual_is_zero_for_identical_images_and_has_gradients(random_perceptual):
    a, b = _images(seed=1), _images(seed=2)
    assert random_perceptual(a, a.clone()).item() == 0.0
    pred = b.clone().requires_grad_(True)
    loss = random_perceptual(pred, a)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in random_perceptual.parameters())


def test_perceptual_follows_facelift_recipe():
    # Conv k passes the RGB channels through, times s_k (identity kernel), so each tapped feature is a known
    # average-pooled copy of the mean-subtracted image: this pins the taps, the pooling and the term weights.
    loss = PerceptualLoss(None, allow_random_init=True)
    scales = [1.0 + k / 10 for k in range(1, 15)]
    for k, s in enumerate(scales, start=1):
        conv = getattr(loss.vgg, f"conv{k}")
        conv.weight.data.zero_()
        conv.bias.data.zero_()
        conv.weight.data[:3, :3, 1, 1] = s * torch.eye(3)
    a, b = 0.6 + 0.4 * _images(seed=3), 0.6 + 0.4 * _images(seed=4)  # > mean / 255: the ReLUs pass everything
    mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
    A, B = a * 255 - mean, b * 255 - mean
    expected = (A - B).abs().mean()
    taps = [(2, 0, 64, 1 / 2.6), (4, 1, 128, 1 / 4.8), (6, 2, 256, 1 / 3.7), (10, 3, 512, 1 / 5.6),
            (14, 4, 512, 10 / 1.5)]  # (conv, pools before it, channels, weight) for relu1_2 ... relu5_2
    for conv, pools, channels, weight in taps:
        pa, pb = A, B
        for _ in range(pools):
            pa, pb = F.avg_pool2d(pa, 2), F.avg_pool2d(pb, 2)
        gain = float(np.prod(scales[:conv]))
        expected = expected + weight * gain * (pa - pb).abs().mean() * 3 / channels  # other channels are 0
    torch.testing.assert_close(loss(a, b), expected / 255, rtol=1e-4, atol=1e-6)


def _write_matconvnet(path, channels=(3, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8, 8), seed=0):
    """A file in MatConvNet's layout: a 1xN cell of structs, conv filters [H, W, in, out], relu/pool in between."""
    rng = np.random.default_rng(seed)
    layers, filters = [], {}
    for k, name in enumerate(MATCONVNET_NAMES):
        w = rng.standard_normal((3, 3, channels[k], channels[k + 1])).astype(np.float32)
        b = rng.standard_normal((1, channels[k + 1])).astype(np.float32)
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = w, b
        layers.append({"name": name, "type": "conv", "weights": cell})
        layers.append({"name": "relu" + name[4:], "type": "relu"})
        filters[k + 1] = (w, b)
    cells = np.empty((1, len(layers)), dtype=object)
    for i, layer in enumerate(layers):
        cells[0, i] = layer
    scipy.io.savemat(str(path), {"layers": cells})
    return filters


def test_matconvnet_reader_turns_hwio_filters_into_torch_convolutions(tmp_path):
    filters = _write_matconvnet(tmp_path / "vgg.mat")
    state = read_matconvnet(tmp_path / "vgg.mat")
    assert len(state) == 28
    x = torch.randn(1, 4, 6, 7)  # conv2 takes 4 channels in this tiny file
    w, b = filters[2]
    ours = F.conv2d(x, state["conv2.weight"], state["conv2.bias"])  # valid correlation, [1, out, 4, 5]
    xn = x[0].numpy()  # [in, H, W]
    ref = np.zeros((w.shape[3], 4, 5), dtype=np.float64)
    for dy in range(3):  # MatConvNet: out[k, y, x] = b[k] + sum_{dy, dx, c} w[dy, dx, c, k] * in[c, y + dy, x + dx]
        for dx in range(3):
            ref += np.einsum("ck,cyx->kyx", w[dy, dx], xn[:, dy:dy + 4, dx:dx + 5])
    ref += b.reshape(-1)[:, None, None]
    np.testing.assert_allclose(ours[0].numpy(), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="do not fit VGG19"):  # a real VGG19 has other channel counts
        PerceptualLoss(tmp_path / "vgg.mat")


def test_matconvnet_reader_names_missing_layers(tmp_path):
    scipy.io.savemat(str(tmp_path / "other.mat"), {"layers": np.array([[{"name": "conv1_1", "type": "relu"}]],
                                                                      dtype=object)})
    with pytest.raises(InputError, match="lacks the layers conv1_2"):
        read_matconvnet(tmp_path / "other.mat")


@pytest.fixture(scope="module")
def vgg_state():
    torch.manual_seed(0)
    return VGG19Features().state_dict()


def test_official_checkpoint_and_torchvision_files_load_the_same_weights(tmp_path, vgg_state):
    official = {OFFICIAL_PREFIX + name: t for name, t in vgg_state.items()}
    official[OFFICIAL_PREFIX + "conv15.weight"] = torch.zeros(512, 512, 3, 3)  # present in FaceLift's, unused here
    official["patch_embedder.1.weight"] = torch.zeros(4, 4)
    torch.save({"model": official, "step": 21125}, tmp_path / "ckpt.pt")
    from_official = PerceptualLoss(tmp_path / "ckpt.pt")
    for name, t in vgg_state.items():
        assert torch.equal(from_official.vgg.state_dict(keep_vars=True)[name], t)
    assert torch.equal(from_official.vgg.input_scale, torch.ones(1, 3, 1, 1))

    tv = {f"features.{TORCHVISION_INDICES[int(name.split('.')[0][4:]) - 1]}.{name.split('.')[1]}": t
          for name, t in vgg_state.items()}
    torch.save(tv, tmp_path / "vgg19-tv.pth")
    from_tv = PerceptualLoss(tmp_path / "vgg19-tv.pth")
    assert torch.equal(from_tv.vgg.conv14.weight, vgg_state["conv14.weight"])
    # torchvision's weights expect (rgb - mean) / std on [0, 1]: a mid-grey pixel must arrive as such.
    caffe = 0.5 * 255.0 - torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1)
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close((caffe * from_tv.vgg.input_scale + from_tv.vgg.input_shift).flatten(), expected)

    torch.save({"model": {"patch_embedder.1.weight": torch.zeros(2, 2)}}, tmp_path / "no_vgg.pt")
    with pytest.raises(InputError, match="no VGG19 weights"):
        PerceptualLoss(tmp_path / "no_vgg.pt")


def _assert_one_sentence(message, *names):
    assert "\n" not in message and message.rstrip(".").count(". ") == 0, message
    for name in names:
        assert name in message, message


def test_missing_weight_files_raise_one_sentence(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        PerceptualLoss(tmp_path / "imagenet-vgg-verydeep-19.mat")
    _assert_one_sentence(str(err.value), str(tmp_path / "imagenet-vgg-verydeep-19.mat"),
                         "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat")
    with pytest.raises(MissingWeightsError) as err:
        GSLRMLoss(lpips_loss_weight=1.0, lpips_vgg16_weights=tmp_path / "vgg16-397923af.pth")
    _assert_one_sentence(str(err.value), str(tmp_path / "vgg16-397923af.pth"),
                         "https://download.pytorch.org/models/vgg16-397923af.pth")
    # An L2-only loss builds no network, so absent files do not matter.
    GSLRMLoss(l2_loss_weight=1.0, vgg19_weights=tmp_path / "absent.mat", lpips_vgg16_weights=tmp_path / "absent.pth")


# ----------------------------------------------------------------- LPIPS
@pytest.fixture
def no_network(monkeypatch):
    import torchvision.models._api

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def test_lpips_builds_offline_and_reads_a_local_torchvision_vgg16(tmp_path, no_network):
    random_lpips = LPIPSLoss(None, allow_random_init=True)
    a, b = _images(seed=5), _images(seed=6)
    assert random_lpips(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    pred = b.clone().requires_grad_(True)
    loss = random_lpips(pred, a)
    loss.backward()
    assert loss.item() > 0 and pred.grad.abs().sum() > 0
    assert not random_lpips.lpips.lins[0].training  # dropout off

    torch.manual_seed(1)
    backbone = {f"features.{name.split('.', 1)[1]}": torch.randn_like(t)
                for name, t in random_lpips.lpips.net.state_dict().items()}
    torch.save(backbone, tmp_path / "vgg16-397923af.pth")
    local = LPIPSLoss(tmp_path / "vgg16-397923af.pth")
    assert torch.equal(local.lpips.net.state_dict()["slice5.28.weight"], backbone["features.28.weight"])
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="not a torchvision VGG16"):
        LPIPSLoss(tmp_path / "bad.pth")


# ----------------------------------------------------------------- SSIM and the geometric terms
def test_ssim_loss_is_zero_for_identical_images_and_grows_with_noise():
    a = _images(seed=7)
    assert ssim_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(8))
    small, large = ssim_loss((a + 0.05 * noise).clamp(0, 1), a), ssim_loss((a + 0.3 * noise).clamp(0, 1), a)
    assert 0 < small < large


def test_pixelalign_measures_the_distance_from_the_ray_and_respects_the_mask():
    views = _views(torch.rand(1, 2, 3, 8, 8))
    origins, dirs = (t.movedim(-1, 2) for t in views.cameras.rays())  # [1, 2, 3, 8, 8]
    on_ray = origins + 2.5 * dirs
    assert pixelalign_loss(on_ray, origins, dirs).item() == pytest.approx(0.0, abs=1e-6)
    side = torch.linalg.cross(dirs, torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 3, 1, 1).expand_as(dirs), dim=2)
    shifted = on_ray + 0.3 * F.normalize(side, dim=2)
    assert pixelalign_loss(shifted, origins, dirs).item() == pytest.approx(0.3, rel=1e-4)
    mask = torch.zeros(1, 2, 1, 8, 8)
    mask[..., :4, :] = 1.0  # half the pixels count; the mean still runs over all of them, as in FaceLift
    assert pixelalign_loss(shifted, origins, dirs, mask).item() == pytest.approx(0.15, rel=1e-4)


def test_pointsdist_is_zero_at_its_goal_and_pulls_depths_towards_it():
    views = _views(torch.rand(1, 2, 3, 8, 8))
    origins, dirs = (t.movedim(-1, 2) for t in views.cameras.rays())  # [1, 2, 3, 8, 8]
    z = torch.randn(1, 2, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    z = (z - z.mean(dim=(2, 3, 4), keepdim=True)) / z.std(dim=(2, 3, 4), keepdim=True)
    goal_depth = origins.norm(dim=2, keepdim=True) + 0.5 * z  # per view: mean = camera distance, std = 0.5
    assert pointsdist_loss(origins + goal_depth * dirs, origins).item() == pytest.approx(0.0, abs=1e-8)
    xyz = (origins + (2.0 + 0.1 * z) * dirs).requires_grad_(True)
    loss = pointsdist_loss(xyz, origins)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(xyz.grad).all() and xyz.grad.abs().sum() > 0


# ----------------------------------------------------------------- the weighted sum
def test_weighted_sum_honours_weights_and_facelift_warmups():
    torch.manual_seed(0)
    loss = GSLRMLoss(l2_loss_weight=2.0, perceptual_loss_weight=0.25, ssim_loss_weight=0.5, l2_warmup_steps=10,
                     allow_random_init=True)
    target = _views(torch.rand(1, 2, 3, 32, 32))
    rendered = torch.rand(1, 2, 3, 32, 32)
    pred, truth = rendered.flatten(0, 1), target.images.flatten(0, 1)
    l2, ssim, perceptual = l2_loss(pred, truth), ssim_loss(pred, truth), loss.perceptual(pred, truth)

    early = loss(rendered, target, step=9)  # FaceLift's L2 warmup switches off the feature-network terms only
    assert set(early.terms) == {"l2", "ssim"} and early.weights["perceptual"] == 0.0
    torch.testing.assert_close(early.total, 2.0 * l2 + 0.5 * ssim)
    later = loss(rendered, target, step=10)
    assert set(later.terms) == {"l2", "ssim", "perceptual"}
    torch.testing.assert_close(later.terms["perceptual"], perceptual)
    torch.testing.assert_close(later.total, 2.0 * l2 + 0.5 * ssim + 0.25 * perceptual)
    assert not later.terms["l2"].requires_grad

    only_l2 = GSLRMLoss(l2_loss_weight=1.0, perceptual_loss_weight=0.5, l2_warmup_steps=3, allow_random_init=True)
    assert only_l2(rendered, target, step=0).terms.keys() == {"l2"}

    pd = GSLRMLoss(l2_loss_weight=1.0, perceptual_loss_weight=0.5, warmup_pointsdist=True, allow_random_init=True)
    assert pd.weights_at(999) == {"l2": 0.0, "lpips": 0.0, "perceptual": 0.0, "ssim": 0.0, "pixelalign": 0.0,
                                  "pointsdist": 0.1, "alpha": 0.0}
    assert pd.weights_at(1000)["l2"] == 1.0 and pd.weights_at(1000)["pointsdist"] == 0.0
    assert pd.needs_pixel_xyz
    with pytest.raises(ValueError, match="need input_views and pixel_xyz"):
        pd(rendered, target, step=0)
    with pytest.raises(ValueError, match="every term has weight 0 at step 0"):
        GSLRMLoss(l2_loss_weight=0.0, perceptual_loss_weight=1.0, l2_warmup_steps=5, allow_random_init=True)


def test_geometry_terms_flow_from_the_pixel_positions():
    inputs = _views(torch.rand(1, 2, 3, 8, 8))
    origins, dirs = (t.movedim(-1, 2) for t in inputs.cameras.rays())
    pixel_xyz = (origins + 2.0 * dirs).requires_grad_(True)
    loss = GSLRMLoss(l2_loss_weight=1.0, pixelalign_loss_weight=1.0, pointsdist_loss_weight=0.5)
    out = loss(torch.rand(1, 2, 3, 8, 8), inputs, step=0, input_views=inputs, pixel_xyz=pixel_xyz)
    assert set(out.terms) == {"l2", "pixelalign", "pointsdist"}
    out.total.backward()
    assert pixel_xyz.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one Gaussian position per input pixel"):
        loss(torch.rand(1, 2, 3, 8, 8), inputs, step=0, input_views=inputs, pixel_xyz=pixel_xyz[..., :4])


def test_masked_image_losses_ignore_the_background():
    torch.manual_seed(0)
    mask = torch.zeros(1, 2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1.0
    target = _views(torch.rand(1, 2, 3, 32, 32), mask)
    background_differs = torch.where(mask.bool(), target.images, torch.rand(1, 2, 3, 32, 32))
    kwargs = dict(l2_loss_weight=1.0, perceptual_loss_weight=1.0, ssim_loss_weight=1.0, allow_random_init=True)
    masked, plain = GSLRMLoss(masked_image_losses=True, **kwargs), GSLRMLoss(**kwargs)
    assert masked(background_differs, target, step=0).total.item() == pytest.approx(0.0, abs=1e-6)
    assert plain(background_differs, target, step=0).total.item() > 0.01
    foreground_differs = background_differs.clone()
    foreground_differs[..., 12:20, 12:20] = 0.0
    assert masked(foreground_differs, target, step=0).total.item() > 0.01


def test_loss_runs_in_fp32_under_bf16_autocast(random_perceptual):
    loss = GSLRMLoss(l2_loss_weight=1.0, ssim_loss_weight=0.5, perceptual_loss_weight=0.5, allow_random_init=True)
    target = _views(torch.rand(1, 2, 3, 32, 32))
    rendered = torch.rand(1, 2, 3, 32, 32)
    plain = loss(rendered, target, step=0).total
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = loss(rendered, target, step=0).total
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, plain)


# ----------------------------------------------------------------- frozen networks and checkpoints
def test_loss_networks_are_frozen_and_kept_out_of_checkpoints(vgg_state):
    system = nn.ModuleDict({"net": nn.Linear(2, 2), "loss": GSLRMLoss(perceptual_loss_weight=1.0,
                                                                     allow_random_init=True)})
    system.train()
    assert not system["loss"].perceptual.training and system["net"].training
    assert not any(p.requires_grad for p in system["loss"].parameters())
    saved = system.state_dict()
    assert set(saved) == {"net.weight", "net.bias"}
    before = system["loss"].perceptual.vgg.conv1.weight.clone()
    system.load_state_dict(saved, strict=True)  # what Lightning does when resuming
    assert torch.equal(system["loss"].perceptual.vgg.conv1.weight, before)
    older = dict(saved, **{f"loss.perceptual.vgg.{name}": t for name, t in vgg_state.items()})
    system.load_state_dict(older, strict=True)  # a checkpoint that did carry them loads them
    assert torch.equal(system["loss"].perceptual.vgg.conv1.weight, vgg_state["conv1.weight"])


# ----------------------------------------------------------------- configs
def test_loss_configs_hold_facelift_and_mouse_values(tmp_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):  # no weights under tmp_path
        human, mouse, l2 = (compose(overrides=[f"+loss={name}", "+paths=default", f"paths.root_dir={tmp_path}"]).loss
                            for name in ("facelift", "mouse", "l2"))
    assert (human.l2_loss_weight, human.perceptual_loss_weight, human.lpips_loss_weight, human.ssim_loss_weight,
            human.l2_warmup_steps) == (1.0, 0.5, 0.0, 0.0, 500)
    assert (mouse.l2_loss_weight, mouse.lpips_loss_weight, mouse.perceptual_loss_weight, mouse.ssim_loss_weight,
            mouse.pixelalign_loss_weight, mouse.pointsdist_loss_weight, mouse.l2_warmup_steps) == (
        1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0)
    assert mouse.vgg19_weights == str(tmp_path / "weights/vgg19/imagenet-vgg-verydeep-19.mat")
    built = instantiate(l2)  # no weight file needed
    assert isinstance(built, GSLRMLoss) and {k for k, w in built.base_weights.items() if w > 0} == {"l2"}
    with pytest.raises(InstantiationException) as err:  # Hydra wraps the error; its cause is ours
        instantiate(human)
    assert isinstance(err.value.__cause__, MissingWeightsError) and "verydeep-19.mat" in str(err.value.__cause__)
