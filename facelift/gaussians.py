"""`Gaussians`: a batch of 3D Gaussian clouds, stored pre-activation as 3DGS stores them.

Activations live here and nowhere else: scale = exp(log_scales), opacity = sigmoid(opacity_logits),
rotation = normalised quaternion (w, x, y, z), colour = SH evaluation + 0.5 (DC only: 0.28209479 * sh[..., 0, :] + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

SH_C0 = 0.28209479177387814  # the degree-0 real spherical harmonic, 1 / (2 sqrt(pi))


@dataclass
class Gaussians:
    means: Tensor  # [B, N, 3] world positions
    quats: Tensor  # [B, N, 4] rotations, w first, not necessarily normalised
    log_scales: Tensor  # [B, N, 3]
    opacity_logits: Tensor  # [B, N]
    sh: Tensor  # [B, N, K, 3] colour SH coefficients, K = (degree + 1)^2

    def __post_init__(self) -> None:
        b, n = self.means.shape[:2]
        expect = {"means": (b, n, 3), "quats": (b, n, 4), "log_scales": (b, n, 3), "opacity_logits": (b, n)}
        for name, shape in expect.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Gaussians.{name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")
        if self.sh.shape[:2] != (b, n) or self.sh.shape[-1] != 3 or self.sh.dim() != 4:
            raise ValueError(f"Gaussians.sh has shape {tuple(self.sh.shape)}, expected ({b}, {n}, K, 3)")
        degree = math.isqrt(self.sh.shape[2]) - 1
        if (degree + 1) ** 2 != self.sh.shape[2] or degree > 3:
            raise ValueError(f"Gaussians.sh holds {self.sh.shape[2]} coefficients; expected 1, 4, 9 or 16")

    # ----------------------------------------------------------------- activations
    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[2]) - 1

    @property
    def scales(self) -> Tensor:  # [B, N, 3]
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:  # [B, N]
        return torch.sigmoid(self.opacity_logits)

    @property
    def rotations(self) -> Tensor:  # [B, N, 4] unit quaternions, w first
        return F.normalize(self.quats, dim=-1)

    @property
    def base_colors(self) -> Tensor:  # [B, N, 3] view-independent colour (degree-0 term only)
        return SH_C0 * self.sh[..., 0, :] + 0.5

    # ----------------------------------------------------------------- batching and moves
    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[1]

    def _map(self, fn) -> "Gaussians":
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, *args, **kwargs) -> "Gaussians":
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Gaussians":
        return self._map(Tensor.detach)

    def __getitem__(self, idx) -> "Gaussians":
        """Index the batch dimension, keeping it (``g[1]`` has batch size 1)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return self._map(lambda t: t[idx])

    def select(self, mask: Tensor) -> "Gaussians":
        """Keep the Gaussians where ``mask`` [N] is true (batch size 1 only: N differs per sample otherwise)."""
        if self.batch_size != 1:
            raise ValueError("Gaussians.select needs batch size 1; index the batch first")
        return self._map(lambda t: t[:, mask])

    @staticmethod
    def cat(parts: list["Gaussians"], dim: int = 1) -> "Gaussians":
        """Concatenate along Gaussians (dim 1, the default) or along the batch (dim 0)."""
        degree = max(p.sh_degree for p in parts)
        parts = [p.with_sh_degree(degree) for p in parts]
        return Gaussians(**{f.name: torch.cat([getattr(p, f.name) for p in parts], dim) for f in fields(Gaussians)})

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """Zero-pad (or truncate) the SH coefficients to ``degree``."""
        k = (degree + 1) ** 2
        sh = self.sh[:, :, :k]
        if sh.shape[2] < k:
            sh = F.pad(sh, (0, 0, 0, k - sh.shape[2]))
        return Gaussians(self.means, self.quats, self.log_scales, self.opacity_logits, sh)
