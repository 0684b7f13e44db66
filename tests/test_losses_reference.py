"""The training loss by value: each term against its definition or a maintained library, the weighted sum against
terms computed without the loss module, and FaceLift's L2-only warm-up switching the feature terms on on time.

Definitions (``../shared/design/gslrm_spec.md``): l2 is the MSE of RGB in [0, 1]; ssim is 1 - SSIM (Gaussian
window 11, sigma 1.5, data range 1), as FaceLift's ``SsimLoss`` (``1.0 - SSIM(...)``); lpips is LPIPS (VGG, v0.1);
perceptual is FaceLift's VGG19 feature L1; for ``step < l2_warmup_steps`` the lpips and perceptual weights are 0.
"""

import numpy as np
import pytest
import torch

from facelift.errors import MissingWeightsError
from facelift.losses import GSLRMLoss
from facelift.losses.image_terms import keep_foreground, ssim_loss
from facelift.losses.perceptual import VGG19Features
from facelift.losses.vgg19_weights import OFFICIAL_PREFIX
from references import identity_vgg19_perceptual, set_identity_vgg19, skimage_ssim, views_of

C1 = (0.01 * 1.0) ** 2  # SSIM's luminance constant (K1 L)^2 at data range L = 1


def test_ssim_loss_of_flat_images_is_one_minus_the_luminance_term():
    """Flat images have no variance, so SSIM is its luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1),
    at every pixel whatever the padding; colour channels are averaged."""
    pred = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(2, 3, 16, 16).contiguous()
    target = torch.tensor([0.6, 0.5, 0.3]).view(1, 3, 1, 1).expand(2, 3, 16, 16).contiguous()
    lum = [(2 * x * y + C1) / (x * x + y * y + C1) for x, y in ((0.2, 0.6), (0.5, 0.5), (0.9, 0.3))]
    expected = 1.0 - sum(lum) / 3  # = 0.2666...
    assert ssim_loss(pred.double(), target.double()).item() == pytest.approx(expected, abs=1e-7)
    # in fp32 the variances E[x^2] - mu^2 of flat images cancel to ~1e-8, against C2 = 9e-4
    assert ssim_loss(pred, target).item() == pytest.approx(expected, abs=2e-4)
    assert ssim_loss(target.double(), target.double()).item() == pytest.approx(0.0, abs=1e-7)


def test_ssim_loss_is_one_minus_scikit_images_ssim_averaged_over_the_batch():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 24, 24, generator=g)
    pred = (target + 0.2 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    expected = 1.0 - np.mean([skimage_ssim(p, t) for p, t in zip(pred, target)])
    assert ssim_loss(pred, target).item() == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def images():
    """Renders and targets ``[1, 2, 3, 32, 32]`` above the ImageNet mean (so the identity VGG19's ReLUs pass)."""
    g = torch.Generator().manual_seed(1)
    target = 0.6 + 0.4 * torch.rand(1, 2, 3, 32, 32, generator=g)
    rendered = (target + 0.15 * torch.randn(target.shape, generator=g)).clamp(0.6, 1.0)
    return rendered, target


@pytest.fixture(scope="module")
def weighted(vgg16_file):
    """All four image terms on, LPIPS reading ``vgg16_file``, VGG19 set to scaled identities (hand-computable)."""
    loss = GSLRMLoss(l2_loss_weight=2.0, lpips_loss_weight=0.25, perceptual_loss_weight=0.1, ssim_loss_weight=0.5,
                     l2_warmup_steps=3, lpips_vgg16_weights=vgg16_file, allow_random_init=True)
    set_identity_vgg19(loss.perceptual.vgg)
    return loss


def independent_terms(rendered, target, reference_lpips) -> dict[str, float]:
    """Each unweighted term without the loss module: numpy, scikit-image, the lpips package, the hand formula."""
    p, t = rendered.flatten(0, 1), target.flatten(0, 1)  # [N, 3, H, W]
    with torch.no_grad():
        lp = reference_lpips(p * 2 - 1, t * 2 - 1).mean().item()
    return {"l2": float(np.mean((p.double().numpy() - t.double().numpy()) ** 2)),
            "ssim": 1.0 - float(np.mean([skimage_ssim(a, b) for a, b in zip(p, t)])),
            "lpips": lp, "perceptual": identity_vgg19_perceptual(p, t).item()}


def test_weighted_sum_equals_the_independently_computed_terms(weighted, images, reference_lpips):
    rendered, target = images
    ref = independent_terms(rendered, target, reference_lpips)
    assert min(ref.values()) > 1e-3  # every term is a real number here, so a wrong weight shows
    out = weighted(rendered, target=views_of(target), step=3)
    assert set(out.terms) == {"l2", "ssim", "lpips", "perceptual"}
    for name, tol in (("l2", 1e-6), ("ssim", 1e-4), ("lpips", 1e-5)):
        assert out.terms[name].item() == pytest.approx(ref[name], abs=tol), name
    assert out.terms["perceptual"].item() == pytest.approx(ref["perceptual"], rel=1e-4)
    expected = 2.0 * ref["l2"] + 0.5 * ref["ssim"] + 0.25 * ref["lpips"] + 0.1 * ref["perceptual"]
    assert out.total.item() == pytest.approx(expected, rel=1e-4)
    assert out.weights == {"l2": 2.0, "lpips": 0.25, "perceptual": 0.1, "ssim": 0.5, "pixelalign": 0.0,
                           "pointsdist": 0.0, "alpha": 0.0}


def test_l2_warmup_switches_lpips_and_perceptual_on_at_step_l2_warmup_steps(weighted, images, reference_lpips):
    rendered, target = images
    ref = independent_terms(rendered, target, reference_lpips)
    warm = 2.0 * ref["l2"] + 0.5 * ref["ssim"]  # FaceLift's warm-up keeps L2 and SSIM only
    full = warm + 0.25 * ref["lpips"] + 0.1 * ref["perceptual"]
    for step, expected, terms in ((0, warm, {"l2", "ssim"}), (2, warm, {"l2", "ssim"}),
                                  (3, full, {"l2", "ssim", "lpips", "perceptual"}),
                                  (4, full, {"l2", "ssim", "lpips", "perceptual"})):
        out = weighted(rendered, target=views_of(target), step=step)
        assert set(out.terms) == terms, step
        assert out.total.item() == pytest.approx(expected, rel=1e-4), step


def test_the_total_carries_each_terms_gradient_with_its_weight(images):
    """d total / d render = 2 w (render - target) / N for the L2 term alone: the weight reaches the gradient."""
    rendered, target = images
    pred = rendered.clone().requires_grad_(True)
    GSLRMLoss(l2_loss_weight=3.0)(pred, views_of(target), step=0).total.backward()
    torch.testing.assert_close(pred.grad, 2 * 3.0 * (rendered - target) / rendered.numel())


# ----------------------------------------------------------------- the module's contract (from the mutation pass)
def test_keep_foreground_blends_render_and_target_by_the_mask():
    pred, target = torch.full((1, 3, 2, 2), 0.8), torch.full((1, 3, 2, 2), 0.2)
    mask = torch.tensor([[0.0, 0.5], [1.0, 0.25]]).view(1, 1, 2, 2)
    expected = torch.tensor([[0.2, 0.5], [0.8, 0.35]]).expand(1, 3, 2, 2)  # target + m (pred - target), by hand
    torch.testing.assert_close(keep_foreground(pred, target, mask), expected)


def test_defaults_are_an_l2_only_loss_without_warmups_or_masks():
    loss = GSLRMLoss()
    assert loss.base_weights == {"l2": 1.0, "lpips": 0.0, "perceptual": 0.0, "ssim": 0.0, "pixelalign": 0.0,
                                 "pointsdist": 0.0, "alpha": 0.0}
    assert (loss.l2_warmup_steps, loss.masked_pixelalign_loss, loss.warmup_pointsdist, loss.masked_image_losses) \
        == (0, False, False, False)


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan")])
def test_a_weight_that_is_negative_or_not_finite_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match=rf"^loss\.ssim_loss_weight must be a finite number >= 0, got {bad}$"):
        GSLRMLoss(ssim_loss_weight=bad)


def test_refusals_name_what_is_wrong(images):
    rendered, target = images
    with pytest.raises(ValueError, match=r"^loss\.l2_warmup_steps must be >= 0, got -1$"):
        GSLRMLoss(l2_warmup_steps=-1)
    with pytest.raises(ValueError, match=r"every term has weight 0 at step 1000"):  # after the points-dist warmup
        GSLRMLoss(l2_loss_weight=0.0, warmup_pointsdist=True)
    with pytest.raises(ValueError, match=r"^loss: rendered \(1, 2, 3, 16, 16\) and target \(1, 2, 3, 32, 32\) "
                                         r"differ$"):
        GSLRMLoss()(rendered[..., :16, :16], views_of(target), step=0)


def test_pixelalign_needs_both_views_and_positions_and_honours_its_mask():
    views = views_of(torch.rand(1, 2, 3, 8, 8))
    origins, dirs = (t.movedim(-1, 2) for t in views.cameras.rays())  # [1, 2, 3, 8, 8]
    side = torch.linalg.cross(dirs, torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 3, 1, 1).expand_as(dirs), dim=2)
    xyz = origins + 2.0 * dirs + 0.3 * torch.nn.functional.normalize(side, dim=2)  # 0.3 off every ray
    half = views.masks.clone()
    half[..., 4:, :] = 0.0  # half the input pixels are background
    masked_views = views_of(views.images, half)
    kwargs = dict(l2_loss_weight=1.0, pixelalign_loss_weight=1.0)
    for masked, expected in ((False, 0.3), (True, 0.15)):  # the mean runs over every pixel either way
        out = GSLRMLoss(masked_pixelalign_loss=masked, **kwargs)(
            views.images, views, step=0, input_views=masked_views, pixel_xyz=xyz)
        assert out.terms["pixelalign"].item() == pytest.approx(expected, rel=1e-4), masked
    loss = GSLRMLoss(**kwargs)
    for given in (dict(input_views=views), dict(pixel_xyz=xyz)):
        with pytest.raises(ValueError, match=r"^loss: pixelalign need input_views and pixel_xyz"):
            loss(views.images, views, step=0, **given)
    with pytest.raises(ValueError, match=r"has shape \(1, 2, 3, 8, 4\), expected \(1, 2, 3, 8, 8\)"):
        loss(views.images, views, step=0, input_views=views, pixel_xyz=xyz[..., :4])


def test_the_feature_networks_read_the_files_given_or_fall_back_to_random_only_when_allowed(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        vgg19 = VGG19Features().state_dict()
    torch.save({"model": {OFFICIAL_PREFIX + k: v for k, v in vgg19.items()}}, tmp_path / "ckpt.pt")
    loss = GSLRMLoss(perceptual_loss_weight=1.0, vgg19_weights=tmp_path / "ckpt.pt")
    assert torch.equal(loss.perceptual.vgg.conv14.weight, vgg19["conv14.weight"])  # the file's, not random ones
    missing = tmp_path / "absent.pth"
    random = GSLRMLoss(lpips_loss_weight=1.0, lpips_vgg16_weights=missing, allow_random_init=True)
    assert random.lpips is not None  # allowed: random VGG16
    with pytest.raises(MissingWeightsError, match=str(missing)):
        GSLRMLoss(lpips_loss_weight=1.0, lpips_vgg16_weights=missing)


def test_the_step_0_check_sees_a_one_step_warmup_with_only_feature_terms():
    """l2_warmup_steps=1 with LPIPS alone: step 0 has no term on (the warm-up keeps L2 and SSIM, both 0 here)."""
    with pytest.raises(ValueError, match=r"^loss: every term has weight 0 at step 0; give some \*_loss_weight a value "
                                         r"> 0 \(l2_warmup_steps leaves only the non-feature terms on\)$"):
        GSLRMLoss(l2_loss_weight=0.0, lpips_loss_weight=1.0, l2_warmup_steps=1)


def test_foreground_weight_is_a_share_from_0_to_1():
    for share in (0.0, 1.0):  # 0: the background alone, 1: the animal alone; both are valid choices
        assert GSLRMLoss(foreground_weight=share).foreground_weight == share
    with pytest.raises(ValueError, match=r"^loss\.foreground_weight must be null \(off\) or a share in \[0, 1\], "
                                         r"got 1\.5$"):
        GSLRMLoss(foreground_weight=1.5)


def hand_weights(mask: torch.Tensor, s: float) -> torch.Tensor:
    """w = s m / Σm + (1 - s)(1 - m) / Σ(1 - m) per view, for ``mask`` ``[N, 1, H, W]`` with both groups present."""
    fg, bg = mask.sum(dim=(1, 2, 3), keepdim=True), (1 - mask).sum(dim=(1, 2, 3), keepdim=True)
    return s * mask / fg + (1 - s) * (1 - mask) / bg


def test_foreground_weighted_l2_and_lpips_equal_weighted_means_of_independent_maps(vgg16_file, reference_lpips):
    """With loss.foreground_weight, L2 and LPIPS are Σ w · map per view (mean over views), the maps computed here:
    the squared error by hand, LPIPS by the lpips package's own spatial map on the same VGG16 file."""
    g = torch.Generator().manual_seed(4)
    target, rendered = torch.rand(1, 2, 3, 32, 32, generator=g), torch.rand(1, 2, 3, 32, 32, generator=g)
    masks = torch.zeros(1, 2, 1, 32, 32)
    masks[0, 0, ..., 4:12, 4:20] = 1.0  # two unlike animals
    masks[0, 1, ..., 10:30, 2:8] = 1.0
    w = hand_weights(masks[0], 0.8)  # [2, 1, 32, 32]
    loss = GSLRMLoss(l2_loss_weight=1.0, lpips_loss_weight=0.5, foreground_weight=0.8, lpips_vgg16_weights=vgg16_file)
    out = loss(rendered, views_of(target, masks), step=0)
    p, t = rendered[0], target[0]
    l2_map = (p.double() - t.double()).square().mean(dim=1, keepdim=True)  # [2, 1, 32, 32]
    assert out.terms["l2"].item() == pytest.approx((l2_map * w).sum(dim=(1, 2, 3)).mean().item(), rel=1e-5)
    reference_lpips.spatial = True
    try:
        with torch.no_grad():
            lp_map = reference_lpips(p * 2 - 1, t * 2 - 1)  # [2, 1, 32, 32]
    finally:
        reference_lpips.spatial = False
    expected = (lp_map * w).sum(dim=(1, 2, 3)).mean().item()
    assert expected != pytest.approx(lp_map.mean().item(), rel=1e-3)  # the weights matter on these images
    assert out.terms["lpips"].item() == pytest.approx(expected, abs=1e-5)


def test_the_silhouette_term_uses_the_chosen_loss_and_refuses_a_wrong_alpha_naming_both_shapes():
    masks = torch.zeros(1, 2, 1, 4, 4)
    masks[..., :2, :] = 1.0
    alpha = torch.full((1, 2, 1, 4, 4), 0.25)
    target = views_of(torch.rand(1, 2, 3, 4, 4), masks)
    bce = GSLRMLoss(alpha_loss_weight=1.0, alpha_loss="bce")(target.images, target, step=0, alpha=alpha)
    assert bce.terms["alpha"].item() == pytest.approx(-(np.log(0.25) + np.log(0.75)) / 2, rel=1e-5)  # by hand
    loss = GSLRMLoss(alpha_loss_weight=1.0)
    with pytest.raises(ValueError, match=r"^loss: the alpha term needs the rendered alpha \(see needs_alpha\)$"):
        loss(target.images, target, step=0)
    with pytest.raises(ValueError, match=r"^loss: rendered alpha \(1, 2, 1, 4, 2\) and target masks "
                                         r"\(1, 2, 1, 4, 4\) differ$"):
        loss(target.images, target, step=0, alpha=alpha[..., :2])
