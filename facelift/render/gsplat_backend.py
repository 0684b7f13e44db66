"""gsplat (CUDA) backend: one `gsplat.rasterization` call for the whole batch, full K, SH evaluated by gsplat.

gsplat builds its CUDA extension with torch's JIT at first use (about 80 s, cached under
``~/.cache/torch_extensions``). To skip that on a fresh machine, point ``FACELIFT_GSPLAT_SO`` at a ``gsplat_cuda.so``
built earlier by that JIT for the same torch / CUDA / Python: it is loaded and registered as ``gsplat.csrc``, the
module gsplat's backend tries before compiling.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import warnings

import torch
from torch import Tensor

from facelift.cameras import Cameras
from facelift.gaussians import Gaussians

@functools.cache
def gsplat_extension():
    """gsplat's compiled CUDA module, or None (with one warning saying why) when it cannot be had."""
    if not torch.cuda.is_available():
        return None
    so = os.environ.get("FACELIFT_GSPLAT_SO")
    if so and os.path.isfile(so) and "gsplat.csrc" not in sys.modules:
        try:
            spec = importlib.util.spec_from_file_location("gsplat_cuda", so)  # the name the JIT build gave it
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # torch is imported above: the .so links against its libraries
            sys.modules["gsplat.csrc"] = module
        except ImportError as err:  # built for another torch/CUDA/Python: let gsplat build its own
            warnings.warn(f"FACELIFT_GSPLAT_SO={so} does not load ({err}); falling back to gsplat's JIT build",
                          stacklevel=2)
    try:
        from gsplat.cuda._backend import _C
    except Exception as err:  # noqa: BLE001 - a JIT build can fail in many ways; the caller falls back or raises
        warnings.warn(f"gsplat's CUDA extension is unavailable ({type(err).__name__}: {err})", stacklevel=2)
        return None
    if _C is None:
        warnings.warn("gsplat's CUDA extension is unavailable (no CUDA toolkit to build it)", stacklevel=2)
    return _C


def render_gsplat(gaussians: Gaussians, cameras: Cameras, background: Tensor, near: float, far: float,
                  packed: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as `render_torch`.

    ``packed`` (gsplat's sparse intermediates) is off by default: with FaceLift's clouds, where nearly every Gaussian
    is seen by every view, it was slower and used more memory (scripts/bench_render.py). gsplat 1.5.3's packed
    projection also reads the opacities of sample 0 for every sample of a batch (culling and screen radius), so packed
    batches are rendered one sample at a time.
    """
    from gsplat import rasterization

    b = gaussians.batch_size
    v = cameras.batch_shape[1]
    if packed and b > 1:
        parts = [render_gsplat(gaussians[i], cameras[i:i + 1], background[i:i + 1], near, far, True) for i in range(b)]
        return tuple(torch.cat(p) for p in zip(*parts))
    colors, alphas, _ = rasterization(
        means=gaussians.means.contiguous(), quats=gaussians.quats.contiguous(),
        scales=gaussians.scales.contiguous(), opacities=gaussians.opacities.contiguous(),
        colors=gaussians.sh.contiguous(), sh_degree=gaussians.sh_degree,
        viewmats=cameras.w2c.reshape(b, v, 4, 4).contiguous(), Ks=cameras.K.reshape(b, v, 3, 3).contiguous(),
        width=cameras.width, height=cameras.height, near_plane=near, far_plane=far, packed=packed,
        render_mode="RGB+ED")  # [B, V, H, W, 4], [B, V, H, W, 1]
    colors = colors.permute(0, 1, 4, 2, 3)
    alpha = alphas.permute(0, 1, 4, 2, 3)
    # the background is added here, as gsplat would (T * bg): gsplat 1.5.3 rejects batched backgrounds when packed
    rgb = colors[:, :, :3] + (1.0 - alpha) * background[..., None, None]
    return rgb, alpha, colors[:, :, 3:]
