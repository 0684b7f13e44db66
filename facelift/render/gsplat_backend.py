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

from torch import Tensor

from facelift.cameras import Cameras
from facelift.gaussians import Gaussians

PACKED_ABOVE = 1 << 24  # image x Gaussian pairs beyond which packed mode (sparse intermediates) saves memory


@functools.cache
def gsplat_extension():
    """gsplat's compiled CUDA module, or None when it cannot be loaded (no CUDA, no toolkit, failed build)."""
    so = os.environ.get("FACELIFT_GSPLAT_SO")
    if so and os.path.isfile(so) and "gsplat.csrc" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gsplat_cuda", so)  # the name the JIT build gave it
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # needs torch imported first: the .so links against its libraries
        sys.modules["gsplat.csrc"] = module
    try:
        from gsplat.cuda._backend import _C
    except (ImportError, OSError, RuntimeError):
        return None
    return _C


def render_gsplat(gaussians: Gaussians, cameras: Cameras, background: Tensor, near: float, far: float,
                  packed: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as `render_torch`; ``packed`` None picks packed mode for large batches."""
    from gsplat import rasterization

    b, n = gaussians.means.shape[:2]
    v = cameras.batch_shape[1]
    if packed is None:
        packed = b * v * n > PACKED_ABOVE
    colors, alphas, _ = rasterization(
        means=gaussians.means.contiguous(), quats=gaussians.quats.contiguous(),
        scales=gaussians.scales.contiguous(), opacities=gaussians.opacities.contiguous(),
        colors=gaussians.sh.contiguous(), sh_degree=gaussians.sh_degree,
        viewmats=cameras.w2c.reshape(b, v, 4, 4).contiguous(), Ks=cameras.K.reshape(b, v, 3, 3).contiguous(),
        width=cameras.width, height=cameras.height, near_plane=near, far_plane=far, packed=packed,
        backgrounds=background.contiguous(), render_mode="RGB+ED")  # [B, V, H, W, 4], [B, V, H, W, 1]
    colors = colors.permute(0, 1, 4, 2, 3)
    return colors[:, :, :3], alphas.permute(0, 1, 4, 2, 3), colors[:, :, 3:]
