"""Foreground metrics by hand: 4x4 views whose masks, alphas and errors are chosen so every score is a fraction
or a logarithm written out below (definitions: facelift/evaluation/foreground.py's docstring, issue 20)."""

import math

import pytest
import torch

from facelift.evaluation.foreground import foreground_scores, nan_mean
from facelift.render import Renders
from facelift.systems.metrics import ImageMetrics
from references import views_of


def views():
    """Three views ``[3, C, 4, 4]``: a partial overlap, an empty mask, a full mask with nothing rendered."""
    target = torch.full((3, 3, 4, 4), 0.5)
    pred = target.clone()
    mask = torch.zeros(3, 1, 4, 4)
    alpha = torch.zeros(3, 1, 4, 4)
    # view 0: T = the top-left 2x2 block, P = the top row; T and P share (0, 0) and (0, 1)
    mask[0, :, :2, :2] = 0.9
    mask[0, :, 2, 2] = 0.5  # exactly the mask threshold: not foreground (> 0.5 is)
    alpha[0, :, 0, :] = 0.8
    alpha[0, :, 3, 3] = 0.5  # exactly the default alpha threshold: not drawn
    pred[0, :, 0, :2] += 0.1  # shared pixels: squared error 0.01
    pred[0, :, 1, :2] = 0.5 + 0.2  # the rest of T: 0.04
    pred[0, :, 2:, :] = 1.0  # background, whatever its error: not scored
    # view 1: no foreground at all, something rendered
    alpha[1, :, 1:3, 1:3] = 1.0
    pred[1] = 0.0
    # view 2: all foreground, nothing rendered; the render overshoots to 1.2 where the target is 1 (clamped: exact)
    mask[2] = 1.0
    target[2, :, 0, 0] = 1.0
    pred[2] = target[2].clone()
    pred[2, :, 0, 0] = 1.2
    return pred, target, mask, alpha


def test_each_foreground_score_equals_its_hand_computed_value():
    s = foreground_scores(*views())
    assert set(s) == {"psnr_fg", "psnr_int", "iou", "coverage", "precision", "fg_fraction"}
    # view 0: |T| = 4, |P| = 4, |T n P| = 2, |T u P| = 6; MSE over T (2 x 0.01 + 2 x 0.04) / 4, over T n P 0.01
    assert s["psnr_fg"][0].item() == pytest.approx(10 * math.log10(1 / 0.025), abs=1e-4)
    assert s["psnr_int"][0].item() == pytest.approx(20.0, abs=1e-4)
    assert [s[k][0].item() for k in ("iou", "coverage", "precision", "fg_fraction")] == pytest.approx(
        [2 / 6, 2 / 4, 2 / 4, 4 / 16])
    # view 1: no foreground to score: NaN, and a fraction of 0
    assert all(math.isnan(s[k][1].item()) for k in ("psnr_fg", "psnr_int", "iou", "coverage", "precision"))
    assert s["fg_fraction"][1].item() == 0.0
    # view 2: an exact match (after clamping) is infinite PSNR; nothing drawn: no precision, no intersection
    assert s["psnr_fg"][2].item() == math.inf and s["fg_fraction"][2].item() == 1.0
    assert s["iou"][2].item() == 0.0 and s["coverage"][2].item() == 0.0
    assert math.isnan(s["precision"][2].item()) and math.isnan(s["psnr_int"][2].item())


def test_the_alpha_threshold_decides_what_counts_as_rendered():
    pred, target, mask, alpha = views()
    low = foreground_scores(pred, target, mask, alpha, alpha_threshold=0.4)  # (3, 3) at 0.5 now counts as drawn
    assert low["precision"][0].item() == pytest.approx(2 / 5) and low["iou"][0].item() == pytest.approx(2 / 7)
    high = foreground_scores(pred, target, mask, alpha, alpha_threshold=0.85)  # the top row at 0.8 does not
    assert high["coverage"][0].item() == 0.0 and math.isnan(high["psnr_int"][0].item())


def test_nan_mean_leaves_undefined_views_out_and_counts_them():
    assert nan_mean([1.0, math.nan, 3.0]) == (2.0, 1)
    mean, left_out = nan_mean([math.nan, math.nan])
    assert math.isnan(mean) and left_out == 2
    assert nan_mean(torch.tensor([20.0, math.inf])) == (math.inf, 0)  # an exact match is a score, not a gap


def test_the_metrics_module_scores_the_renders_alpha_against_the_targets_masks():
    """What eval and validation call: `ImageMetrics` passes the rendered alpha, the target masks and its threshold."""
    pred, target, mask, alpha = (x.repeat_interleave(4, -1).repeat_interleave(4, -2) for x in views())  # 16 px: SSIM
    renders = Renders(pred[None], alpha[None], torch.zeros_like(alpha)[None])  # [B=1, V=3, ...]
    got = ImageMetrics(alpha_threshold=0.4)(renders, views_of(target[None], mask[None]))
    assert got["iou"].shape == (1, 3)
    assert got["precision"][0, 0].item() == pytest.approx(2 / 5) and got["iou"][0, 0].item() == pytest.approx(2 / 7)
    assert got["psnr_fg"][0, 0].item() == pytest.approx(10 * math.log10(1 / 0.025), abs=1e-4)
    assert got["fg_fraction"][0].tolist() == [4 / 16, 0.0, 1.0]


# ----------------------------------------------------------------- from the mutation pass's survivors (issue 28 item 5)
def test_one_pixel_of_foreground_drawn_is_a_whole_score_and_an_undershoot_is_clamped():
    """A subject of one pixel, drawn exactly there: |T| = |P| = |T n P| = |T u P| = 1, so every ratio is 1 (not
    NaN, not 1/2). The render undershoots to -0.3 where the target is 0: clamped to [0, 1] it matches, PSNR inf."""
    target, mask, alpha = torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    mask[0, 0, 1, 2] = alpha[0, 0, 1, 2] = 1.0
    pred = target.clone()
    pred[0, :, 1, 2] = -0.3
    s = foreground_scores(pred, target, mask, alpha)
    assert [s[k].item() for k in ("iou", "coverage", "precision")] == [1.0, 1.0, 1.0]
    assert s["psnr_fg"].item() == math.inf and s["psnr_int"].item() == math.inf
    assert s["fg_fraction"].item() == 1 / 16


def test_an_alpha_threshold_of_zero_is_allowed_and_one_is_not():
    """0 counts any opacity as drawn (a valid choice); at 1 nothing could ever be drawn."""
    assert ImageMetrics(alpha_threshold=0.0).alpha_threshold == 0.0
    with pytest.raises(ValueError, match=r"metrics\.alpha_threshold must be in \[0, 1\), got 1\.0"):
        ImageMetrics(alpha_threshold=1.0)
