"""EWA projection of 3D Gaussians into pinhole images, with gsplat 1.5's culling and screen-space rules.

Rules (all from gsplat's fused 3DGS projection, reimplemented here):
- camera-space depth z must satisfy near <= z <= far;
- the Jacobian of the projection is evaluated at the mean with x/z, y/z clamped to 1.3x the field of view
  (so Gaussians far outside the image do not blow up), while the 2D mean itself is unclamped;
- 0.3 px^2 is added to the diagonal of the 2D covariance (the "dilation", eps2d) and the determinant must be > 0;
- Gaussians with opacity < 1/255 are dropped; the screen radius per axis is ceil(extent * sqrt(cov_ii)) with the
  opacity-aware extent min(3.33, sqrt(2 ln(255 opacity))) — beyond it alpha < 1/255 anyway;
- a Gaussian whose box lies wholly outside the image is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from facelift.cameras import Cameras

EPS2D = 0.3  # px^2 added to the projected covariance
ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped
MAX_EXTENT = 3.33  # sigma multiple of the screen radius for fully opaque Gaussians
FOV_MARGIN = 0.3  # Jacobian clamp: 1 + FOV_MARGIN half-fields of view


@dataclass
class Projected:
    """Per image (I = B*V) and Gaussian: screen-space quantities; rows where ``visible`` is false are garbage."""

    means2d: Tensor  # [I, N, 2] continuous pixel coordinates (pixel centres at +0.5)
    conics: Tensor  # [I, N, 3] inverse 2D covariance (a, b, c): sigma = a dx^2 / 2 + b dx dy + c dy^2 / 2
    depths: Tensor  # [I, N] camera-space z
    radii: Tensor  # [I, N, 2] float, whole pixels: half-size of the screen box per axis
    visible: Tensor  # [I, N] bool


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` (w first, normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def project(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, cameras: Cameras,
            near: float, far: float) -> Projected:
    """Project Gaussians ``[B, N, ...]`` into cameras ``[B, V]``; images are flattened to I = B*V (view-major)."""
    b, n = means.shape[:2]
    v = cameras.batch_shape[1]
    w2c = cameras.w2c.reshape(b, v, 4, 4)
    rot, trans = w2c[..., :3, :3], w2c[..., :3, 3]  # [B, V, 3, 3], [B, V, 3]
    p_cam = torch.einsum("bvij,bnj->bvni", rot, means) + trans[:, :, None]  # [B, V, N, 3]
    x, y, depth = p_cam.unbind(-1)  # [B, V, N]
    z = depth.clamp_min(near)  # only culled Gaussians are clamped; keeps their (unused) gradients finite

    fx, fy, cx, cy = (t.reshape(b, v, 1) for t in cameras.intrinsics.unbind(-1))  # [B, V, 1]
    width, height = cameras.width, cameras.height
    lim_x_hi, lim_x_lo = (width - cx) / fx + FOV_MARGIN * 0.5 * width / fx, cx / fx + FOV_MARGIN * 0.5 * width / fx
    lim_y_hi, lim_y_lo = (height - cy) / fy + FOV_MARGIN * 0.5 * height / fy, cy / fy + FOV_MARGIN * 0.5 * height / fy
    tx = z * torch.minimum(torch.maximum(x / z, -lim_x_lo), lim_x_hi)
    ty = z * torch.minimum(torch.maximum(y / z, -lim_y_lo), lim_y_hi)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], -1)
    jac = jac.reshape(b, v, n, 2, 3)  # d(pixel)/d(camera point)

    # 2D covariance = (J R_wc R_q S)(J R_wc R_q S)^T: a 2x3 factor per image and Gaussian, no 3x3 covariance stored
    rs = quat_to_rotmat(quats) * scales[..., None, :]  # [B, N, 3, 3]
    factor = jac @ torch.einsum("bvij,bnjk->bvnik", rot, rs)  # [B, V, N, 2, 3]
    cov = factor @ factor.transpose(-1, -2)  # [B, V, N, 2, 2]
    cxx, cxy, cyy = cov[..., 0, 0] + EPS2D, cov[..., 0, 1], cov[..., 1, 1] + EPS2D
    det = cxx * cyy - cxy * cxy
    safe_det = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([cyy / safe_det, -cxy / safe_det, cxx / safe_det], -1)  # [B, V, N, 3]
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)  # [B, V, N, 2]

    with torch.no_grad():
        opac = opacities[:, None].expand(b, v, n)
        extent = torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp_max(MAX_EXTENT)
        radii = torch.stack([torch.ceil(extent * cxx.clamp_min(0).sqrt()),
                             torch.ceil(extent * cyy.clamp_min(0).sqrt())], -1)  # [B, V, N, 2]
        mx, my = means2d.unbind(-1)
        rx, ry = radii.unbind(-1)
        visible = ((depth >= near) & (depth <= far) & (det > 0) & (opac >= ALPHA_MIN) & ((rx > 0) | (ry > 0))
                   & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height))
    flat = lambda t: t.reshape(b * v, n, *t.shape[3:])  # noqa: E731
    return Projected(flat(means2d), flat(conics), flat(depth), flat(radii), flat(visible))

