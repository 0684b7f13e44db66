"""A stand-in for the ``torch_scatter`` package, put on the path only for a peer's run (never imported here).

Why: PyPI carries ``torch_scatter`` as source only; its wheels for a given torch are built elsewhere (data.pyg.org)
and none exists for this project's torch, so a peer that imports it would not start. Pose Splatter calls one
function, ``scatter_min(src, index, out=init)`` on 1-D tensors (the front-most voxel per pixel); this module
gives that call torch_scatter's semantics with ``torch.Tensor.scatter_reduce``:

- ``out[i] = min(out[i], min{src[e] : index[e] == i})``, written into ``out`` in place when it is given (filled with
  +inf first when it is not, then positions that received nothing are set to 0, as torch_scatter does);
- ``arg[i]`` = the position ``e`` in ``src`` of that minimum (the lowest such ``e`` on ties, torch_scatter's CPU
  order; its CUDA kernel may pick any of the tied ones), and ``src.size(dim)`` where no element of ``src`` reached
  ``out[i]`` (nothing scattered there, or ``out``'s own value was smaller).

Only ``index`` of ``src``'s shape is supported (torch_scatter also broadcasts a 1-D index along ``dim``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__version__ = "0.0.0+facelift.shim"  # not torch_scatter: a shim of the one call Pose Splatter makes


def scatter_min(src: Tensor, index: Tensor, dim: int = -1, out: Tensor | None = None,
                dim_size: int | None = None) -> tuple[Tensor, Tensor]:
    """(minimum per output position, argmin into ``src``) along ``dim``; see the module doc."""
    if index.shape != src.shape:
        raise ValueError(f"torch_scatter shim: index {tuple(index.shape)} must have src's shape {tuple(src.shape)}")
    dim = dim % src.dim()
    given = out is not None
    if not given:
        size = list(src.shape)
        size[dim] = int(index.max()) + 1 if dim_size is None else dim_size
        out = src.new_full(size, float("inf") if src.is_floating_point() else torch.iinfo(src.dtype).max)
    out.scatter_reduce_(dim, index, src, reduce="amin", include_self=True)
    n = src.shape[dim]
    positions = torch.arange(n, device=src.device).view([-1 if d == dim else 1 for d in range(src.dim())])
    positions = positions.expand_as(src)
    reached = src == out.gather(dim, index)  # the elements that hold their position's minimum
    arg = torch.full(out.shape, n, dtype=torch.long, device=src.device)
    arg.scatter_reduce_(dim, index, torch.where(reached, positions, n), reduce="amin", include_self=True)
    if not given:
        empty = arg == n
        out.masked_fill_(empty, 0)
    return out, arg
