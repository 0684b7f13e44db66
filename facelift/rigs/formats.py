"""Calibration formats read into a `Rig` (and Anipose's written back): Label3D/DANNCE ``.mat``, Anipose
``calibration.toml``, FaceLift's ``opencv_cameras.json``.

Pixel origins differ between the tools and are converted to the project's (pixel (i, j)'s centre at
(i + 0.5, j + 0.5)):
- Label3D is MATLAB: its K is MATLAB's ``cameraParameters.IntrinsicMatrix`` layout (transposed, skew at K[1, 0])
  in MATLAB's intrinsic coordinates, where the first pixel's centre is (1, 1): project = MATLAB - 0.5. The file
  itself cannot show the origin (its ``data_2d`` are ``data_3d`` projected with the same K, so they agree for any
  origin); MATLAB's convention is the one its K was estimated in.
- Anipose (aniposelib) is OpenCV: pixel centres on integers, project = OpenCV + 0.5.
- FaceLift's ``opencv_cameras.json`` already uses the project's convention (`facelift.cameras`), no distortion.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import cv2
import numpy as np

from facelift.atomic import write_text
from facelift.data.camera_json import read_camera_file, read_json
from facelift.errors import InputError
from facelift.rigs.lens import OPENCV_TO_PROJECT
from facelift.rigs.rig import Rig, RigCamera, check_w2c, read_rig

FORMATS = ("auto", "label3d", "anipose", "facelift")
MATLAB_TO_PROJECT = -0.5  # add to a MATLAB (1-based) pixel coordinate to get the project's


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return "label3d"
    if suffix == ".toml":
        return "anipose"
    if suffix == ".json":
        return "facelift"
    raise InputError(path, f"cannot tell the calibration format from the suffix {suffix!r}; pass --format "
                           f"({', '.join(FORMATS[1:])})")


def read_calibration(path: str | Path, fmt: str = "auto", image_size: tuple[int, int] | None = None,
                     units: str | None = None) -> Rig:
    """Any supported calibration file -> `Rig` (``image_size`` (w, h): required by Label3D, which stores none)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "calibration file not found")
    if fmt not in FORMATS:
        raise InputError(path, f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "label3d":
        rig = read_label3d(path, image_size)
    elif fmt == "anipose":
        rig = read_anipose(path)
    else:
        rig = read_facelift(path)
    if image_size is not None and fmt != "label3d":
        sizes = {(f.w, f.h) for f in rig.frames}
        if sizes != {tuple(image_size)}:
            raise InputError(path, f"--image-size {image_size[0]} {image_size[1]} disagrees with the file's image "
                                   f"sizes {sorted(sizes)}")
    if units is not None:
        rig.units = units
    return rig


# --------------------------------------------------------------------------------------------------- Label3D
def read_label3d(path: Path, image_size: tuple[int, int] | None) -> Rig:
    """Label3D/DANNCE ``.mat``: ``camnames`` and ``params`` (K transposed with skew, row-vector ``X @ r + t``,
    ``RDistort`` 2 or 3 radial terms, ``TDistort`` 2 tangential terms)."""
    if image_size is None:
        raise InputError(path, "Label3D files hold no image size: pass --image-size W H (1152 1024 for DANNCE's "
                               "markerless_mouse_1)")
    w, h = (int(s) for s in image_size)
    if w < 1 or h < 1:
        raise InputError(path, f"--image-size must be positive, got {w} {h}")
    import scipy.io  # only this format needs it

    try:
        mat = scipy.io.loadmat(str(path))
    except (ValueError, OSError, NotImplementedError, TypeError) as err:
        raise InputError(path, f"not a readable MATLAB file ({err})") from None
    if "params" not in mat:
        raise InputError(path, "no 'params' variable: not a Label3D/DANNCE calibration")
    params = [p for p in np.asarray(mat["params"], dtype=object).ravel()]
    names = [_matlab_string(n) for n in np.asarray(mat.get("camnames", []), dtype=object).ravel()]
    if names and len(names) != len(params):
        raise InputError(path, f"{len(names)} camnames for {len(params)} cameras in params")
    names = names or [f"Camera{i + 1}" for i in range(len(params))]
    frames = [_label3d_camera(p, names[i], w, h, path, f"params[{i}] ({names[i]})") for i, p in enumerate(params)]
    if not frames:
        raise InputError(path, "'params' holds no camera")
    return Rig("mm", frames)


def _label3d_camera(p, name: str, w: int, h: int, path: Path, where: str) -> RigCamera:
    p = np.asarray(p).ravel()[0] if np.asarray(p).dtype == object else p
    p = p.ravel()[0] if getattr(p, "ndim", 0) else p
    fields = getattr(p.dtype, "names", None) or ()
    missing = [k for k in ("K", "r", "t") if k not in fields]
    if missing:
        raise InputError(path, f"{where} lacks {', '.join(missing)}")
    k, r, t = (np.asarray(p[key], dtype=np.float64) for key in ("K", "r", "t"))
    if k.shape != (3, 3) or r.shape != (3, 3) or t.size != 3 or not all(np.isfinite(a).all() for a in (k, r, t)):
        raise InputError(path, f"{where}: K and r must be finite 3x3, t 1x3; got {k.shape}, {r.shape}, {t.shape}")
    radial = np.asarray(p["RDistort"], dtype=np.float64).ravel() if "RDistort" in fields else np.zeros(0)
    tangential = np.asarray(p["TDistort"], dtype=np.float64).ravel() if "TDistort" in fields else np.zeros(0)
    if radial.size not in (0, 2, 3) or tangential.size not in (0, 2):
        raise InputError(path, f"{where}: RDistort must have 2 or 3 terms and TDistort 2, got {radial.size} and "
                               f"{tangential.size}")
    radial, tangential = np.pad(radial, (0, 3 - radial.size)), np.pad(tangential, (0, 2 - tangential.size))
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = r.T, t.ravel()  # X @ r + t  ==  r^T X + t for column vectors
    w2c = check_w2c(w2c, path, where)
    # K stored transposed: [fx 0 0; skew fy 0; cx cy 1]
    return RigCamera(name, w, h, float(k[0, 0]), float(k[1, 1]), float(k[2, 0]) + MATLAB_TO_PROJECT,
                     float(k[2, 1]) + MATLAB_TO_PROJECT, float(k[1, 0]),
                     [float(radial[0]), float(radial[1]), float(tangential[0]), float(tangential[1]),
                      float(radial[2])], w2c)


def _matlab_string(value) -> str:
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.ravel()[0]
    return str(np.asarray(value).ravel()[0]) if isinstance(value, np.ndarray) else str(value)


# --------------------------------------------------------------------------------------------------- Anipose
def read_anipose(path: Path) -> Rig:
    """aniposelib's ``calibration.toml``: ``[cam_N]`` tables with name, size [w, h], matrix, distortions
    (k1 k2 p1 p2 k3), rotation (Rodrigues), translation; ``[metadata]`` ignored. Cameras in N's order."""
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid TOML ({err})") from None
    keys = [k for k in doc if k.startswith("cam_") and isinstance(doc[k], dict)]
    if not keys:
        raise InputError(path, "no [cam_N] table: not an Anipose calibration")
    try:
        keys.sort(key=lambda k: int(k[4:]))  # cam_10 after cam_9, not after cam_1
    except ValueError:
        keys.sort()
    return Rig("mm", [_anipose_camera(doc[k], k, path) for k in keys])


def _anipose_camera(cam: dict, key: str, path: Path) -> RigCamera:
    missing = [k for k in ("size", "matrix", "rotation", "translation") if k not in cam]
    if missing:
        raise InputError(path, f"[{key}] lacks {', '.join(missing)}")
    if cam.get("fisheye"):
        raise InputError(path, f"[{key}] is a fisheye camera; only OpenCV's standard lens model is supported")
    try:
        size = [int(s) for s in cam["size"]]
        k = np.array(cam["matrix"], dtype=np.float64)
        dist = np.array(cam.get("distortions", [0.0] * 5), dtype=np.float64).ravel()
        rvec = np.array(cam["rotation"], dtype=np.float64).ravel()
        tvec = np.array(cam["translation"], dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InputError(path, f"[{key}]: size, matrix, distortions, rotation and translation must be numbers")
    if len(size) != 2 or min(size) < 1 or k.shape != (3, 3) or rvec.size != 3 or tvec.size != 3 \
            or not 0 <= dist.size <= 5 or not all(np.isfinite(a).all() for a in (k, dist, rvec, tvec)):
        raise InputError(path, f"[{key}]: expected size [w, h], a finite 3x3 matrix, at most 5 distortions, "
                               f"3 rotation and 3 translation values")
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = cv2.Rodrigues(rvec)[0], tvec
    return RigCamera(str(cam.get("name", key)), size[0], size[1], float(k[0, 0]), float(k[1, 1]),
                     float(k[0, 2]) + OPENCV_TO_PROJECT, float(k[1, 2]) + OPENCV_TO_PROJECT, float(k[0, 1]),
                     [float(d) for d in np.pad(dist, (0, 5 - dist.size))], check_w2c(w2c, path, f"[{key}]"))


def write_anipose(rig: Rig, path: str | Path) -> Path:
    """Write ``rig`` in aniposelib's layout (skew kept in matrix[0][1]; aniposelib's own OpenCV projection
    ignores it). Floats as Python's shortest round-trip repr, so reading back is exact."""
    lines = []
    for i, f in enumerate(rig.frames):
        rvec = cv2.Rodrigues(f.w2c[:3, :3])[0].ravel()
        cx, cy = f.cx - OPENCV_TO_PROJECT, f.cy - OPENCV_TO_PROJECT
        matrix = [[f.fx, f.skew, cx], [0.0, f.fy, cy], [0.0, 0.0, 1.0]]
        lines += [f"[cam_{i}]", f"name = {json.dumps(f.name)}", f"size = {_toml_list([f.w, f.h])}",
                  f"matrix = [ {', '.join(_toml_list(row) for row in matrix)},]",
                  f"distortions = {_toml_list(f.dist)}", f"rotation = {_toml_list(rvec)}",
                  f"translation = {_toml_list(f.w2c[:3, 3])}", ""]
    lines += ["[metadata]", "adjusted = false", ""]
    return write_text(path, "\n".join(lines))


def _toml_list(values) -> str:
    return "[ " + ", ".join(repr(v) if isinstance(v, int) else repr(float(v)) for v in values) + ",]"


# --------------------------------------------------------------------------------------------------- FaceLift
def read_facelift(path: Path) -> Rig:
    """FaceLift's ``opencv_cameras.json`` (pinhole, no distortion; an optional per-frame ``skew``); a ``rig.json``
    (it has ``units``) is read as it is. Names: the frame's ``name``, else its image file's stem, else cam_NNN."""
    doc = read_json(path, "camera file")
    if isinstance(doc, dict) and "units" in doc:
        return read_rig(path)
    cams = read_camera_file(path, need_file_path=False)
    w2c = cams.cameras.w2c.numpy()
    frames = []
    for i, (frame, (fx, fy, cx, cy)) in enumerate(zip(cams.frames, cams.cameras.intrinsics.tolist())):
        name = frame.get("name") or (Path(frame["file_path"]).stem if frame.get("file_path") else f"cam_{i:03d}")
        frames.append(RigCamera(str(name), cams.cameras.width, cams.cameras.height, fx, fy, cx, cy,
                                float(frame.get("skew", 0.0)), [0.0] * 5, w2c[i].copy()))
    return Rig("unit", frames)
