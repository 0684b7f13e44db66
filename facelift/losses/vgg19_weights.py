"""The VGG19 weights of the perceptual loss, read from whichever of three files a researcher has.

1. MatConvNet's ``imagenet-vgg-verydeep-19.mat`` (what FaceLift reads): conv weights stored ``[H, W, in, out]``.
2. The official GS-LRM checkpoint: FaceLift trained with this loss on, so its state dict (the ``"model"`` entry)
   carries the same weights as ``loss_calculator.perceptual_loss_module.net.conv{1..16}.{weight,bias}``.
3. A torchvision-layout VGG19 state dict (``features.{i}.weight``), e.g. torchvision's own ``vgg19-dcbb9e9d.pth``.
   Those weights were trained on RGB in [0, 1] normalised by ImageNet mean/std rather than on 0-255 minus the
   mean, so the network converts its input for them (exactly, see `PerceptualLoss`); the loss is then a VGG19
   feature distance of a differently trained network, whose scale differs from FaceLift's.

Every reader returns the first 14 convolutions (conv1_1 ... conv5_2, the last one the loss reads) named
``conv{k}.weight`` ``[out, in, 3, 3]`` and ``conv{k}.bias`` ``[out]``, k = 1..14, as `VGG19Features` names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from facelift.errors import InputError
from facelift.weights import load_checkpoint

NUM_CONVS = 14  # conv1_1 ... conv5_2
MATCONVNET_URL = "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"
MATCONVNET_NAMES = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
                    "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2")
OFFICIAL_PREFIX = "loss_calculator.perceptual_loss_module.net."
TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30)  # conv positions in vgg19().features

Convention = Literal["caffe", "torchvision"]  # what input the weights were trained on (see module docstring)


@dataclass(frozen=True)
class VGG19Weights:
    state: dict[str, Tensor]  # conv{k}.weight / conv{k}.bias, k = 1..NUM_CONVS, float32
    convention: Convention
    source: str  # "MatConvNet", "official GS-LRM checkpoint" or "torchvision state dict", for the log


def read_vgg19_weights(path: str | Path) -> VGG19Weights:
    """Read an existing file of any of the three kinds, told apart by suffix (.mat) and by the keys it holds."""
    path = Path(path)
    if path.suffix.lower() == ".mat":
        return VGG19Weights(read_matconvnet(path), "caffe", "MatConvNet")
    ckpt = load_checkpoint(path)
    state = ckpt["model"] if isinstance(ckpt.get("model"), dict) else ckpt  # a checkpoint or a bare state dict
    if OFFICIAL_PREFIX + "conv1.weight" in state:
        return VGG19Weights(_pick(path, state, lambda k: f"{OFFICIAL_PREFIX}conv{k}"), "caffe",
                            "official GS-LRM checkpoint")
    if "features.0.weight" in state:
        return VGG19Weights(_pick(path, state, lambda k: f"features.{TORCHVISION_INDICES[k - 1]}"), "torchvision",
                            "torchvision state dict")
    raise InputError(path, f"holds neither {OFFICIAL_PREFIX}conv*.weight (official GS-LRM checkpoint) nor "
                           "features.*.weight (torchvision VGG19) keys, so it has no VGG19 weights to read")


def read_matconvnet(path: str | Path) -> dict[str, Tensor]:
    """MatConvNet's ``layers`` cell array -> the first 14 conv layers, found by their names (conv1_1 ...)."""
    import scipy.io

    try:
        layers = scipy.io.loadmat(str(path))["layers"].reshape(-1)
        by_name = {}
        for layer in layers:
            record = layer.reshape(-1)[0]  # each cell holds a 1x1 struct
            by_name[str(np.asarray(record["name"]).reshape(-1)[0])] = record
    except (OSError, ValueError, KeyError, IndexError, TypeError, NotImplementedError) as err:
        raise InputError(path, f"not a MatConvNet network file with a 'layers' array ({type(err).__name__}: "
                               f"{err})") from None
    missing = [name for name in MATCONVNET_NAMES if name not in by_name]
    if missing:
        raise InputError(path, f"MatConvNet file lacks the layers {', '.join(missing)}; expected VGG19")
    state = {}
    for k, name in enumerate(MATCONVNET_NAMES, start=1):
        weight, bias = np.asarray(by_name[name]["weights"]).reshape(-1)[:2]  # the cell {filters, biases}
        # MatConvNet filters are [H, W, in, out] (and, like torch, applied as a correlation) -> [out, in, H, W].
        state[f"conv{k}.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)).permute(3, 2, 0, 1)
        state[f"conv{k}.bias"] = torch.from_numpy(np.asarray(bias, dtype=np.float32).reshape(-1))
    return {name: t.contiguous() for name, t in state.items()}


def _pick(path: Path, state: dict, source_name) -> dict[str, Tensor]:
    out = {}
    for k in range(1, NUM_CONVS + 1):
        for kind in ("weight", "bias"):
            key = f"{source_name(k)}.{kind}"
            if key not in state:
                raise InputError(path, f"lacks {key}, one of the {NUM_CONVS} VGG19 convolutions the loss reads")
            out[f"conv{k}.{kind}"] = state[key].detach().to(torch.float32)
    return out
