"""The reported numbers against independent references: PSNR by hand, SSIM against scikit-image, LPIPS against the
``lpips`` package's own module reading the same VGG16 file.

Images: crops of the public FaceLift sample (``../shared/fixtures``) and tiny hand-made ones. Every expected value
is computed here, outside `facelift`, from the definition or by a maintained library.
"""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from conftest import SAMPLE
from references import scored, skimage_ssim
from facelift.image_io import composite, read_image
from facelift.systems.metrics import ImageMetrics

VIEWS = SAMPLE / "gslrm" / "sample_000" / "images"


def fixture_crop(cam: int, top: int = 200, left: int = 224, size: int = 48) -> torch.Tensor:
    """A ``[3, size, size]`` crop of the sample head (on white), where the face has texture."""
    rgb = composite(read_image(VIEWS / f"cam_{cam:03d}.png"), 1.0)
    return rgb[:, top:top + size, left:left + size].contiguous()


def hand_made(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A horizontal ramp with a bright square, and the same picture shifted one pixel and dimmed: ``[3, s, s]``."""
    x = torch.linspace(0.1, 0.9, size)
    ramp = x.expand(3, size, size).clone()
    ramp[:, 4:9, 5:11] = torch.tensor([0.95, 0.2, 0.6])[:, None, None]
    return ramp, 0.8 * ramp.roll(1, dims=2) + 0.05


def pairs() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, render, target) in [0, 1], each ``[3, H, W]``."""
    a, b = hand_made()
    noise = torch.randn(3, 48, 48, generator=torch.Generator().manual_seed(0))
    face = fixture_crop(0)
    return [("hand_made", b, a), ("face_noisy", (face + 0.1 * noise).clamp(0, 1), face),
            ("face_other_view", fixture_crop(1), face), ("face_shifted", fixture_crop(0, top=203, left=222), face)]


# ----------------------------------------------------------------- PSNR
def test_psnr_of_hand_computed_errors():
    target = torch.full((1, 3, 3, 8, 8), 0.5)  # [B, V, 3, H, W]
    pred = target.clone()
    pred[0, 0] += 0.1  # every value off by 0.1: MSE 0.01 -> 20 dB
    pred[0, 1, 2, 5, 6] = 1.0  # one value of 192 off by 0.5: MSE 0.25 / 192
    pred[0, 2] = 1.3  # clamped to 1 before scoring (renders may overshoot): MSE 0.25 -> 10log10(4)
    psnr = scored(ImageMetrics(), pred, target)["psnr"]
    assert psnr.shape == (1, 3)
    expected = [20.0, 10 * math.log10(192 / 0.25), 10 * math.log10(4.0)]
    assert psnr[0].tolist() == pytest.approx(expected, abs=1e-4)


def test_psnr_of_fixture_crops_equals_its_definition():
    for name, pred, target in pairs():
        p, t = pred.double().numpy(), target.double().numpy()
        expected = 10 * np.log10(1.0 / np.mean((p - t) ** 2))  # data range 1: images in [0, 1]
        got = scored(ImageMetrics(), pred[None, None], target[None, None])["psnr"].item()
        assert got == pytest.approx(expected, abs=1e-4), name


# ----------------------------------------------------------------- SSIM
def test_ssim_equals_scikit_image_on_fixture_crops_and_hand_made_images():
    values = []
    for name, pred, target in pairs():
        got = scored(ImageMetrics(), pred[None, None], target[None, None])["ssim"].item()
        expected = skimage_ssim(pred, target)
        assert got == pytest.approx(expected, abs=1e-4), name
        values.append(expected)
    assert max(values) < 0.99 and min(values) > 0.05  # the pairs span real differences, not near-identity


def test_ssim_is_scored_per_view():
    (_, pa, ta), (_, pb, tb) = pairs()[1:3]
    got = scored(ImageMetrics(), torch.stack([pa, pb])[None], torch.stack([ta, tb])[None])["ssim"]
    assert got.shape == (1, 2)
    assert got[0].tolist() == pytest.approx([skimage_ssim(pa, ta), skimage_ssim(pb, tb)], abs=1e-4)


def test_the_border_rule_is_the_projects_not_facelifts():
    """On a 16-px image the border decides much of the mean: the project's value is not the interior-only one
    (FaceLift's), so a change of border rule (e.g. a torchmetrics upgrade) would show up here and above."""
    _, pred, target = pairs()[0]
    interior = structural_similarity(target.double().numpy(), pred.double().numpy(), data_range=1.0, channel_axis=0,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    got = scored(ImageMetrics(), pred[None, None], target[None, None])["ssim"].item()
    assert abs(got - interior) > 0.05 and got == pytest.approx(skimage_ssim(pred, target), abs=1e-4)


# ----------------------------------------------------------------- LPIPS
def test_lpips_equals_the_lpips_package_on_the_same_weights(vgg16_file, reference_lpips):
    ours = ImageMetrics(lpips=True, lpips_vgg16_weights=vgg16_file)
    for name, pred, target in pairs():
        if pred.shape[-1] < 32:  # VGG16 pools 4 times; LPIPS needs a few pixels at its last level
            continue
        got = scored(ours, pred[None, None], target[None, None])["lpips"].item()
        with torch.no_grad():  # lpips takes images in [-1, 1]
            expected = reference_lpips(pred[None] * 2 - 1, target[None] * 2 - 1).item()
        assert got == pytest.approx(expected, abs=1e-5), name
        assert expected > 1e-3, name  # a real distance, not two zeros
    with torch.no_grad():
        same = scored(ours, pairs()[1][2][None, None], pairs()[1][2][None, None])["lpips"].item()
    assert same == pytest.approx(0.0, abs=1e-6)


def test_a_render_outside_0_1_is_scored_clamped():
    """Renders are clamped to [0, 1] before scoring (the image that would be saved): -0.2 over a black target
    and 1.3 over a white one are exact matches; PSNR by hand 10 log10(1 / MSE) for the rest."""
    target = torch.zeros(1, 1, 3, 16, 16)
    target[..., 8:] = 1.0
    pred = target.clone()
    pred[..., :8] = -0.2
    pred[..., 8:] = 1.3
    assert scored(ImageMetrics(), pred, target)["psnr"].item() == math.inf
    pred[..., 0, 0] = 0.5  # one pixel off by 0.5 in each channel: MSE 0.25 / 256
    assert scored(ImageMetrics(), pred, target)["psnr"].item() == pytest.approx(10 * math.log10(256 / 0.25), abs=1e-4)
