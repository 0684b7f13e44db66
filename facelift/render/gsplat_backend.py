"""gsplat (CUDA) backend: `gsplat.rasterization` over the batch (split where too large), full K, SH by gsplat.

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
from facelift.render.chunking import MAX_INTERSECTIONS, TILE_SIZE, Chunk, plan_chunks, render_chunks, tile_intersections
from facelift.render.projection import EPS2D


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
                  packed: bool = False, max_intersections: int = MAX_INTERSECTIONS) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as `render_torch`, in as few gsplat calls as keep each under ``max_intersections``
    Gaussian-tile intersections (`facelift.render.chunking`: gsplat's 32-bit offsets overflow past 2^31).

    ``packed`` (gsplat's sparse intermediates) is off by default: with FaceLift's clouds, where nearly every Gaussian
    is seen by every view, it was slower and used more memory (scripts/bench_render.py). gsplat 1.5.3's packed
    projection also reads the opacities of sample 0 for every sample of a batch (culling and screen radius), so packed
    batches are rendered one sample at a time.
    """
    b = gaussians.batch_size
    chunks = plan_chunks(count_intersections(gaussians, cameras, near, far), max_intersections)
    if packed and b > 1:  # one sample per call, each still split by views where needed
        chunks = [c for chunk in chunks for c in _per_sample(chunk)]
    return render_chunks(functools.partial(_rasterize, near=near, far=far, packed=packed), gaussians, cameras,
                         background, chunks)


def _per_sample(chunk: Chunk) -> list[Chunk]:
    return [Chunk(i, i + 1, chunk.v0, chunk.v1) for i in range(chunk.b0, chunk.b1)]


@torch.no_grad()
def count_intersections(gaussians: Gaussians, cameras: Cameras, near: float, far: float) -> Tensor:
    """Gaussian-tile intersections per image [B, V], from gsplat's own projection with `_rasterize`'s settings."""
    from gsplat.cuda._wrapper import fully_fused_projection

    b, v = cameras.batch_shape[:2]
    radii, means2d, *_ = fully_fused_projection(
        gaussians.means.contiguous(), None, gaussians.quats.contiguous(), gaussians.scales.contiguous(),
        cameras.w2c.reshape(b, v, 4, 4).contiguous(), cameras.K.reshape(b, v, 3, 3).contiguous(),
        cameras.width, cameras.height, eps2d=EPS2D, near_plane=near, far_plane=far,
        opacities=gaussians.opacities.contiguous())  # radii [B, V, N, 2] int32, means2d [B, V, N, 2]
    return tile_intersections(means2d, radii.to(means2d.dtype), cameras.width, cameras.height)


def _rasterize(gaussians: Gaussians, cameras: Cameras, background: Tensor, near: float, far: float,
               packed: bool) -> tuple[Tensor, Tensor, Tensor]:
    """One `gsplat.rasterization` call for samples [B] x views [V]."""
    from gsplat import rasterization

    b, v = cameras.batch_shape[:2]
    colors, alphas, _ = rasterization(
        means=gaussians.means.contiguous(), quats=gaussians.quats.contiguous(),
        scales=gaussians.scales.contiguous(), opacities=gaussians.opacities.contiguous(),
        colors=gaussians.sh.contiguous(), sh_degree=gaussians.sh_degree,
        viewmats=cameras.w2c.reshape(b, v, 4, 4).contiguous(), Ks=cameras.K.reshape(b, v, 3, 3).contiguous(),
        width=cameras.width, height=cameras.height, near_plane=near, far_plane=far, eps2d=EPS2D,
        tile_size=TILE_SIZE, packed=packed, render_mode="RGB+ED")  # [B, V, H, W, 4], [B, V, H, W, 1]
    colors = colors.permute(0, 1, 4, 2, 3)
    alpha = alphas.permute(0, 1, 4, 2, 3)
    # the background is added here, as gsplat would (T * bg): gsplat 1.5.3 rejects batched backgrounds when packed
    rgb = colors[:, :, :3] + (1.0 - alpha) * background[..., None, None]
    return rgb, alpha, colors[:, :, 3:]
