"""Validation and evaluation metrics: LPIPS when its VGG16 file is there (auto), required (true) or off (false);
the foreground metrics, computed by hand on 2 x 3 images (partial, empty and full masks; both thresholds)."""

import logging
import math

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchvision.models.vgg import cfgs, make_layers

from facelift.cameras import Cameras
from facelift.errors import MissingWeightsError
from facelift.evaluation.foreground import FOREGROUND_METRICS, foreground_scores, nan_mean
from facelift.evaluation.report import ViewRecord, aggregate, aggregates_markdown
from facelift.render import Renders
from facelift.systems.metrics import ImageMetrics
from facelift.views import Views


def scored_views(pred, target, mask=None, alpha=None) -> tuple[Renders, Views]:
    """Renders and target Views ``[B, V]`` around plain tensors (masks and alpha all ones unless given)."""
    b, v, _, h, w = pred.shape
    ones = torch.ones(b, v, 1, h, w)
    cams = Cameras(torch.eye(4).expand(b, v, 4, 4), torch.tensor([1.0, 1.0, w / 2, h / 2]).expand(b, v, 4), w, h)
    index = torch.zeros(b, v, 2, dtype=torch.long)
    return (Renders(pred, ones if alpha is None else alpha, ones),
            Views(target, ones if mask is None else mask, cams, index))


def test_lpips_auto_scores_without_the_vgg16_file_and_says_so_once(tmp_path, caplog):
    missing = tmp_path / "vgg16-397923af.pth"
    pred, target = torch.rand(1, 2, 3, 32, 32), torch.rand(1, 2, 3, 32, 32)
    with caplog.at_level(logging.WARNING, logger="facelift"):
        metrics = ImageMetrics(lpips="auto", lpips_vgg16_weights=missing)
    assert set(metrics(*scored_views(pred, target))) == {"psnr", "ssim", *FOREGROUND_METRICS, "fg_fraction"}
    (note,) = [r.getMessage() for r in caplog.records]
    assert note.startswith(f"LPIPS skipped: no VGG16 weights at {missing}")

    with pytest.raises(MissingWeightsError, match=str(missing)):  # asked for explicitly: a missing file stops
        ImageMetrics(lpips=True, lpips_vgg16_weights=missing)
    random_vgg = ImageMetrics(lpips="auto", lpips_vgg16_weights=missing, allow_random_init=True)  # tests' escape
    assert set(random_vgg(*scored_views(pred, target))) == {"psnr", "ssim", "lpips", *FOREGROUND_METRICS,
                                                            "fg_fraction"}
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


# a 2 x 3 frame: target white; the render is off by 0.1 in every channel at (0, 0) and by 0.2 in red at (0, 1)
TARGET = torch.ones(1, 3, 2, 3)
PRED = TARGET.clone()
PRED[0, :, 0, 0] = 0.9
PRED[0, 0, 0, 1] = 0.8
# T: (0, 0) and (0, 1) (0.5 itself is not > 0.5); P at threshold 0.5: (0, 1) and (1, 2); (0, 0) has alpha 0.5
MASK = torch.tensor([[[[1.0, 0.7, 0.5], [0.0, 0.2, 0.0]]]])
ALPHA = torch.tensor([[[[0.5, 0.9, 0.0], [0.3, 0.0, 1.0]]]])
SQ_00, SQ_01 = 0.1 ** 2, 0.2 ** 2 / 3  # squared error at each pixel, mean over RGB


def scores_of(pred=PRED, target=TARGET, mask=MASK, alpha=ALPHA, threshold=0.5) -> dict[str, float]:
    return {k: float(v[0]) for k, v in foreground_scores(pred, target, mask, alpha, threshold).items()}


def test_partial_mask_by_hand():
    s = scores_of()
    assert s["psnr_fg"] == pytest.approx(-10 * math.log10((SQ_00 + SQ_01) / 2), abs=1e-4)
    assert s["psnr_int"] == pytest.approx(-10 * math.log10(SQ_01), abs=1e-4)  # T ∩ P = {(0, 1)}
    assert s["iou"] == pytest.approx(1 / 3)  # union: (0, 0), (0, 1), (1, 2)
    assert (s["coverage"], s["precision"], s["fg_fraction"]) == pytest.approx((1 / 2, 1 / 2, 2 / 6))


def test_alpha_threshold_moves_the_render_silhouette():
    s = scores_of(threshold=0.4)  # now (0, 0) at alpha 0.5 is drawn, and (1, 0) at 0.3 still is not
    assert (s["iou"], s["coverage"], s["precision"]) == pytest.approx((2 / 3, 1.0, 2 / 3))
    assert s["psnr_int"] == pytest.approx(s["psnr_fg"]) == pytest.approx(-10 * math.log10((SQ_00 + SQ_01) / 2),
                                                                          abs=1e-4)
    assert scores_of(threshold=0.95)["iou"] == pytest.approx(0.0) and scores_of(threshold=0.95)["coverage"] == 0
    with pytest.raises(ValueError, match="alpha_threshold"):
        ImageMetrics(alpha_threshold=1.0)


def test_empty_mask_gives_nan_and_is_left_out_of_means():
    s = scores_of(mask=torch.zeros_like(MASK))
    assert all(math.isnan(s[k]) for k in FOREGROUND_METRICS) and s["fg_fraction"] == 0.0
    nothing_drawn = scores_of(alpha=torch.zeros_like(ALPHA))  # a foreground, but the render shows nothing of it
    assert math.isnan(nothing_drawn["precision"]) and math.isnan(nothing_drawn["psnr_int"])
    assert (nothing_drawn["iou"], nothing_drawn["coverage"]) == (0.0, 0.0) and not math.isnan(nothing_drawn["psnr_fg"])
    assert nan_mean([20.0, math.nan, 30.0]) == (25.0, 1)
    mean, left = nan_mean([math.nan])
    assert math.isnan(mean) and left == 1

    def rec(view, psnr_fg):
        return ViewRecord(0, "a", view, False, 10.0, {"psnr": 30.0, "psnr_fg": psnr_fg})

    agg = aggregate([rec(0, 20.0), rec(1, math.nan), rec(2, 30.0)], bin_deg=15)
    novel = agg.roles["novel"]
    assert (novel.count, novel.means["psnr_fg"], novel.left_out) == (3, 25.0, {"psnr_fg": 1})
    assert novel.means["psnr"] == 30.0  # whole-image PSNR keeps every view
    assert "| novel views | 3 | 25.00 | 30.00 | psnr_fg 1 |" in aggregates_markdown(agg, "t")  # fg first


def test_full_mask_and_alpha_equal_the_whole_image_scores():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 3, 8, 8), torch.rand(2, 3, 3, 8, 8)
    scores = ImageMetrics()(*scored_views(pred, target))
    whole = peak_signal_noise_ratio(pred.flatten(0, 1), target.flatten(0, 1), data_range=1.0, reduction="none",
                                    dim=(1, 2, 3)).reshape(2, 3)
    assert torch.allclose(scores["psnr_fg"], whole, atol=1e-4) and torch.allclose(scores["psnr_int"], whole, atol=1e-4)
    for k in ("iou", "coverage", "precision", "fg_fraction"):
        assert torch.equal(scores[k], torch.ones(2, 3)), k
    # the metric reads the rendered alpha and the targets' masks of the Views it is given
    mask = torch.zeros(2, 3, 1, 8, 8)
    mask[..., :4, :] = 1
    alpha = torch.zeros(2, 3, 1, 8, 8)
    alpha[..., :, :4] = 1
    scores = ImageMetrics(alpha_threshold=0.5)(*scored_views(pred, target, mask, alpha))
    assert torch.allclose(scores["iou"], torch.full((2, 3), 16 / 48)) and torch.equal(scores["fg_fraction"],
                                                                                       torch.full((2, 3), 0.5))
    top = peak_signal_noise_ratio(pred[0, 0, :, :4], target[0, 0, :, :4], data_range=1.0)
    assert float(scores["psnr_fg"][0, 0]) == pytest.approx(float(top), abs=1e-4)


def test_validation_means_count_only_the_views_where_a_metric_is_defined():
    """Each batch logs its NaN-free mean weighted by its defined views, so Lightning's epoch mean (the weighted
    mean over batches) is the mean over every defined view; a batch with none adds nothing."""
    from facelift.systems.gslrm_system import GSLRMSystem

    logged = []

    class Stub:
        def log(self, key, value, prog_bar=False, batch_size=None, sync_dist=False):
            logged.append((float(value), batch_size))

    for batch in ([20.0, math.nan, 30.0], [math.nan], [10.0]):
        GSLRMSystem._log_mean(Stub(), "val/psnr_fg", torch.tensor(batch))
    assert logged == [(25.0, 2), (0.0, 0), (10.0, 1)]
    assert sum(v * n for v, n in logged) / sum(n for _, n in logged) == 20.0  # (20 + 30 + 10) / 3
