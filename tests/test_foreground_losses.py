"""The silhouette term and the foreground-weighted image terms, against values worked out by hand."""

import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import REPO
from facelift.cameras import Cameras
from facelift.losses import GSLRMLoss
from facelift.losses.foreground import BCE_EPS, foreground_weights, silhouette_loss, weighted_mean
from facelift.losses.image_terms import l2_loss, ssim_loss
from facelift.losses.lpips_loss import LPIPSLoss
from facelift.views import Views


def _target(images, masks):
    """Views of batch 1 (the loss reads only images and masks; the cameras just have to match their size)."""
    b, v, _, h, w = images.shape
    cams = Cameras(torch.eye(4).expand(b, v, 4, 4), torch.tensor([w, h, w / 2, h / 2.0]).expand(b, v, 4), w, h)
    return Views(images, masks, cams, torch.zeros(b, v, 2, dtype=torch.long))


# ----------------------------------------------------------------- the weights
def test_weights_give_the_mask_its_share_whatever_its_size():
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    w = foreground_weights(mask, 0.5)
    # s·m/Σm + (1-s)(1-m)/Σ(1-m): 0.5/1 on the one animal pixel, 0.5/3 on each of the three others
    torch.testing.assert_close(w.flatten(), torch.tensor([0.5, 1 / 6, 1 / 6, 1 / 6]))
    torch.testing.assert_close(foreground_weights(mask, 0.25).flatten(), torch.tensor([0.25, 0.25, 0.25, 0.25]))
    soft = torch.tensor([[1.0, 0.5], [0.0, 0.0]]).view(1, 1, 2, 2)  # Σm = 1.5, Σ(1-m) = 2.5
    torch.testing.assert_close(foreground_weights(soft, 0.6).flatten(),
                               torch.tensor([0.6 / 1.5, 0.6 * 0.5 / 1.5 + 0.4 * 0.5 / 2.5, 0.4 / 2.5, 0.4 / 2.5]))
    # an error of 1 on the animal and 0 elsewhere costs s, for an animal of 4 pixels or of 64
    small, large = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    small[..., 6:8, 6:8], large[..., 4:12, 4:12] = 1.0, 1.0
    for m in (small, large):
        err = m.expand(1, 3, 16, 16)
        assert weighted_mean(err, foreground_weights(m, 0.7)).item() == pytest.approx(0.7)
        assert weighted_mean(err, None).item() == pytest.approx(float(m.mean()))  # plain: the animal's area


def test_views_without_animal_or_without_background_fall_back_to_the_plain_mean():
    empty, full = torch.zeros(1, 1, 3, 3), torch.ones(1, 1, 3, 3)
    for mask in (empty, full):
        for share in (0.0, 0.3, 1.0):
            torch.testing.assert_close(foreground_weights(mask, share), torch.full((1, 1, 3, 3), 1 / 9))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        foreground_weights(empty, 1.5)


# ----------------------------------------------------------------- the silhouette term
def test_silhouette_l1_and_bce_by_hand():
    alpha = torch.tensor([0.2, 0.9, 0.5, 0.0]).view(1, 1, 2, 2)
    mask = torch.tensor([0.0, 1.0, 1.0, 0.0]).view(1, 1, 2, 2)
    assert silhouette_loss(alpha, mask, "l1").item() == pytest.approx((0.2 + 0.1 + 0.5 + 0.0) / 4)
    # the empty pixel reads alpha = 1e-3 (the clamp), so log(1 - 1e-3) for its background
    bce = -(math.log(0.8) + math.log(0.9) + math.log(0.5) + math.log(1 - BCE_EPS)) / 4
    assert silhouette_loss(alpha, mask, "bce").item() == pytest.approx(bce, rel=1e-6)
    with pytest.raises(ValueError, match="l1"):
        silhouette_loss(alpha, mask, "l2")


def test_bce_still_pulls_an_exactly_empty_pixel_towards_its_mask():
    alpha = torch.zeros(1, 1, 1, 2, requires_grad=True)  # the render left both pixels empty
    silhouette_loss(alpha, torch.tensor([[[[1.0, 0.0]]]]), "bce").backward()
    # d/da of -log(a) / 2 at the clamped a = 1e-3 on the animal pixel; -d/da log(1 - a) / 2 on the other
    torch.testing.assert_close(alpha.grad.flatten(), torch.tensor([-1 / (2 * BCE_EPS), 1 / (2 * (1 - BCE_EPS))]))


# ----------------------------------------------------------------- the weighted terms
def test_weighted_l2_by_hand():
    target = torch.zeros(1, 1, 3, 2, 2)
    rendered = torch.zeros(1, 1, 3, 2, 2)
    rendered[..., 0, 0] = 0.5  # the animal's pixel, squared error 0.25 in each channel
    rendered[..., 1, 1] = 1.0  # a background pixel, squared error 1
    mask = torch.zeros(1, 1, 1, 2, 2)
    mask[..., 0, 0] = 1.0
    out = GSLRMLoss(foreground_weight=0.5)(rendered, _target(target, mask), step=0)
    assert out.terms["l2"].item() == pytest.approx(0.5 * 0.25 + 0.5 * 1.0 / 3)
    plain = GSLRMLoss()(rendered, _target(target, mask), step=0)
    assert plain.terms["l2"].item() == pytest.approx((0.25 + 1.0) / 4)
    share = GSLRMLoss(foreground_weight=0.25)(rendered, _target(target, mask), step=0)  # the mask's own share
    torch.testing.assert_close(share.terms["l2"], plain.terms["l2"])


def test_weighted_ssim_over_constant_regions_by_hand():
    # Left half: render a, target b, both flat; right half identical. A window that sees only the left half has
    # zero variances, so its SSIM is (2ab + C1) / (a² + b² + C1), C1 = (0.01 · 1)². A mask on columns 0-4 (more than
    # the window's radius 5 from column 16) weighted with s = 1 sees nothing else.
    a, b, c1 = 0.3, 0.6, 0.01 ** 2
    target = torch.rand(1, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    target[..., :16] = b
    rendered = target.clone()
    rendered[..., :16] = a
    mask = torch.zeros(1, 1, 1, 32, 32)
    mask[..., :5] = 1.0
    loss = GSLRMLoss(l2_loss_weight=0.0, ssim_loss_weight=1.0, foreground_weight=1.0)
    expected = 1.0 - (2 * a * b + c1) / (a * a + b * b + c1)
    # (float64 gives it to 1e-12; the fp32 loss's E[x²] - E[x]² leaves a variance of ~1e-7 against C2 = 9e-4)
    assert loss(rendered, _target(target, mask), step=0).terms["ssim"].item() == pytest.approx(expected, abs=5e-4)
    # the foreground on the right half, where render and target agree: a perfect score there
    mask = torch.zeros(1, 1, 1, 32, 32)
    mask[..., 22:] = 1.0
    assert loss(rendered, _target(target, mask), step=0).terms["ssim"].item() == pytest.approx(0.0, abs=1e-5)
    # s equal to the mask's share of the view is the plain SSIM term
    plain = GSLRMLoss(l2_loss_weight=0.0, ssim_loss_weight=1.0, foreground_weight=10 / 32)
    torch.testing.assert_close(plain(rendered, _target(target, mask), step=0).terms["ssim"],
                               ssim_loss(rendered[0], target[0]))


def test_weighted_lpips_is_lpips_at_uniform_weights_and_ignores_an_unweighted_region():
    torch.manual_seed(0)  # the random-init heads: the same network on every run
    lpips = LPIPSLoss(None, allow_random_init=True)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    uniform = torch.full((2, 1, 32, 32), 1 / 32 ** 2)
    torch.testing.assert_close(weighted_mean(lpips.per_pixel(a, b), uniform), lpips(a, b))
    only_left = torch.zeros(2, 1, 32, 32)
    only_left[..., :8] = 1 / (32 * 8)
    changed = a.clone()
    changed[..., 24:] = 1 - changed[..., 24:]  # differs only where the weights are 0
    # how much the map moves, pixel by pixel (absolute: increases and decreases cannot cancel): the left quarter,
    # the only region weighted, is reached by the change through the receptive field only, so it moves far less
    # than the map as a whole
    moved = (lpips.per_pixel(changed, b) - lpips.per_pixel(a, b)).abs()  # [2, 1, 32, 32]
    assert weighted_mean(moved, only_left) < 0.5 * moved.mean()


# ----------------------------------------------------------------- the weighted sum and the configs
def test_alpha_term_joins_the_sum_and_needs_the_alpha():
    target = _target(torch.rand(1, 2, 3, 4, 4), (torch.rand(1, 2, 1, 4, 4) > 0.5).float())
    rendered, alpha = torch.rand(1, 2, 3, 4, 4), torch.rand(1, 2, 1, 4, 4)
    loss = GSLRMLoss(l2_loss_weight=1.0, alpha_loss_weight=2.0)
    assert loss.needs_alpha and not GSLRMLoss().needs_alpha
    out = loss(rendered, target, step=0, alpha=alpha)
    by_hand = (alpha - target.masks).abs().mean()
    torch.testing.assert_close(out.terms["alpha"], by_hand)
    torch.testing.assert_close(out.total, l2_loss(rendered, target.images) + 2.0 * by_hand)
    with pytest.raises(ValueError, match="needs the rendered alpha"):
        loss(rendered, target, step=0)
    with pytest.raises(ValueError, match="alpha_loss must be one of"):
        GSLRMLoss(alpha_loss="dice")
    with pytest.raises(ValueError, match="foreground_weight must be null"):
        GSLRMLoss(foreground_weight=-0.1)
    alpha_only = GSLRMLoss(l2_loss_weight=0.0, alpha_loss_weight=1.0)  # a valid sum on its own
    assert set(alpha_only(rendered, target, step=0, alpha=alpha).terms) == {"alpha"}


def test_loss_configs_state_the_silhouette_recipe(tmp_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        human, mouse = (compose(overrides=[f"+loss={name}", "+paths=default", f"paths.root_dir={tmp_path}"]).loss
                        for name in ("facelift", "mouse"))
    assert (human.alpha_loss_weight, human.alpha_loss, human.foreground_weight) == (0.0, "l1", None)
    assert (mouse.alpha_loss_weight, mouse.alpha_loss) == (1.0, "l1")


# ----------------------------------------------------------------- from the mutation pass's survivors (issue 28 item 5)
def test_weights_are_per_view_in_a_batch_of_unlike_views():
    """Two views in one call, one with a 2-pixel animal, one with a 6-pixel one (3x4 views): each view's weights sum
    to 1 and follow its own mask, w = s m / Σm + (1 - s)(1 - m) / Σ(1 - m) with that view's sums."""
    mask = torch.zeros(2, 1, 3, 4)
    mask[0, 0, 0, :2] = 1.0
    mask[1, 0, :2, 1:4] = 1.0
    w = foreground_weights(mask, share=0.75)
    assert w.shape == (2, 1, 3, 4)
    torch.testing.assert_close(w.sum(dim=(1, 2, 3)), torch.ones(2))
    assert w[0, 0, 0, 0].item() == pytest.approx(0.75 / 2) and w[0, 0, 2, 3].item() == pytest.approx(0.25 / 10)
    assert w[1, 0, 0, 1].item() == pytest.approx(0.75 / 6) and w[1, 0, 2, 0].item() == pytest.approx(0.25 / 6)


def test_a_group_of_less_than_one_pixel_of_mass_is_weighted_by_its_own_sum():
    """Soft masks: a foreground of total mass 0.5 (one pixel at 0.5), a background of one pixel and one of half a
    pixel are divided by their own sums (not by at least 1). 2x2 views, share 0.6, values by hand."""
    def view(value: float, corner: float) -> torch.Tensor:
        mask = torch.full((1, 1, 2, 2), value)
        mask[0, 0, 0, 0] = corner
        return mask

    for mask, at_corner, elsewhere in (
            (view(0.0, 0.5), 0.6 * 0.5 / 0.5 + 0.4 * 0.5 / 3.5, 0.4 / 3.5),  # Σm = 0.5, Σ(1 - m) = 3.5
            (view(1.0, 0.0), 0.4 / 1.0, 0.6 / 3.0),  # Σm = 3, Σ(1 - m) = 1
            (view(1.0, 0.5), 0.6 * 0.5 / 3.5 + 0.4 * 0.5 / 0.5, 0.6 / 3.5)):  # Σm = 3.5, Σ(1 - m) = 0.5
        w = foreground_weights(mask, share=0.6)
        assert w[0, 0, 0, 0].item() == pytest.approx(at_corner) and w[0, 0, 1, 1].item() == pytest.approx(elsewhere)
        assert w.sum().item() == pytest.approx(1.0)


def test_weighted_mean_refuses_weights_of_another_size_naming_both():
    with pytest.raises(ValueError, match=r"^weights \(1, 1, 2, 2\) and per-pixel map \(1, 3, 4, 4\) differ in size$"):
        weighted_mean(torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 2, 2))


def test_bce_of_a_fully_opaque_pixel_over_background_is_finite_and_the_default_is_l1():
    """alpha exactly 1 where the mask is 0: BCE reads it as 1 - eps, -log(eps) (not -log 0 = inf)."""
    alpha, mask = torch.ones(1, 1, 1, 2), torch.tensor([[[[0.0, 1.0]]]])
    expected = (-math.log(BCE_EPS) - math.log(1 - BCE_EPS)) / 2  # the two pixels' terms, mean
    assert silhouette_loss(alpha, mask, "bce").item() == pytest.approx(expected, rel=1e-5)
    assert silhouette_loss(alpha, mask).item() == silhouette_loss(alpha, mask, "l1").item() == 0.5
