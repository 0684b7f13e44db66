"""The lens model of real rigs: OpenCV's radial + tangential distortion (k1, k2, p1, p2, k3) and a skewed K.

Pixel convention (the project's, `facelift.cameras`): pixel (i, j) covers [i, i+1) x [j, j+1), its centre is at
(i + 0.5, j + 0.5). OpenCV puts pixel centres on integers, so `cv2.remap` maps are the project's coordinates
minus 0.5. OpenCV's own projection ignores K's skew entry, so the distortion is applied by OpenCV on normalized
coordinates (identity K) and the skewed K afterwards, here.
"""

from __future__ import annotations

import cv2
import numpy as np

OPENCV_TO_PROJECT = 0.5  # add to an OpenCV pixel coordinate (centres on integers) to get the project's


def distort(xn: np.ndarray, dist) -> np.ndarray:
    """Normalized undistorted coordinates ``[N, 2]`` -> distorted ones ``[N, 2]`` (OpenCV's model, float64)."""
    xn = np.asarray(xn, dtype=np.float64).reshape(-1, 2)
    if not np.any(dist):
        return xn.copy()
    pts = np.concatenate([xn, np.ones((len(xn), 1))], axis=1).reshape(-1, 1, 3)
    out, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), np.eye(3), np.asarray(dist, dtype=np.float64))
    return out.reshape(-1, 2)


def undistort(xd: np.ndarray, dist) -> np.ndarray:
    """Distorted normalized coordinates ``[N, 2]`` -> undistorted ones (OpenCV's iterative inverse, run to 1e-14)."""
    xd = np.asarray(xd, dtype=np.float64).reshape(-1, 1, 2)
    if not np.any(dist):
        return xd.reshape(-1, 2).copy()
    dist = np.asarray(dist, dtype=np.float64)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
        out = cv2.undistortPointsIter(xd, np.eye(3), dist, None, None, criteria)
    else:  # OpenCV 5 took the criteria into undistortPoints
        out = cv2.undistortPoints(xd, np.eye(3), dist, None, None, criteria=criteria)
    return out.reshape(-1, 2)


def apply_k(xd: np.ndarray, fx: float, fy: float, cx: float, cy: float, skew: float = 0.0) -> np.ndarray:
    """Normalized coordinates ``[N, 2]`` -> pixels ``[N, 2]``: u = fx x + skew y + cx, v = fy y + cy."""
    return np.stack([fx * xd[:, 0] + skew * xd[:, 1] + cx, fy * xd[:, 1] + cy], axis=1)


def invert_k(uv: np.ndarray, fx: float, fy: float, cx: float, cy: float, skew: float = 0.0) -> np.ndarray:
    """Pixels ``[N, 2]`` -> normalized coordinates ``[N, 2]`` (the inverse of `apply_k`)."""
    y = (uv[:, 1] - cy) / fy
    return np.stack([(uv[:, 0] - cx - skew * y) / fx, y], axis=1)


def undistort_maps(src: dict, dst: dict) -> tuple[np.ndarray, np.ndarray]:
    """`cv2.remap` maps ``[h, w]`` float32 (x, y) that draw the image of camera ``src`` (keys fx, fy, cx, cy, skew,
    dist) as seen by the distortion-free pinhole ``dst`` (keys w, h, fx, fy, cx, cy) with the same pose."""
    v, u = np.mgrid[0:dst["h"], 0:dst["w"]].astype(np.float64)
    uv = np.stack([u.ravel() + 0.5, v.ravel() + 0.5], axis=1)  # output pixel centres, project convention
    xn = invert_k(uv, dst["fx"], dst["fy"], dst["cx"], dst["cy"])
    xd = distort(xn, src["dist"])
    suv = apply_k(xd, src["fx"], src["fy"], src["cx"], src["cy"], src.get("skew", 0.0)) - OPENCV_TO_PROJECT
    return (suv[:, 0].reshape(dst["h"], dst["w"]).astype(np.float32),
            suv[:, 1].reshape(dst["h"], dst["w"]).astype(np.float32))


def distort_maps(src: dict, dst: dict) -> tuple[np.ndarray, np.ndarray]:
    """`cv2.remap` maps ``[h, w]`` that draw the image of the pinhole ``src`` (keys fx, fy, cx, cy) as seen by the
    distorting camera ``dst`` (keys w, h, fx, fy, cx, cy, skew, dist) with the same pose: what a lens does to a
    rendered pinhole image. ``src`` must cover ``dst``'s field of view (see `pinhole_cover`)."""
    v, u = np.mgrid[0:dst["h"], 0:dst["w"]].astype(np.float64)
    uv = np.stack([u.ravel() + 0.5, v.ravel() + 0.5], axis=1)
    xn = undistort(invert_k(uv, dst["fx"], dst["fy"], dst["cx"], dst["cy"], dst.get("skew", 0.0)), dst["dist"])
    suv = apply_k(xn, src["fx"], src["fy"], src["cx"], src["cy"]) - OPENCV_TO_PROJECT
    return (suv[:, 0].reshape(dst["h"], dst["w"]).astype(np.float32),
            suv[:, 1].reshape(dst["h"], dst["w"]).astype(np.float32))


def pinhole_cover(cam: dict, margin: int = 2) -> tuple[int, int, int, int]:
    """Pixels (left, top, right, bottom) to add to a pinhole of ``cam``'s size, focal lengths and principal point so
    that it sees everything the distorting camera ``cam`` sees (from the undistorted image of its border)."""
    w, h = cam["w"], cam["h"]
    e = np.linspace(0, 1, 65)
    zero, one = np.zeros_like(e), np.ones_like(e)
    border = np.concatenate([np.stack([e, zero], 1), np.stack([e, one], 1), np.stack([zero, e], 1),
                             np.stack([one, e], 1)]) * [w, h]  # [260, 2] along the image's edges
    xn = undistort(invert_k(border, cam["fx"], cam["fy"], cam["cx"], cam["cy"], cam.get("skew", 0.0)), cam["dist"])
    uv = apply_k(xn, cam["fx"], cam["fy"], cam["cx"], cam["cy"])
    lo, hi = np.floor(uv.min(0)).astype(int) - margin, np.ceil(uv.max(0)).astype(int) + margin
    return max(0, int(-lo[0])), max(0, int(-lo[1])), max(0, int(hi[0] - w)), max(0, int(hi[1] - h))


def remap(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray], nearest: bool = False) -> np.ndarray:
    """Resample ``image`` [H, W(, C)] through `undistort_maps`; outside the source image becomes 0."""
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
