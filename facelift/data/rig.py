"""Rig normalization: move a sample's camera rig into the frame FaceLift's GS-LRM was trained in.

FaceLift's rig (the public sample): the subject at the origin, world up +Z, every camera 2.7 from the origin.
A raw calibration (the lab's mouse rig) has its origin off the subject, up tilted and distances 1.9 - 3.4.

``global`` mode (default) applies ONE similarity to the whole rig, so images stay valid:
  1. centre = the point closest (least squares) to all optical axes -> origin;
  2. up = the given one (config, else the camera file), else the normal of the plane of the camera centres (PCA:
     smallest-variance direction, sign from the mean camera up); when the centres are not near a plane (ratio
     of the two smallest eigenvalues above ``planarity_threshold``) the mean camera up (-y of each camera) is
     used instead and the report says so;  the up is rotated onto ``up_axis``;
  3. optionally, a rotation about up puts camera ``front_view`` on the ``front_axis`` side (FaceLift's front
     camera sits on -Y);
  4. scale so that the MEAN camera distance is ``target_camera_distance``.
``per_camera`` mode (the mouse fork's recipe) does 1-3, then moves each camera along the line to the centre to
exactly ``target_camera_distance`` and scales its fx, fy by target / distance. A small object at the centre keeps
its image size, but not its place unless the camera looks straight at it (its offset from the principal point
scales too), and parts nearer or farther than the centre change size differently: an approximation, fine only
for a subject small against the camera distances and near the optical axes.
The original mouse guide's ("seed") recipe is ``up_axis: y``, ``distance_mode: per_camera``, ``rescale_focal: false``
and ``recentre: false``: each camera is moved along its line to the RAW origin to the target distance and its image
is left as it was. It is here only so that a study can measure what it costs (image and pose then disagree).

Rigs that cannot be normalized (cameras at one point or on a line, parallel optical axes, axes meeting behind the
cameras, NaN) raise `InputError` naming the source file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from facelift.errors import InputError

AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0),
        "-x": (-1.0, 0.0, 0.0), "-y": (0.0, -1.0, 0.0), "-z": (0.0, 0.0, -1.0)}
DISTANCE_MODES = ("global", "per_camera")
_COLLINEAR = 1e-6  # centres whose 2nd eigenvalue is below this fraction of the 1st lie on a line
_PARALLEL = 1e-6  # closest-point system this ill-conditioned: the optical axes are (nearly) parallel


@dataclass
class RigNormalization:
    """The knobs (config node ``normalize_cameras`` of the data configs; the prepare CLI's flags)."""

    enabled: bool = True  # read by the dataset: normalize each sample's rig when loading it
    up_axis: str = "z"  # world axis the rig's up is rotated onto (FaceLift's data and checkpoints: z)
    up: list[float] | None = None  # the rig's up in raw world coordinates when known; null: from the file or estimated
    target_camera_distance: float = 2.7  # FaceLift's camera radius
    distance_mode: str = "global"  # global: one similarity (mean distance -> target); per_camera: the fork's recipe
    front_view: int | None = None  # view put on the front_axis side by a rotation about up; null: no such rotation
    front_axis: str = "-y"  # where FaceLift's front camera sits
    planarity_threshold: float = 0.25  # PCA up only if (smallest / middle eigenvalue of the centres) <= this
    rescale_focal: bool = True  # per_camera: scale fx, fy by target / distance (false: the seed recipe's bare move)
    recentre: bool = True  # the point closest to all optical axes becomes the origin (false: the raw origin stays)

    def __post_init__(self) -> None:
        if self.up_axis not in AXES or self.front_axis not in AXES:
            raise ValueError(f"up_axis and front_axis must be one of {sorted(AXES)}, got {self.up_axis!r}, "
                             f"{self.front_axis!r}")
        if self.front_view is not None and any(a * b for a, b in zip(AXES[self.up_axis], AXES[self.front_axis])):
            raise ValueError(f"front_axis {self.front_axis} must be perpendicular to up_axis {self.up_axis}")
        if self.distance_mode not in DISTANCE_MODES:
            raise ValueError(f"distance_mode must be one of {DISTANCE_MODES}, got {self.distance_mode!r}")
        if not self.target_camera_distance > 0:
            raise ValueError(f"target_camera_distance must be positive, got {self.target_camera_distance}")
        if not 0 < self.planarity_threshold <= 1:
            raise ValueError(f"planarity_threshold must be in (0, 1], got {self.planarity_threshold}")
        if self.up is not None:
            self.up = [float(x) for x in self.up]
            if len(self.up) != 3 or not all(math.isfinite(x) for x in self.up) or not any(self.up):
                raise ValueError(f"up must be three finite numbers, not all zero; got {self.up}")


@dataclass
class RigReport:
    """What normalization found and did (raw world units; positions in the raw frame)."""

    up: list[float]  # the unit up vector used, raw frame
    up_source: str  # config | data | pca | camera_up
    planarity: float  # smallest / middle eigenvalue of the camera centres' covariance (0: exactly planar)
    up_angle_to_camera_up_deg: float  # angle between the up used and the mean camera up (a sanity check)
    centre: list[float]  # raw frame point that became the origin: closest to all optical axes (recentre) or 0
    rotation: list[list[float]]  # [3][3] raw -> normalized
    distance_mode: str
    scale: float | None  # the similarity's scale (global mode); per_camera: null, see position_scales
    distances_before: list[float]  # per camera, from the centre, raw units
    distances_after: list[float]  # per camera, from the origin, normalized units
    position_scales: list[float]  # per camera: how much its offset from the centre was scaled (all equal: global)
    focal_scales: list[float]  # per camera fx, fy factor (all 1: global)
    transform: list[list[float]] | None  # [4][4] world similarity raw -> normalized (global mode only)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NormalizedRig:
    c2w: Tensor  # [V, 4, 4] normalized, OpenCV, dtype of the input
    intrinsics: Tensor  # [V, 4] fx fy cx cy (changed only in per_camera mode)
    report: RigReport


def normalize_rig(c2w: Tensor, intrinsics: Tensor, config: RigNormalization, data_up: Tensor | None = None,
                  source=None) -> NormalizedRig:
    """Normalize one rig: ``c2w`` [V, 4, 4], ``intrinsics`` [V, 4]; ``data_up`` [3] the up the data gives (if any);
    ``source`` names the rig in errors (e.g. its camera file). Pure: reads and writes nothing."""
    dtype = c2w.dtype
    c2w, intrinsics = c2w.double(), intrinsics.double()
    if c2w.dim() != 3 or c2w.shape[0] < 2:
        raise InputError(source, f"a rig needs at least 2 cameras, got c2w of shape {tuple(c2w.shape)}")
    if not (torch.isfinite(c2w).all() and torch.isfinite(intrinsics).all()):
        raise InputError(source, "camera poses or intrinsics hold NaN or inf")
    origins, forward = c2w[:, :3, 3], F.normalize(c2w[:, :3, 2], dim=-1)  # [V, 3]
    warnings: list[str] = []

    eigvals, eigvecs = _centre_spread(origins, source)
    centre = _closest_point_to_axes(origins, forward, source)  # also refuses rigs that look outwards
    if not config.recentre:  # the seed recipe: rotate about, and measure distances from, the raw origin
        centre = torch.zeros_like(centre)
    dist = (origins - centre).norm(dim=-1)  # [V]
    if not bool((dist > 1e-9).all()):  # only possible with recentre false: a camera sits at the raw origin
        raise InputError(source, "a camera sits at the origin: its distance cannot be normalized (recentre: false)")

    camera_up = (-c2w[:, :3, 1]).mean(0)  # [3] mean camera up (OpenCV: -y)
    up, up_source, planarity = _choose_up(config, data_up, eigvals, eigvecs, camera_up, warnings, source)
    cos_cam = (up @ camera_up / camera_up.norm().clamp_min(1e-12)).clamp(-1, 1)
    rotation = _rotation_between(up, _axis(config.up_axis))
    if config.front_view is not None:
        rotation = _face_front(rotation, origins, centre, config, warnings, source) @ rotation

    offsets = (origins - centre) @ rotation.T  # [V, 3] rotated, unscaled
    if config.distance_mode == "global":
        scale = config.target_camera_distance / dist.mean()
        position_scales = scale.expand_as(dist)
        focal_scales = torch.ones_like(dist)
    else:
        position_scales = config.target_camera_distance / dist
        focal_scales = position_scales if config.rescale_focal else torch.ones_like(dist)
    new_c2w = c2w.clone()
    new_c2w[:, :3, :3] = rotation @ c2w[:, :3, :3]
    new_c2w[:, :3, 3] = offsets * position_scales[:, None]
    new_intr = intrinsics.clone()
    new_intr[:, :2] *= focal_scales[:, None]

    transform = None
    if config.distance_mode == "global":
        t = torch.eye(4, dtype=torch.float64)
        t[:3, :3], t[:3, 3] = scale * rotation, -scale * rotation @ centre
        transform = t.tolist()
    report = RigReport(
        up=up.tolist(), up_source=up_source, planarity=planarity,
        up_angle_to_camera_up_deg=math.degrees(math.acos(float(cos_cam))), centre=centre.tolist(),
        rotation=rotation.tolist(), distance_mode=config.distance_mode,
        scale=float(scale) if config.distance_mode == "global" else None, distances_before=dist.tolist(),
        distances_after=new_c2w[:, :3, 3].norm(dim=-1).tolist(), position_scales=position_scales.tolist(),
        focal_scales=focal_scales.tolist(), transform=transform, warnings=warnings)
    return NormalizedRig(new_c2w.to(dtype), new_intr.to(dtype), report)


def _axis(name: str) -> Tensor:
    return torch.tensor(AXES[name], dtype=torch.float64)


def _centre_spread(origins: Tensor, source) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending) and eigenvectors of the camera centres' covariance; refuses point and line rigs."""
    centred = origins - origins.mean(0)
    eigvals, eigvecs = torch.linalg.eigh(centred.T @ centred / len(origins))
    size = 1 + origins.norm(dim=-1).max()
    if eigvals[2].clamp_min(0).sqrt() <= 1e-9 * size:
        raise InputError(source, f"degenerate rig: all {len(origins)} cameras are at one point")
    if eigvals[1] <= _COLLINEAR * eigvals[2]:
        raise InputError(source, f"degenerate rig: the {len(origins)} camera centres lie on a line")
    return eigvals, eigvecs


def _closest_point_to_axes(origins: Tensor, forward: Tensor, source) -> Tensor:
    """argmin_x sum_i |(I - d_i d_i^T)(x - o_i)|^2: the point nearest to every optical axis; it must be in front
    of every camera (a rig that looks outwards, or poses that are not OpenCV world-to-camera, fail here)."""
    proj = torch.eye(3, dtype=torch.float64) - forward[:, :, None] * forward[:, None, :]  # [V, 3, 3]
    a, b = proj.sum(0), (proj @ origins[:, :, None]).sum(0)[:, 0]
    ev = torch.linalg.eigvalsh(a)
    if ev[0] <= _PARALLEL * ev[2]:
        raise InputError(source, "degenerate rig: the optical axes are (nearly) parallel, no point is closest to "
                                 "all of them")
    centre = torch.linalg.solve(a, b)
    depth = ((centre - origins) * forward).sum(-1)  # [V]
    behind = (depth <= 0).nonzero().flatten().tolist()
    if behind:
        raise InputError(source, f"the optical axes meet behind camera(s) {behind}: the cameras must look at the "
                                 "subject, with w2c world-to-camera in the OpenCV convention (camera looks along +z)")
    return centre


def _choose_up(config: RigNormalization, data_up: Tensor | None, eigvals: Tensor, eigvecs: Tensor,
               camera_up: Tensor, warnings: list[str], source) -> tuple[Tensor, str, float]:
    planarity = float(eigvals[0].clamp_min(0) / eigvals[1])
    if config.up is not None:
        return F.normalize(torch.tensor(config.up, dtype=torch.float64), dim=0), "config", planarity
    if data_up is not None:
        return F.normalize(data_up.double(), dim=0), "data", planarity
    if planarity <= config.planarity_threshold:
        normal = eigvecs[:, 0]
        if abs(float(normal @ camera_up)) < 1e-3:
            warnings.append("the mean camera up is perpendicular to the plane of the cameras: the sign of up is a "
                            "guess; give `up`")
        return (normal if float(normal @ camera_up) >= 0 else -normal), "pca", planarity
    if camera_up.norm() < 0.1:
        raise InputError(source, f"cannot estimate up: the camera centres are not near a plane (eigenvalue ratio "
                                 f"{planarity:.2f}) and the cameras' up vectors cancel out; give `up`")
    warnings.append(f"camera centres are not near a plane (eigenvalue ratio {planarity:.2f} > "
                    f"{config.planarity_threshold}); up taken from the mean camera up vector")
    return F.normalize(camera_up, dim=0), "camera_up", planarity


def _rotation_between(a: Tensor, b: Tensor) -> Tensor:
    """The smallest rotation [3, 3] taking unit vector ``a`` onto unit vector ``b``."""
    v, c = torch.linalg.cross(a, b), float(a @ b)
    if c > 1 - 1e-12:
        return torch.eye(3, dtype=torch.float64)
    if c < -1 + 1e-12:  # opposite: half a turn about any axis perpendicular to a
        helper = torch.eye(3, dtype=torch.float64)[int(a.abs().argmin())]
        return _rotation_about(F.normalize(torch.linalg.cross(a, helper), dim=0), math.pi)
    k = _skew(v)
    return torch.eye(3, dtype=torch.float64) + k + k @ k / (1 + c)


def _rotation_about(axis: Tensor, angle: float) -> Tensor:
    k = _skew(axis)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _skew(v: Tensor) -> Tensor:
    zero = v.new_zeros(())
    return torch.stack([torch.stack([zero, -v[2], v[1]]), torch.stack([v[2], zero, -v[0]]),
                        torch.stack([-v[1], v[0], zero])])


def _face_front(rotation: Tensor, origins: Tensor, centre: Tensor, config: RigNormalization,
                warnings: list[str], source) -> Tensor:
    """Rotation about the target up that puts camera ``front_view`` on the ``front_axis`` side of the centre."""
    k = config.front_view
    if not 0 <= k < len(origins):
        raise InputError(source, f"front_view {k} is not a view of this rig ({len(origins)} views)")
    up, front = _axis(config.up_axis), _axis(config.front_axis)
    p = rotation @ (origins[k] - centre)
    horizontal = p - (p @ up) * up
    if horizontal.norm() < 1e-6 * p.norm():
        warnings.append(f"front_view {k} is straight above or below the centre; no rotation about up applied")
        return torch.eye(3, dtype=torch.float64)
    angle = math.atan2(float(torch.linalg.cross(horizontal, front) @ up), float(horizontal @ front))
    return _rotation_about(up, angle)
