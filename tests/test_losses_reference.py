"""The training loss by value: each term against its definition or a maintained library, the weighted sum against
terms computed without the loss module, and FaceLift's L2-only warm-up switching the feature terms on on time.

Definitions (``../shared/design/gslrm_spec.md``): l2 is the MSE of RGB in [0, 1]; ssim is 1 - SSIM (Gaussian
window 11, sigma 1.5, data range 1), as FaceLift's ``SsimLoss`` (``1.0 - SSIM(...)``); lpips is LPIPS (VGG, v0.1);
perceptual is FaceLift's VGG19 feature L1; for ``step < l2_warmup_steps`` the lpips and perceptual weights are 0.
"""

import numpy as np
import pytest
import torch

from facelift.losses import GSLRMLoss
from facelift.losses.image_terms import ssim_loss
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
                           "pointsdist": 0.0}


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
