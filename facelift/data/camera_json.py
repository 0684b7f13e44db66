"""`opencv_cameras.json`: FaceLift's per-sample camera file — schema check, reading into `Cameras`, writing.

The file is ``{"id": ..., "frames": [{w, h, fx, fy, cx, cy, w2c, file_path, ...}, ...]}``: one frame per view,
``w2c`` a 4x4 world-to-camera rigid transform in the OpenCV convention, ``file_path`` relative to the sample folder.
Other fields (``view_id``, ``blender_camera_name``, ...) are kept verbatim. An optional top-level ``"up": [x, y, z]``
gives the world up of the rig (used by rig normalization instead of estimating it).
Every problem is an `InputError` naming the file and the frame.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from facelift.atomic import write_json
from facelift.cameras import Cameras
from facelift.errors import InputError

CAMERA_FILE = "opencv_cameras.json"
CAMERA_KEYS = ("w", "h", "fx", "fy", "cx", "cy", "w2c", "file_path")  # the fields every frame must have
RIGID_TOLERANCE = 1e-3  # max |R^T R - I| accepted for a w2c rotation (calibrations carry small noise)


@dataclass
class CameraFile:
    path: Path
    cameras: Cameras  # [V] float64, in file order
    frames: list[dict]  # the raw frame dicts (extra fields included)
    header: dict  # top-level fields other than "frames" (e.g. "id", "up")

    @property
    def up(self) -> Tensor | None:  # [3] the rig's world up when the file gives one
        return None if "up" not in self.header else torch.tensor(self.header["up"], dtype=torch.float64)

    def image_path(self, view: int) -> Path:
        return self.path.parent / self.frames[view]["file_path"]


def read_json(path: Path, what: str) -> object:
    """The JSON document in ``path``; a missing file or one that is not JSON is an `InputError` naming it (``what``:
    the kind of file, for the message)."""
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None


def read_camera_file(path: str | Path, need_file_path: bool = True) -> CameraFile:
    """Read and validate a camera file; every frame must describe an image of the same size.

    ``need_file_path=False`` accepts frames without ``file_path``: a rig without images, such as FaceLift's
    inference cameras (utils_folder/opencv_cameras.json)."""
    path = Path(path)
    doc = read_json(path, "camera file")
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list) or not doc["frames"]:
        raise InputError(path, 'expected an object with a non-empty "frames" list')
    header = {k: v for k, v in doc.items() if k != "frames"}
    if "up" in header:
        _check_vector(path, header["up"], '"up"')
    frames = doc["frames"]
    return CameraFile(path, frames_to_cameras(frames, path, need_file_path), frames, header)


def frames_to_cameras(frames: list, path: str | Path | None = None, need_file_path: bool = True) -> Cameras:
    """Validate frame dicts and turn them into float64 `Cameras` [V]."""
    w2c, intrinsics, sizes = [], [], set()
    for i, frame in enumerate(frames):
        where = f"frame {i}"
        if not isinstance(frame, dict):
            raise InputError(path, f"{where} is not an object")
        missing = [k for k in CAMERA_KEYS if k not in frame and (need_file_path or k != "file_path")]
        if missing:
            raise InputError(path, f"{where} lacks {', '.join(missing)}")
        for key in ("w", "h"):
            value = frame[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
                raise InputError(path, f"{where}: {key} must be a positive integer, got {value!r}")
        for key in ("fx", "fy", "cx", "cy"):
            if not _is_finite_number(frame[key]):
                raise InputError(path, f"{where}: {key} must be a finite number, got {frame[key]!r}")
        if frame["fx"] <= 0 or frame["fy"] <= 0:
            raise InputError(path, f"{where}: focal lengths must be positive, got fx={frame['fx']} fy={frame['fy']}")
        if "file_path" in frame and (not isinstance(frame["file_path"], str) or not frame["file_path"]):
            raise InputError(path, f"{where}: file_path must be a non-empty string")
        w2c.append(_check_w2c(path, where, frame["w2c"]))
        intrinsics.append([float(frame[k]) for k in ("fx", "fy", "cx", "cy")])
        sizes.add((int(frame["w"]), int(frame["h"])))
    if len(sizes) != 1:
        raise InputError(path, f"frames describe images of different sizes {sorted(sizes)}; one size per sample")
    (width, height), = sizes
    return Cameras.from_w2c(torch.stack(w2c), torch.tensor(intrinsics, dtype=torch.float64), width, height)


def cameras_to_frames(cameras: Cameras, file_paths: list[str], extra: list[dict] | None = None) -> list[dict]:
    """Frame dicts for cameras [V] (float64 values kept as they are); ``extra`` adds per-frame fields."""
    if cameras.c2w.dim() != 3 or len(cameras) != len(file_paths):
        raise ValueError(f"need cameras [V] and V file paths, got {tuple(cameras.batch_shape)} and {len(file_paths)}")
    if extra is not None and len(extra) != len(file_paths):
        raise ValueError(f"extra has {len(extra)} entries for {len(file_paths)} frames")
    frames = []
    w2c = cameras.w2c.double().tolist()
    for i, (fx, fy, cx, cy) in enumerate(cameras.intrinsics.double().tolist()):
        fields = {k: v for k, v in (extra[i] if extra else {}).items() if k not in CAMERA_KEYS}
        frames.append({"w": cameras.width, "h": cameras.height, "fx": fx, "fy": fy, "cx": cx, "cy": cy,
                       "w2c": w2c[i], "file_path": file_paths[i], **fields})
    return frames


def write_camera_file(path: str | Path, frames: list[dict], header: dict | None = None) -> Path:
    """Write a camera file atomically (a reader never sees half a file)."""
    return write_json(path, {**(header or {}), "frames": frames})


def _is_finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_vector(path, value, name: str) -> None:
    if not isinstance(value, list) or len(value) != 3 or not all(_is_finite_number(x) for x in value) \
            or not any(value):
        raise InputError(path, f"{name} must be three finite numbers, not all zero; got {value!r}")


def _check_w2c(path, where: str, value) -> Tensor:  # [4, 4] float64
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(r, list) and len(r) == 4 for r in value)):
        raise InputError(path, f"{where}: w2c must be a 4x4 list of lists")
    if not all(_is_finite_number(x) for row in value for x in row):
        raise InputError(path, f"{where}: w2c holds a non-finite or non-numeric entry (NaN, inf, text)")
    m = torch.tensor(value, dtype=torch.float64)
    if (m[3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)).abs().max() > 1e-6:
        raise InputError(path, f"{where}: w2c last row is {m[3].tolist()}, expected [0, 0, 0, 1]")
    rot = m[:3, :3]
    det = torch.linalg.det(rot).item()
    if abs(det) < 1e-6:
        raise InputError(path, f"{where}: w2c is singular (rotation determinant {det:.3g})")
    if det < 0:
        raise InputError(path, f"{where}: w2c rotation is a reflection (determinant {det:.3g}); "
                               "expected a right-handed OpenCV camera")
    error = (rot.T @ rot - torch.eye(3, dtype=torch.float64)).abs().max().item()
    if error > RIGID_TOLERANCE:
        raise InputError(path, f"{where}: w2c rotation is not orthonormal (max |R^T R - I| = {error:.3g}); "
                               "expected a rigid world-to-camera transform")
    return m
