"""Real spherical harmonics up to degree 3, in the basis and sign convention of 3DGS (and gsplat).

Colour seen from a direction = sum_k basis_k(dir) * sh_k + 0.5, clamped below at 0 (not above), as gsplat does
to match the original 3DGS rasterizer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
      1.445305721320277, -0.5900435899266435)


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """Basis functions ``[..., (degree + 1)^2]`` at directions ``[..., 3]`` (normalised here)."""
    out = [torch.full_like(dirs[..., 0], C0)]
    if degree >= 1:
        x, y, z = F.normalize(dirs, dim=-1).unbind(-1)
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [C3[0] * y * (3 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4 * zz - xx - yy),
                C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy), C3[5] * z * (xx - yy),
                C3[6] * x * (xx - 3 * yy)]
    if degree > 3:
        raise ValueError(f"SH degree {degree} is not supported (0-3)")
    return torch.stack(out, dim=-1)


def sh_to_rgb(sh: Tensor, dirs: Tensor | None) -> Tensor:
    """Colours ``[..., 3]`` from coefficients ``[..., K, 3]`` seen along ``dirs`` ``[..., 3]`` (camera -> Gaussian).

    ``dirs`` may be ``None`` for degree 0 (view-independent).
    """
    degree = round(sh.shape[-2] ** 0.5) - 1
    if degree == 0:
        rgb = C0 * sh[..., 0, :]
    else:
        rgb = (sh_basis(dirs, degree)[..., None] * sh).sum(-2)
    return (rgb + 0.5).clamp_min(0.0)
