"""scripts/view.py: the splat arrays viser gets, the camera file beside a PLY, and the page in a real browser."""

import math
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from facelift.cameras import Cameras, look_at
from facelift.data.camera_json import read_camera_file
from facelift.data.synthetic.blob_scenes import mouse_rig, mouse_scene
from facelift.errors import InputError
from facelift.gaussians import SH_C0, Gaussians, load_ply, save_ply
from facelift.image_io import image_grid, read_image
from facelift.render import render
from facelift.viewer import FRUSTUM_COLOR, _wxyz, cameras_beside, find_plys, splat_arrays, write_view_cameras

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "fixtures" / "facelift_sample" / "gslrm" / "sample_000"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def one_gaussian(quat, log_scales, rgb=(0.2, 0.6, 0.9), opacity_logit=0.0) -> Gaussians:
    sh = (torch.tensor(rgb) - 0.5) / SH_C0
    return Gaussians(torch.zeros(1, 1, 3), torch.tensor([[quat]], dtype=torch.float32),
                     torch.tensor([[log_scales]], dtype=torch.float32), torch.tensor([[opacity_logit]]),
                     sh.reshape(1, 1, 1, 3))


def test_splat_arrays_covariance_colour_opacity_by_hand():
    # 90 deg about z (w = x... = cos/sin 45): x -> y, so the x scale ends on the y axis: cov = diag(b^2, a^2, c^2)
    a, b, c = 0.1, 0.2, 0.3
    s = math.sqrt(0.5)
    arrays = splat_arrays(one_gaussian([s, 0, 0, s], [math.log(a), math.log(b), math.log(c)], opacity_logit=0.0))
    np.testing.assert_allclose(arrays["covariances"][0], np.diag([b * b, a * a, c * c]), atol=1e-7)
    np.testing.assert_allclose(arrays["rgbs"][0], [0.2, 0.6, 0.9], atol=1e-6)
    np.testing.assert_allclose(arrays["opacities"][0], [0.5])  # sigmoid(0)
    assert arrays["centers"].shape == (1, 3)


def test_frustum_pose_quaternion_matches_scipy():
    for rot in Rotation.random(20, random_state=0):
        x, y, z, w = rot.as_quat()  # scipy is scalar-last
        q = _wxyz(rot.as_matrix())
        assert abs(abs(float(np.dot(q, [w, x, y, z]))) - 1) < 1e-9  # the same rotation (q and -q alike)


def test_camera_file_beside_the_ply_round_trips(tmp_path):
    eye = torch.tensor([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5]], dtype=torch.float64)
    c2w = look_at(eye, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    cams = Cameras(c2w, torch.tensor([[100.0, 110.0, 32.0, 30.0]] * 2, dtype=torch.float64), 64, 60)
    save_ply(tmp_path / "gaussians.ply", one_gaussian([1, 0, 0, 0], [-3, -3, -3]))
    assert cameras_beside(tmp_path / "gaussians.ply") is None
    write_view_cameras(tmp_path / "input_cameras.json", cams)
    back = cameras_beside(tmp_path / "gaussians.ply")
    torch.testing.assert_close(back.c2w, c2w)
    torch.testing.assert_close(back.intrinsics, cams.intrinsics)
    assert (back.width, back.height) == (64, 60)


def test_find_plys_names_the_problem(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        find_plys(tmp_path / "missing.ply")
    with pytest.raises(InputError, match="no .ply file"):
        find_plys(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="expected a .ply"):
        find_plys(tmp_path / "notes.txt")
    for name in ("b/gaussians.ply", "a/gaussians.ply"):
        (tmp_path / name).parent.mkdir()
        save_ply(tmp_path / name, one_gaussian([1, 0, 0, 0], [-3, -3, -3]))
    assert find_plys(tmp_path) == [tmp_path / "a/gaussians.ply", tmp_path / "b/gaussians.ply"]


@pytest.mark.slow
def test_bad_path_is_one_line_and_status_2(tmp_path):
    run = subprocess.run([sys.executable, "scripts/view.py", str(tmp_path / "none.ply")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "none.ply" in run.stderr


def mouse_reconstruction(folder: Path) -> None:
    """A synthetic mouse (its Gaussians as GS-LRM would write them) and the six cameras that saw it."""
    gen = torch.Generator().manual_seed(3)
    save_ply(folder / "gaussians.ply", mouse_scene(gen))
    write_view_cameras(folder / "input_cameras.json", mouse_rig(gen)[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(url: str, out: Path, budget_ms: int) -> np.ndarray:
    """The page after ``budget_ms`` of virtual time in headless Chromium (software WebGL), as [H, W, 3] uint8."""
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                    "--hide-scrollbars", "--window-size=960,640", f"--virtual-time-budget={budget_ms}",
                    f"--screenshot={out}", url], capture_output=True, timeout=180, check=True)
    return np.asarray(Image.open(out).convert("RGB")).astype(np.int32)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium for a real browser (apt-get install chromium)")
def test_viewer_page_shows_the_splats_and_the_frusta(tmp_path):
    mouse_reconstruction(tmp_path)
    port = free_port()
    server = subprocess.Popen([sys.executable, "scripts/view.py", str(tmp_path), "--port", str(port)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while not any(line.startswith("viewer: http://localhost:") for line in lines):
            line = server.stdout.readline()
            assert line and time.monotonic() < deadline, f"viewer did not start: {''.join(lines)}"
            lines.append(line)
        url = next(line for line in lines if line.startswith("viewer: ")).split()[1]
        assert url == f"http://localhost:{port}"
        for budget_ms in (20000, 60000):  # a busy machine may need more (virtual) time for the scene to arrive
            img = screenshot(url, tmp_path / "viewer.png", budget_ms)
            h, w, _ = img.shape
            background = np.median(img[h - 40:h - 5, w // 2:w - 5].reshape(-1, 3), axis=0)  # an empty corner
            # the cloud sits in the middle of the first view; the GUI panel is top right, the axes bottom left
            middle = img[h // 3:2 * h // 3, w // 3:2 * w // 3]
            splat = np.abs(middle - background).sum(-1) > 60  # [h/3, w/3] pixels unlike the background
            orange = np.abs(img - np.array(FRUSTUM_COLOR)).max(-1) < 40  # [H, W] frustum lines
            if splat.mean() > 0.02 and orange.sum() > 200:
                break
        assert splat.mean() > 0.02, f"no splat in the middle of the page ({splat.sum()} pixels)"
        assert orange.sum() > 200, f"no camera frusta ({orange.sum()} orange pixels)"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_infer_writes_the_cameras_its_ply_was_seen_with_and_prints_the_view_command(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "infer.py", f"input={SAMPLE}", f"paths.root_dir={tmp_path}",
                          f"output_dir={out}", f"hydra.run.dir={tmp_path / 'run'}", "gslrm.random={d:64,d_head:16,"
                          "n_layer:2}", "allow_random_init=true", "model_size=64", "gslrm.input_views=[0,8,16,24]",
                          "turntable.frames=2", "turntable.size=32", "device=cpu"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"view the Gaussians: python scripts/view.py {out}" in run.stdout.splitlines()
    folder = out / "sample_000"
    cameras = read_camera_file(folder / "input_cameras.json", need_file_path=False).cameras  # [4]
    # independent of the file's writer: the PLY rendered from these cameras is output.png (rendered from GS-LRM's
    # own input cameras), so the file holds the cameras of the views, in the frame of the PLY beside it
    rgb = render(load_ply(folder / "gaussians.ply"), cameras.to(torch.float32)[None], 1.0, backend="torch").rgb[0]
    assert len(cameras) == 4 and (image_grid(rgb.clamp(0, 1)) - read_image(folder / "output.png")).abs().mean() < 0.01
