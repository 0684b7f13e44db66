"""Turn a reconstruction around in the browser: viser's Gaussian-splat node, the input cameras as frusta.

`python scripts/view.py PATH.ply|FOLDER [--port 8080]` serves every ``*.ply`` found (a folder of eval or infer
outputs holds one ``gaussians.ply`` per sample; a menu switches between them) and prints the URL. It renders in the
browser (WebGL), so the machine that serves needs no GPU. The input cameras are drawn when a camera file lies
beside the PLY: ``input_cameras.json`` (written by eval.py and infer.py) or a sample's ``opencv_cameras.json``.
"""

from __future__ import annotations

import argparse
import math
import socket
from pathlib import Path

import numpy as np
import torch

from facelift.cameras import Cameras
from facelift.data.camera_json import CAMERA_FILE, cameras_to_frames, read_camera_file, write_camera_file
from facelift.errors import InputError
from facelift.gaussians import Gaussians, load_ply
from facelift.render.projection import quat_to_rotmat

VIEW_CAMERAS = "input_cameras.json"  # GS-LRM's input cameras, in the frame of the gaussians.ply beside it
CAMERA_FILES = (VIEW_CAMERAS, CAMERA_FILE)  # looked for beside a PLY, first found wins
FRUSTUM_COLOR = (230, 90, 40)  # orange: stands out from both the dark and the light splats


def write_view_cameras(path: str | Path, cameras: Cameras) -> Path:
    """Write cameras [V] (the frame of the Gaussians they saw) as a camera file without image paths."""
    frames = cameras_to_frames(cameras.to("cpu"), [""] * len(cameras))
    return write_camera_file(path, [{k: v for k, v in f.items() if k != "file_path"} for f in frames])


def view_command(path: str | Path) -> str:
    """The command that opens ``path`` (a PLY or a folder of them) in the viewer, for entry points to print."""
    return f"python scripts/view.py {path}"


def find_plys(path: str | Path) -> list[Path]:
    """The PLY itself, or every ``*.ply`` under a folder (sorted); none is an `InputError`."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".ply":
            raise InputError(path, "expected a .ply file or a folder holding some")
        return [path]
    if not path.is_dir():
        raise InputError(path, "no such file or folder")
    plys = sorted(path.rglob("*.ply"))
    if not plys:
        raise InputError(path, "no .ply file in this folder")
    return plys


def cameras_beside(ply: Path) -> Cameras | None:
    """The cameras [V] of the first camera file beside ``ply``, or None."""
    for name in CAMERA_FILES:
        if (ply.parent / name).is_file():
            return read_camera_file(ply.parent / name, need_file_path=False).cameras
    return None


def splat_arrays(gaussians: Gaussians) -> dict[str, np.ndarray]:
    """Cloud 0 as viser's splat node takes it: centers [N, 3], covariances [N, 3, 3], rgbs [N, 3], opacities [N, 1]."""
    g = gaussians[0:1].detach().to("cpu", torch.float32)
    rs = quat_to_rotmat(g.quats[0]) * g.scales[0][:, None, :]  # [N, 3, 3] R diag(s): covariance = (R S)(R S)^T
    return {"centers": g.means[0].numpy(), "covariances": (rs @ rs.transpose(1, 2)).numpy(),
            "rgbs": g.base_colors[0].clamp(0, 1).numpy(), "opacities": g.opacities[0, :, None].numpy()}


def _wxyz(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a 3x3 rotation, as viser poses take it."""
    w = math.sqrt(max(0.0, 1.0 + np.trace(rot))) / 2.0
    x = math.copysign(math.sqrt(max(0.0, 1.0 + rot[0, 0] - rot[1, 1] - rot[2, 2])) / 2.0, rot[2, 1] - rot[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1.0 - rot[0, 0] + rot[1, 1] - rot[2, 2])) / 2.0, rot[0, 2] - rot[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1.0 - rot[0, 0] - rot[1, 1] + rot[2, 2])) / 2.0, rot[1, 0] - rot[0, 1])
    return np.array([w, x, y, z])


def _add_cloud(server, name: str, ply: Path, visible: bool) -> tuple[object, np.ndarray, float, Cameras | None]:
    """Add one PLY (and its cameras) under the frame ``/name``; returns that frame, the cloud's centre and radius
    and the cameras."""
    arrays = splat_arrays(load_ply(ply))
    frame = server.scene.add_frame(f"/{name}", show_axes=False, visible=visible)
    server.scene.add_gaussian_splats(f"/{name}/splats", **arrays)
    centers = arrays["centers"]
    center = np.median(centers, axis=0)
    radius = float(np.quantile(np.linalg.norm(centers - center, axis=1), 0.95)) or 1.0
    cameras = cameras_beside(ply)
    if cameras is not None:
        c2w = cameras.c2w.double().numpy()  # [V, 4, 4] OpenCV axes, as viser's frusta are
        fy = cameras.intrinsics[:, 1].double().numpy()  # [V]
        for i in range(len(cameras)):
            server.scene.add_camera_frustum(
                f"/{name}/cameras/{i:02d}", fov=2 * math.atan(cameras.height / (2 * fy[i])),
                aspect=cameras.width / cameras.height, scale=0.15 * radius, thickness=0.01 * radius,
                color=FRUSTUM_COLOR, wxyz=_wxyz(c2w[i, :3, :3]), position=c2w[i, :3, 3])
    return frame, center, radius, cameras


def serve(path: str | Path, port: int = 8080, host: str = "0.0.0.0"):
    """Start the viewer on ``path`` (a PLY or a folder); returns the running `viser.ViserServer`."""
    import viser  # the viewer's own dependency: nothing else in facelift needs it

    plys = find_plys(path)
    root = Path(path) if Path(path).is_dir() else plys[0].parent
    names = [ply.relative_to(root).with_suffix("").as_posix().replace("/", "_") for ply in plys]
    server = viser.ViserServer(host=host, port=port, verbose=False)
    # one cloud shown at a time: a folder of samples would otherwise draw them on top of each other
    clouds = [_add_cloud(server, name, ply, i == 0) for i, (name, ply) in enumerate(zip(names, plys))]
    _, center, radius, cameras = clouds[0]
    if cameras is not None:  # world up and a first view from the input cameras: the reconstruction as it was seen
        up = cameras.up.double().mean(0).numpy()  # [3] the rig's up: the cameras' ups average to it
        up /= np.linalg.norm(up)
        server.scene.set_up_direction(tuple(up))
        # from above the first input camera: the cloud in the middle, the other frusta around it
        away = cameras.centers[0].double().numpy() - center
        server.initial_camera.position = center + 1.1 * away + 0.5 * np.linalg.norm(away) * up
    else:
        server.initial_camera.position = center + radius * np.array([2.5, 2.5, 2.5])
    server.initial_camera.look_at = center
    if len(plys) > 1:
        menu = server.gui.add_dropdown("reconstruction", options=names, initial_value=names[0])

        @menu.on_update
        def _(_event) -> None:
            for name, (frame, *_) in zip(names, clouds):
                frame.visible = name == menu.value

    return server


def viewer_url(server) -> str:
    """The address to open: this machine's name for a server on every interface."""
    host = server.get_host()
    return f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{server.get_port()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Open a gaussians.ply (or a folder of eval/infer outputs) in "
                                                 "the browser.")
    parser.add_argument("path", help="a .ply file or a folder holding some (searched recursively)")
    parser.add_argument("--port", type=int, default=8080, help="port of the web viewer")
    parser.add_argument("--host", default="0.0.0.0", help="interface to listen on (0.0.0.0: every interface)")
    args = parser.parse_args(argv)
    server = serve(args.path, args.port, args.host)
    print(f"viewer: {viewer_url(server)}  (on another machine: ssh -L {args.port}:localhost:{args.port} "
          f"{socket.gethostname()}, then open http://localhost:{args.port}); Ctrl+C stops it", flush=True)
    try:
        server.sleep_forever()
    except KeyboardInterrupt:
        server.stop()
