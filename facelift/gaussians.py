"""`Gaussians`: a batch of 3D Gaussian clouds, stored pre-activation as 3DGS stores them, and their PLY files.

Activations live here and nowhere else: scale = exp(log_scales), opacity = sigmoid(opacity_logits),
rotation = normalised quaternion (w, x, y, z), colour = SH evaluation + 0.5 (DC only: 0.28209479 * sh[..., 0, :] + 0.5).
The view-dependent SH evaluation is the renderer's (`facelift.render.sh`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from plyfile import PlyData, PlyElement, PlyParseError
from torch import Tensor

from facelift.atomic import atomic_path
from facelift.errors import InputError

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

    # ----------------------------------------------------------------- pruning (FaceLift's inference filters)
    def keep_mask(self, f: "GaussianFilter", camera_centers: Tensor | None = None) -> Tensor:
        """``[B, N]`` bool: the Gaussians that survive every filter of ``f`` that is switched on.

        ``camera_centers`` ``[C, 3]`` (world) is needed only for the near/far filter.
        """
        keep = torch.ones_like(self.opacity_logits, dtype=torch.bool)  # [B, N]
        x, y, z = self.means.unbind(-1)  # [B, N] each
        if f.min_opacity is not None:
            keep &= self.opacities > f.min_opacity
        if f.max_scale is not None:  # FaceLift prunes large Gaussians only below z = 0
            keep &= (self.scales.amax(-1) < f.max_scale) | (z > 0)
        if f.floater_threshold is not None:  # the four lower corners of the cube collect floaters
            t = f.floater_threshold
            keep &= ~((x.abs() > t) & (y.abs() > t) & (z < -t))
        if f.box is not None:
            lo = self.means.new_tensor(f.box[0::2])
            hi = self.means.new_tensor(f.box[1::2])
            keep &= ((self.means >= lo) & (self.means <= hi)).all(-1)
        if f.near_far_quantiles is not None:
            if camera_centers is None:
                raise ValueError("the near/far filter needs the camera centres")
            keep &= self._near_far_mask(camera_centers, f.near_far_quantiles, keep)
        return keep

    def _near_far_mask(self, camera_centers: Tensor, quantiles: tuple[float, float], kept: Tensor) -> Tensor:
        """Drop Gaussians closer (farther) to any camera than that camera's low (high) distance quantile, the
        quantiles taken over the Gaussians ``kept`` [B, N] by the earlier filters (FaceLift applies them in turn)."""
        keep = torch.ones_like(kept)
        q = self.means.new_tensor(quantiles)
        for center in camera_centers.to(self.means):  # one camera at a time keeps memory at [B, N]
            dist = (self.means - center).norm(dim=-1)  # [B, N]
            bounds = torch.stack([torch.quantile(d[k], q) for d, k in zip(dist, kept)])  # [B, 2]
            keep &= (dist >= bounds[:, :1]) & (dist <= bounds[:, 1:])
        return keep

    def filtered(self, f: "GaussianFilter", camera_centers: Tensor | None = None) -> "Gaussians":
        """The Gaussians that pass ``f`` (batch size 1: each sample keeps a different number)."""
        return self.select(self.keep_mask(f, camera_centers)[0])


@dataclass(frozen=True)
class GaussianFilter:
    """Pruning applied before export; defaults are FaceLift's inference settings. ``None`` switches a filter off."""

    min_opacity: float | None = 0.04  # keep opacity > this
    max_scale: float | None = 0.1  # keep largest axis < this, or z > 0
    floater_threshold: float | None = 0.6  # drop |x| > t and |y| > t and z < -t
    box: tuple[float, float, float, float, float, float] | None = (-0.91, 0.91, -0.91, 0.91, -1.0, 1.0)
    near_far_quantiles: tuple[float, float] | None = None  # per camera distance quantiles to keep between

    @classmethod
    def from_mapping(cls, values: Mapping | None) -> GaussianFilter | None:
        """A config node's plain values (lists become tuples); None (no filtering) stays None."""
        if values is None:
            return None
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# --------------------------------------------------------------------- PLY (the standard 3DGS vertex layout)
PLY_SH_DEGREE = 3  # f_rest is always written for degree 3 (45 values), zero-padded, so common viewers open the file


def save_ply(path: str | Path, gaussians: Gaussians, write_rgb: bool = True) -> Path:
    """Write one cloud (batch size 1) as a binary little-endian 3DGS PLY, atomically.

    Vertex properties in order: x y z, [red green blue uchar, as FaceLift writes them], f_dc_0..2,
    f_rest_0..44 (channel-major: f_rest_{c*15 + k-1} holds coefficient k of channel c), opacity (logit),
    scale_0..2 (log), rot_0..3 (w first, as stored, not normalised).
    """
    if gaussians.batch_size != 1:
        raise ValueError(f"save_ply writes one cloud; got a batch of {gaussians.batch_size}")
    g = gaussians.detach().to("cpu", torch.float32)
    n, k = g.num_gaussians, g.sh.shape[2]
    rest = [f"f_rest_{i}" for i in range(3 * ((PLY_SH_DEGREE + 1) ** 2 - 1))]
    rgb = ["red", "green", "blue"] if write_rgb else []
    floats = [f"f_dc_{c}" for c in range(3)] + rest + ["opacity"] + [f"scale_{i}" for i in range(3)] + \
        [f"rot_{i}" for i in range(4)]
    # zeros: the f_rest coefficients above the cloud's own degree stay 0
    vertices = np.zeros(n, dtype=[(c, "<f4") for c in "xyz"] + [(c, "u1") for c in rgb] + [(c, "<f4") for c in floats])
    # Filled as raw bytes, block by block, straight from the tensors: assigning 60 strided columns one by one, or
    # concatenating first, took seconds for FaceLift's 1.5 M Gaussians.
    record = vertices.view(np.uint8).reshape(n, vertices.itemsize)  # [N, bytes per vertex]

    def put(first: str, block: Tensor) -> None:  # block [N, m] float32 -> the m floats from column ``first`` on
        start = vertices.dtype.fields[first][1]
        record[:, start:start + 4 * block.shape[1]] = np.ascontiguousarray(block.numpy()).view(np.uint8)

    put("x", g.means[0])
    if write_rgb:  # FaceLift truncates (astype uint8) after clipping to [0, 255]
        start = vertices.dtype.fields["red"][1]
        record[:, start:start + 3] = (g.base_colors[0] * 255.0).clamp(0, 255).to(torch.uint8).numpy()
    put("f_dc_0", g.sh[0, :, 0, :])
    if k > 1:  # channel-major: f_rest_{c*15 + j-1} holds coefficient j of channel c; higher degrees stay 0
        per_channel = len(rest) // 3
        rest_sh = F.pad(g.sh[0, :, 1:, :], (0, 0, 0, per_channel - (k - 1)))  # [N, 15, 3]
        put("f_rest_0", rest_sh.transpose(1, 2).reshape(n, 3 * per_channel))
    put("opacity", g.opacity_logits[0, :, None])
    put("scale_0", g.log_scales[0])
    put("rot_0", g.quats[0])
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(str(tmp))
    return path


def load_ply(path: str | Path, sh_degree: int | None = None) -> Gaussians:
    """Read a 3DGS PLY into `Gaussians` of batch size 1 (float32; rgb columns, if any, are ignored).

    ``sh_degree``: the degree to return (zero-padded or truncated); ``None`` returns the lowest degree that keeps
    every nonzero stored coefficient, so a FaceLift file (degree 0 padded to 3) comes back with degree 0.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PLY file not found")
    try:
        vertex = PlyData.read(str(path))["vertex"]
    except (PlyParseError, KeyError, ValueError, OSError) as err:
        raise InputError(path, f"not a readable 3DGS PLY ({type(err).__name__}: {err})") from None
    names = set(vertex.data.dtype.names)
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    required = ["x", "y", "z", "opacity", *(f"f_dc_{i}" for i in range(3)), *(f"scale_{i}" for i in range(3)),
                *(f"rot_{i}" for i in range(4)), *(f"f_rest_{i}" for i in range(n_rest))]
    missing = [name for name in required if name not in names]
    if missing:
        raise InputError(path, f"PLY vertex element lacks {', '.join(missing)}")
    if n_rest % 3 or math.isqrt(n_rest // 3 + 1) ** 2 != n_rest // 3 + 1 or n_rest > 45:
        raise InputError(path, f"PLY has {n_rest} f_rest values; expected 0, 9, 24 or 45")

    def cols(*keys: str) -> Tensor:  # [N, len(keys)] float32
        return torch.from_numpy(np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], axis=-1))

    k = n_rest // 3 + 1
    dc = cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :]  # [N, 1, 3]
    rest = cols(*(f"f_rest_{i}" for i in range(n_rest))).reshape(-1, 3, k - 1).transpose(1, 2)  # [N, K-1, 3]
    sh = torch.cat([dc, rest], dim=1)
    g = Gaussians(cols("x", "y", "z")[None], cols("rot_0", "rot_1", "rot_2", "rot_3")[None],
                  cols("scale_0", "scale_1", "scale_2")[None], cols("opacity")[None, :, 0], sh[None])
    if not all(torch.isfinite(t).all() for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh)):
        raise InputError(path, "PLY holds NaN or infinite values")
    if sh_degree is None:
        nonzero = (sh != 0).flatten(1).any(0).reshape(k, 3).any(-1)  # [K] which coefficients are used anywhere
        last = int(nonzero.nonzero().max()) if nonzero.any() else 0
        sh_degree = math.isqrt(last)  # coefficient index k belongs to degree floor(sqrt(k))
    return g.with_sh_degree(sh_degree)
