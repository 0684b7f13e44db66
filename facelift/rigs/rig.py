"""A calibrated camera rig as a lab records with it, and ``rig.json``, the one file every rig format is imported to.

``rig.json``: ``{"units": "mm", "frames": [{"name", "w", "h", "fx", "fy", "cx", "cy", "skew", "dist": [k1, k2, p1,
p2, k3], "w2c": 4x4}, ...]}`` in the source's camera order, world frame and units. A world point ``X`` projects as
``x = w2c X``, ``(xn, yn) = x[:2] / x[2]``, OpenCV's radial + tangential distortion of ``(xn, yn)`` with ``dist``
giving ``(xd, yd)``, then ``u = fx xd + skew yd + cx``, ``v = fy yd + cy`` — pixels in the project's convention
(pixel (i, j)'s centre at (i + 0.5, j + 0.5), `facelift.cameras`). Float64 throughout: calibrations are precise
to far below a pixel and the import tests hold them to 1e-3 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facelift.atomic import write_json
from facelift.cameras import Cameras
from facelift.data.camera_json import read_json
from facelift.errors import InputError
from facelift.rigs import lens

RIG_FILE = "rig.json"
FRAME_KEYS = ("name", "w", "h", "fx", "fy", "cx", "cy", "skew", "dist", "w2c")
RIGID_TOLERANCE = 1e-3  # max |R^T R - I| accepted for a w2c rotation (calibrations carry small noise)


@dataclass
class RigCamera:
    name: str  # the camera's name in the source (videos are found by it: VIDEOS/<name>.mp4)
    w: int  # image width in pixels
    h: int  # image height in pixels
    fx: float
    fy: float
    cx: float  # principal point, project pixel convention
    cy: float
    skew: float = 0.0  # K[0, 1]: u = fx xd + skew yd + cx
    dist: list[float] = field(default_factory=lambda: [0.0] * 5)  # OpenCV k1, k2, p1, p2, k3
    w2c: np.ndarray = field(default_factory=lambda: np.eye(4))  # [4, 4] world -> camera, OpenCV axes

    @property
    def centre(self) -> np.ndarray:  # [3] camera centre in world coordinates
        return -self.w2c[:3, :3].T @ self.w2c[:3, 3]

    @property
    def forward(self) -> np.ndarray:  # [3] unit viewing direction (camera +z) in world coordinates
        return self.w2c[2, :3] / np.linalg.norm(self.w2c[2, :3])

    @property
    def up(self) -> np.ndarray:  # [3] unit camera up (camera -y) in world coordinates
        return -self.w2c[1, :3] / np.linalg.norm(self.w2c[1, :3])

    @property
    def distorted(self) -> bool:
        return bool(np.any(self.dist)) or self.skew != 0.0

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points ``[N, 3]`` -> pixels ``[N, 2]`` (full lens model) and camera depth ``[N]``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        cam = pts @ self.w2c[:3, :3].T + self.w2c[:3, 3]  # [N, 3]
        xd = lens.distort(cam[:, :2] / cam[:, 2:3], self.dist)
        return lens.apply_k(xd, self.fx, self.fy, self.cx, self.cy, self.skew), cam[:, 2]

    def pinhole(self) -> RigCamera:
        """The distortion-free, skew-free camera an undistorted image of this one is drawn for: same pose, size,
        focal lengths and principal point (the undistorted image keeps the recording's scale and centre)."""
        return RigCamera(self.name, self.w, self.h, self.fx, self.fy, self.cx, self.cy, 0.0, [0.0] * 5,
                         self.w2c.copy())

    def to_cameras(self) -> Cameras:
        """This camera as project `Cameras` [1] float64 (pinhole: only valid once ``distorted`` is False)."""
        intr = torch.tensor([[self.fx, self.fy, self.cx, self.cy]], dtype=torch.float64)
        return Cameras.from_w2c(torch.from_numpy(self.w2c.copy())[None], intr, self.w, self.h)

    def to_frame(self) -> dict:
        return {"name": self.name, "w": self.w, "h": self.h, "fx": self.fx, "fy": self.fy, "cx": self.cx,
                "cy": self.cy, "skew": self.skew, "dist": [float(d) for d in self.dist], "w2c": self.w2c.tolist()}


@dataclass
class Rig:
    units: str  # length unit of the world frame ("mm" for the DANNCE/Label3D rigs)
    frames: list[RigCamera]  # in the source's camera order

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.frames]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points ``[N, 3]`` -> pixels ``[V, N, 2]`` and depths ``[V, N]`` in every camera."""
        out = [f.project(points) for f in self.frames]
        return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])

    def axes_centre(self) -> np.ndarray:
        """[3] the point the optical axes pass closest to (least squares)."""
        a, b = np.zeros((3, 3)), np.zeros(3)
        for f in self.frames:
            p = np.eye(3) - np.outer(f.forward, f.forward)
            a, b = a + p, b + p @ f.centre
        return np.linalg.lstsq(a, b, rcond=None)[0]

    def scaled(self, factor: float) -> Rig:
        """The same rig for its images resized by about ``factor`` to even sizes (video codecs want them): each
        axis scaled by its own exact ratio (pixel-centre convention), poses and lens kept."""
        frames = []
        for f in self.frames:
            w, h = max(2, 2 * round(f.w * factor / 2)), max(2, 2 * round(f.h * factor / 2))
            sx, sy = w / f.w, h / f.h
            frames.append(RigCamera(f.name, w, h, f.fx * sx, f.fy * sy, f.cx * sx, f.cy * sy, f.skew * sx,
                                    list(f.dist), f.w2c.copy()))
        return Rig(self.units, frames)

    def to_dict(self) -> dict:
        return {"units": self.units, "frames": [f.to_frame() for f in self.frames]}


def write_rig(rig: Rig, path: str | Path) -> Path:
    """Write ``rig.json`` atomically."""
    return write_json(path, rig.to_dict())


def read_rig(path: str | Path) -> Rig:
    """Read and check ``rig.json``; every problem is an `InputError` naming the file and the frame."""
    path = Path(path)
    doc = read_json(path, "rig file")
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list) or not doc["frames"]:
        raise InputError(path, 'expected an object with "units" and a non-empty "frames" list')
    if not isinstance(doc.get("units"), str) or not doc["units"]:
        raise InputError(path, '"units" must be a non-empty string such as "mm"')
    return Rig(doc["units"], [frame_to_camera(f, path, f"frame {i}") for i, f in enumerate(doc["frames"])])


def frame_to_camera(frame, path, where: str) -> RigCamera:
    """One checked `RigCamera` from a ``rig.json`` frame dict (``skew`` and ``dist`` may be absent: zero)."""
    if not isinstance(frame, dict):
        raise InputError(path, f"{where} is not an object")
    missing = [k for k in FRAME_KEYS if k not in frame and k not in ("skew", "dist")]
    if missing:
        raise InputError(path, f"{where} lacks {', '.join(missing)}")
    if not isinstance(frame["name"], str) or not frame["name"]:
        raise InputError(path, f"{where}: name must be a non-empty string")
    for key in ("w", "h"):
        if not _is_number(frame[key]) or frame[key] != int(frame[key]) or frame[key] < 1:
            raise InputError(path, f"{where}: {key} must be a positive integer, got {frame[key]!r}")
    for key in ("fx", "fy", "cx", "cy", "skew"):
        if key in frame and not _is_number(frame[key]):
            raise InputError(path, f"{where}: {key} must be a finite number, got {frame[key]!r}")
    if frame["fx"] <= 0 or frame["fy"] <= 0:
        raise InputError(path, f"{where}: focal lengths must be positive, got fx={frame['fx']} fy={frame['fy']}")
    dist = frame.get("dist", [0.0] * 5)
    if not isinstance(dist, list) or len(dist) != 5 or not all(_is_number(d) for d in dist):
        raise InputError(path, f"{where}: dist must be five finite numbers k1, k2, p1, p2, k3, got {dist!r}")
    return RigCamera(frame["name"], int(frame["w"]), int(frame["h"]), float(frame["fx"]), float(frame["fy"]),
                     float(frame["cx"]), float(frame["cy"]), float(frame.get("skew", 0.0)),
                     [float(d) for d in dist], check_w2c(frame["w2c"], path, where))


def check_w2c(value, path, where: str) -> np.ndarray:
    """A rigid, right-handed 4x4 world-to-camera matrix as float64, or an `InputError` saying what is wrong."""
    try:
        m = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(path, f"{where}: w2c must be a 4x4 matrix of numbers") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise InputError(path, f"{where}: w2c must be a finite 4x4 matrix, got shape {m.shape}")
    if np.abs(m[3] - [0, 0, 0, 1]).max() > 1e-6:
        raise InputError(path, f"{where}: w2c last row is {m[3].tolist()}, expected [0, 0, 0, 1]")
    det = np.linalg.det(m[:3, :3])
    err = np.abs(m[:3, :3].T @ m[:3, :3] - np.eye(3)).max()
    if det <= 0 or err > RIGID_TOLERANCE:
        raise InputError(path, f"{where}: w2c rotation is not a rotation (determinant {det:.3g}, "
                               f"max |R^T R - I| {err:.3g}); expected a rigid OpenCV world-to-camera transform")
    return m


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
