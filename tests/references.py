"""Independent references the value tests compare with: a maintained library or the definition, never `facelift`.

- `skimage_ssim`: SSIM by scikit-image with the project's window and border rule;
- `write_random_vgg16` / `lpips_package_reference`: one VGG16 file, read by the ``lpips`` package's own module;
- `identity_vgg19_perceptual`: FaceLift's perceptual loss, by hand, for VGG19 convolutions set to scaled identities.

And the plumbing to hand tensors to the project: `views_of` (target images as `Views`), `scored` (`ImageMetrics`
of renders given as images).
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import lpips
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torchvision.models.vgg import cfgs, make_layers

from facelift.cameras import Cameras, look_at
from facelift.render import Renders
from facelift.views import Views

SSIM_RADIUS = 5  # of the 11-pixel SSIM window (Gaussian, sigma 1.5)


def skimage_ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Wang et al.'s SSIM of two ``[3, H, W]`` images in [0, 1], as the spec defines it (Gaussian window 11,
    sigma 1.5, data range 1, K1 0.01, K2 0.03), by scikit-image, with the project's border rule.

    ``gaussian_weights`` with sigma 1.5 truncates at 3.5 sigma: an 11-pixel window; ``use_sample_covariance=False``
    takes the paper's plain weighted moments. The project (torchmetrics) scores every pixel: the images are
    reflect-padded by the window radius and the SSIM map is averaged over all H x W pixels. scikit-image averages
    only over pixels whose window lies inside what it is given, so it gets the same reflect-padded images
    (numpy's ``reflect`` is torch's) and its full map is averaged over the original pixels. (FaceLift's loss,
    pytorch_msssim, and its metric, scikit-image on the unpadded image, average the interior only.)"""
    pad = ((0, 0), (SSIM_RADIUS, SSIM_RADIUS), (SSIM_RADIUS, SSIM_RADIUS))
    p, t = (np.pad(x.detach().double().numpy(), pad, mode="reflect") for x in (pred, target))
    _, full = structural_similarity(t, p, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, K1=0.01, K2=0.03, full=True)
    return float(full[:, SSIM_RADIUS:-SSIM_RADIUS, SSIM_RADIUS:-SSIM_RADIUS].mean())  # channels averaged too


def write_random_vgg16(path: Path, seed: int = 3) -> Path:
    """A VGG16 features file in torchvision's layout (``features.{i}.*``), random but seeded weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = make_layers(cfgs["D"])
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def lpips_package_reference(vgg16_file: Path) -> lpips.LPIPS:
    """``lpips.LPIPS(net="vgg")`` as its authors build it, its ImageNet trunk taken from ``vgg16_file``.

    ``pnet_rand=False`` makes lpips call ``torchvision.models.vgg16(pretrained=True)``; here that call gets a
    torchvision VGG16 whose ``features`` (all lpips reads of it) load the file strictly, in place of the model-zoo
    download; its classifier, which lpips drops, is left out (it would only cost seconds of initialisation). The
    linear heads are the wheel's ``weights/v0.1/vgg.pth``, loaded by lpips itself. Takes images in [-1, 1]."""

    def vgg16_from_file(pretrained=False, **_):
        assert pretrained, "lpips asked for a random trunk"
        features = make_layers(cfgs["D"])  # torchvision's VGG16 feature stack
        state = torch.load(vgg16_file, weights_only=True)
        features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()}, strict=True)
        return SimpleNamespace(features=features)

    mp = pytest.MonkeyPatch()
    mp.setattr(lpips.pretrained_networks.tv, "vgg16", vgg16_from_file)
    mp.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("the LPIPS reference tried to download"))
    try:
        return lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=False, verbose=False).eval()
    finally:
        mp.undo()


IDENTITY_GAINS = tuple(1.0 + k / 10 for k in range(1, 15))  # conv k multiplies the RGB channels by this


def set_identity_vgg19(vgg: torch.nn.Module) -> None:
    """Make conv k of `VGG19Features` pass the 3 RGB channels through times ``IDENTITY_GAINS[k - 1]``."""
    for k, gain in enumerate(IDENTITY_GAINS, start=1):
        conv = getattr(vgg, f"conv{k}")
        conv.weight.data.zero_()
        conv.bias.data.zero_()
        conv.weight.data[:3, :3, 1, 1] = gain * torch.eye(3)


def identity_vgg19_perceptual(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """FaceLift's perceptual loss of ``[N, 3, H, W]`` images in [0, 1] by hand, for `set_identity_vgg19` weights
    and images above the ImageNet mean (so every ReLU passes): each tapped feature is then an average-pooled copy
    of the mean-subtracted image times the product of the gains so far, in 3 of its C channels."""
    mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
    A, B = a * 255 - mean, b * 255 - mean
    total = (A - B).abs().mean()  # the image term, weight 1
    taps = [(2, 0, 64, 1 / 2.6), (4, 1, 128, 1 / 4.8), (6, 2, 256, 1 / 3.7), (10, 3, 512, 1 / 5.6),
            (14, 4, 512, 10 / 1.5)]  # (conv, 2x2 average pools before it, channels, weight): relu1_2 ... relu5_2
    for conv, pools, channels, weight in taps:
        pa, pb = A, B
        for _ in range(pools):
            pa, pb = F.avg_pool2d(pa, 2), F.avg_pool2d(pb, 2)
        gain = float(np.prod(IDENTITY_GAINS[:conv]))
        total = total + weight * gain * (pa - pb).abs().mean() * 3 / channels  # the other channels are 0
    return total / 255


def views_of(images: torch.Tensor, masks: torch.Tensor | None = None) -> Views:
    """``images`` ``[B, V, 3, H, W]`` as target views seen by a ring of cameras (image terms ignore the cameras)."""
    b, v, _, h, w = images.shape
    az = torch.linspace(0, 2 * torch.pi, v + 1)[:v]
    eye = torch.stack([2.7 * az.cos(), 2.7 * az.sin(), torch.full_like(az, 0.5)], -1)  # [V, 3]
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    intr = torch.tensor([w * 1.1, h * 1.1, w / 2, h / 2]).expand(v, 4)
    cams = Cameras(c2w[None].expand(b, v, 4, 4), intr[None].expand(b, v, 4), w, h)
    masks = torch.ones(b, v, 1, h, w) if masks is None else masks
    return Views(images, masks, cams, torch.zeros(b, v, 2, dtype=torch.long))


def scored(metrics, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``metrics`` (an `ImageMetrics`) of renders ``pred`` vs ``target``, both ``[B, V, 3, H, W]``: full masks and
    alpha, so the whole-image scores are what is compared."""
    b, v, _, h, w = pred.shape
    renders = Renders(pred, torch.ones(b, v, 1, h, w), torch.zeros(b, v, 1, h, w))
    return metrics(renders, views_of(target))
