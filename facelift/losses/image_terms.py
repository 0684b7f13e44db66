"""The parameter-free image terms (MSE, 1 - SSIM and its per-pixel map) and the foreground restriction shared by
every image term."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

SSIM_SIGMA = 1.5  # Gaussian window sigma; torchmetrics derives the 11-pixel window from it
SSIM_KERNEL = 11


def l2_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over every pixel and channel of ``[N, 3, H, W]`` images in [0, 1]."""
    return F.mse_loss(pred, target)


def ssim_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 - SSIM (Gaussian window 11, sigma 1.5, data range 1), averaged over every pixel: torchmetrics reflect-pads
    the images by the window radius, so border pixels count too (FaceLift's pytorch_msssim averages only the
    windows inside the image; the two differ near the border, most on small images)."""
    ssim = structural_similarity_index_measure(pred, target, gaussian_kernel=True, sigma=SSIM_SIGMA,
                                               kernel_size=SSIM_KERNEL, data_range=1.0)
    return 1.0 - ssim


def ssim_map(pred: Tensor, target: Tensor) -> Tensor:
    """The per-pixel SSIM of `ssim_loss` (same window and constants), ``[N, 3, H, W]``: the SSIM of the window
    centred on each pixel (torchmetrics reflect-pads the borders), whose plain mean is the SSIM `ssim_loss` uses;
    the foreground-weighted SSIM term weights it per pixel."""
    _, full = structural_similarity_index_measure(pred, target, gaussian_kernel=True, sigma=SSIM_SIGMA,
                                                  kernel_size=SSIM_KERNEL, data_range=1.0, return_full_image=True)
    return full


def keep_foreground(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """The render inside the target's mask and the target outside it: ``target + mask * (pred - target)``.

    Any image term of the result then ignores background pixels (their error is zero, and so is their gradient),
    and the error of a soft-edge pixel is scaled by its mask value. ``pred``, ``target`` ``[N, 3, H, W]``,
    ``mask`` ``[N, 1, H, W]`` in [0, 1].
    """
    return target + mask * (pred - target)
