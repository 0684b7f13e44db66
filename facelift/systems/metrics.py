"""Image-quality metrics per view (PSNR, SSIM, LPIPS over the whole image; the foreground metrics of
`facelift.evaluation.foreground`) and the logging of the image grids the systems make."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from facelift.evaluation.foreground import foreground_scores
from facelift.image_io import write_image
from facelift.losses.lpips_loss import VGG16_HOW, LPIPSLoss
from facelift.render import Renders
from facelift.views import Views

log = logging.getLogger("facelift")


class ImageMetrics(nn.Module):
    """Scores ``[B, V]`` per metric for renders into the target views (rgb ``[B, V, 3, H, W]`` in [0, 1]).

    Foreground metrics (psnr_fg, psnr_int, iou, coverage, precision, fg_fraction) compare the targets' masks with
    the rendered alpha thresholded at ``alpha_threshold`` (NaN where a view has no foreground). PSNR and SSIM
    (Gaussian window 11, sigma 1.5) come from torchmetrics; LPIPS (VGG, the lpips package) needs the local
    torchvision VGG16 file, so it is computed only when ``lpips`` is on: ``True`` requires the file (a missing
    one stops the run naming it), ``"auto"`` computes LPIPS when the file is there and otherwise skips it with a
    one-line note (so a fresh checkout can score without downloading anything).
    """

    def __init__(self, lpips: bool | str = False, lpips_vgg16_weights: str | Path | None = None,
                 allow_random_init: bool = False, alpha_threshold: float = 0.5):
        super().__init__()
        if not 0 <= alpha_threshold < 1:
            raise ValueError(f"metrics.alpha_threshold must be in [0, 1), got {alpha_threshold}")
        self.alpha_threshold = alpha_threshold
        if lpips not in (True, False, "auto"):
            raise ValueError(f"lpips must be true, false or auto, got {lpips!r}")
        if lpips == "auto":
            lpips = allow_random_init or (lpips_vgg16_weights is not None and Path(lpips_vgg16_weights).is_file())
            if not lpips:
                log.warning("LPIPS skipped: no VGG16 weights at %s (to score LPIPS, %s --out that path; "
                            "lpips=true requires them)", lpips_vgg16_weights, VGG16_HOW)
        self.lpips = LPIPSLoss(lpips_vgg16_weights, allow_random_init) if lpips else None

    def forward(self, renders: Renders, targets: Views) -> dict[str, Tensor]:
        # no_grad as a block, not a decorator: the mutation pass (mutmut) skips decorated functions
        with torch.no_grad():
            b, v = renders.rgb.shape[:2]
            p = renders.rgb.flatten(0, 1).float().clamp(0, 1)  # [B*V, 3, H, W]
            t = targets.images.flatten(0, 1).float()
            scores = {"psnr": peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3)),
                      "ssim": structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")}
            if self.lpips is not None:
                scores["lpips"] = self.lpips.per_image(p, t)
            scores.update(foreground_scores(p, t, targets.masks.flatten(0, 1), renders.alpha.flatten(0, 1),
                                            self.alpha_threshold))
            return {k: s.reshape(b, v) for k, s in scores.items()}


def log_image(loggers, tag: str, image: Tensor, step: int, png_path: Path | None = None) -> None:
    """Write ``image`` [3, H, W] as a PNG (readable whatever the logger) and hand it to image-capable loggers."""
    if png_path is not None:
        write_image(png_path, image)
    for lg in loggers:
        if hasattr(getattr(lg, "experiment", None), "add_image"):  # tensorboard
            lg.experiment.add_image(tag, image, global_step=step)
        elif hasattr(lg, "log_image"):  # wandb
            lg.log_image(key=tag, images=[image.permute(1, 2, 0).numpy()], step=step)
