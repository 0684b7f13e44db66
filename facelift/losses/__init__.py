"""GS-LRM's training losses: L2, LPIPS, VGG19 perceptual, SSIM, pixel-align, points-dist, one weighted sum."""

from facelift.losses.combined import GSLRMLoss, LossOutput

__all__ = ["GSLRMLoss", "LossOutput"]
