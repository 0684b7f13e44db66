"""Validation and evaluation metrics: LPIPS when its VGG16 file is there (auto), required (true) or off (false)."""

import logging

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from facelift.errors import MissingWeightsError
from facelift.systems.metrics import ImageMetrics


def test_lpips_auto_scores_without_the_vgg16_file_and_says_so_once(tmp_path, caplog):
    missing = tmp_path / "vgg16-397923af.pth"
    pred, target = torch.rand(1, 2, 3, 32, 32), torch.rand(1, 2, 3, 32, 32)
    with caplog.at_level(logging.WARNING, logger="facelift"):
        metrics = ImageMetrics(lpips="auto", lpips_vgg16_weights=missing)
    assert set(metrics(pred, target)) == {"psnr", "ssim"}
    (note,) = [r.getMessage() for r in caplog.records]
    assert note.startswith(f"LPIPS skipped: no VGG16 weights at {missing}")

    with pytest.raises(MissingWeightsError, match=str(missing)):  # asked for explicitly: a missing file stops
        ImageMetrics(lpips=True, lpips_vgg16_weights=missing)
    random_vgg = ImageMetrics(lpips="auto", lpips_vgg16_weights=missing, allow_random_init=True)  # tests' escape
    assert set(random_vgg(pred, target)) == {"psnr", "ssim", "lpips"}
    with pytest.raises(ValueError, match="true, false or auto"):
        ImageMetrics(lpips="yes")


def test_lpips_auto_uses_the_vgg16_file_when_it_is_there(tmp_path, caplog):
    path = tmp_path / "vgg16-397923af.pth"
    features = make_layers(cfgs["D"])  # VGG16's convolutions in torchvision's layout (random: only the load matters)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    with caplog.at_level(logging.WARNING, logger="facelift"):
        metrics = ImageMetrics(lpips="auto", lpips_vgg16_weights=path)
    assert not caplog.records and metrics.lpips is not None
    assert torch.equal(metrics.lpips.lpips.net.slice1[0].weight, features[0].weight)
