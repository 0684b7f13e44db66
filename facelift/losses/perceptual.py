"""FaceLift's perceptual loss: L1 distances of VGG19 features (the "photographic image synthesis" recipe).

Both images are scaled to 0-255 and the ImageNet mean (123.68, 116.779, 103.939) is subtracted per RGB channel
(no channel swap). The loss is, divided by 255: the L1 of the normalised images x 1, plus the L1 of the
relu1_2, relu2_2, relu3_2, relu4_2, relu5_2 features x 1/2.6, 1/4.8, 1/3.7, 1/5.6, 10/1.5. Pooling between
blocks is 2x2 *average* pooling, as in FaceLift (not VGG's max pooling). The network stops at conv5_2.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelift.errors import InputError
from facelift.losses.frozen import FrozenNet, weights_file_or_random
from facelift.losses.vgg19_weights import MATCONVNET_URL, NUM_CONVS, VGG19Weights, read_vgg19_weights

log = logging.getLogger("facelift")

CAFFE_MEAN = (123.68, 116.779, 103.939)  # RGB, on the 0-255 scale
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # RGB, on the [0, 1] scale
CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512)  # conv1 ... conv14 outputs
POOL_AFTER = (2, 4, 8, 12)  # 2x2 average pooling after these convs (end of blocks 1-4)
FEATURE_AFTER = (2, 4, 6, 10, 14)  # relu1_2, relu2_2, relu3_2, relu4_2, relu5_2
IMAGE_WEIGHT = 1.0
FEATURE_WEIGHTS = (1 / 2.6, 1 / 4.8, 1 / 3.7, 1 / 5.6, 10 / 1.5)


class VGG19Features(nn.Module):
    """VGG19's first 14 convolutions (``conv1`` ... ``conv14``, i.e. conv1_1 ... conv5_2) with ReLUs.

    Input: images on the 0-255-minus-mean scale. ``input_scale``/``input_shift`` map that to what the loaded
    weights were trained on (identity for MatConvNet / the official checkpoint).
    """

    def __init__(self) -> None:
        super().__init__()
        in_ch = 3
        for k, out_ch in enumerate(CONV_CHANNELS, start=1):
            self.add_module(f"conv{k}", nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
            in_ch = out_ch
        self.register_buffer("input_scale", torch.ones(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", torch.zeros(1, 3, 1, 1), persistent=False)

    def load(self, weights: VGG19Weights) -> None:
        self.load_state_dict(weights.state, strict=True)  # shape mismatches raise here
        if weights.convention == "torchvision":  # x_tv = ((x + mean) / 255 - m) / s, an affine map per channel
            mean, m, s = (torch.tensor(v).view(1, 3, 1, 1) for v in (CAFFE_MEAN, TORCHVISION_MEAN, TORCHVISION_STD))
            self.input_scale.copy_(1.0 / (255.0 * s))
            self.input_shift.copy_((mean / 255.0 - m) / s)
        else:
            self.input_scale.fill_(1.0)
            self.input_shift.zero_()

    def forward(self, x: Tensor) -> list[Tensor]:  # [N, 3, H, W] -> 5 feature maps [N, C_i, H / 2^i, W / 2^i]
        x = x * self.input_scale + self.input_shift
        features = []
        for k in range(1, NUM_CONVS + 1):
            x = F.relu(getattr(self, f"conv{k}")(x))
            if k in FEATURE_AFTER:
                features.append(x)
            if k in POOL_AFTER:
                x = F.avg_pool2d(x, kernel_size=2, stride=2)
        return features


class PerceptualLoss(FrozenNet):
    def __init__(self, weights_path: str | Path | None, allow_random_init: bool = False):
        super().__init__()
        self.vgg = VGG19Features()
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1), persistent=False)
        path = weights_file_or_random(
            weights_path, "VGG19 weights for the perceptual loss", allow_random_init,
            f"download imagenet-vgg-verydeep-19.mat from {MATCONVNET_URL} to that path, or point "
            "loss.vgg19_weights at the official GS-LRM checkpoint (ckpt_0000000000021125.pt), which carries them too")
        if path is not None:
            weights = read_vgg19_weights(path)
            try:
                self.vgg.load(weights)
            except RuntimeError as err:  # wrong shapes: not VGG19
                raise InputError(path, f"its VGG19 weights do not fit VGG19 ({str(err).splitlines()[-1].strip()})"
                                 ) from None
            log.info("perceptual loss: VGG19 weights from %s (%s)", path, weights.source)
        self.freeze()

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred``, ``target`` ``[N, 3, H, W]`` RGB in [0, 1] -> scalar loss."""
        pred, target = pred * 255.0 - self.mean, target * 255.0 - self.mean
        loss = IMAGE_WEIGHT * F.l1_loss(pred, target)
        for weight, f_pred, f_target in zip(FEATURE_WEIGHTS, self.vgg(pred), self.vgg(target)):
            loss = loss + weight * F.l1_loss(f_pred, f_target)
        return loss / 255.0
