"""Rig import: the DANNCE fixture's labels reproduce through the imported rig (directly and via Anipose's format),
Anipose's layout and rotation convention, FaceLift's camera files, and the CLI's outputs and refusals."""

import functools
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import scipy.io
import torch
from scipy.spatial.transform import Rotation

from facelift.errors import InputError
from facelift.rigs.formats import MATLAB_TO_PROJECT, read_calibration, write_anipose
from facelift.rigs.rig import Rig, RigCamera, read_rig, write_rig

from conftest import FIXTURES, REPO

MAT = FIXTURES / "real_rigs" / "markerless_mouse_1_label3d_dannce.mat"
M5 = FIXTURES / "real_rigs" / "lab_m5_cameras.json"
SIZE = (1152, 1024)


@functools.lru_cache(maxsize=1)
def _labels() -> tuple[np.ndarray, list[np.ndarray]]:
    """The fixture's 3D labels [N, 3] and each camera's 2D labels [N, 2] (MATLAB pixel coordinates)."""
    label = scipy.io.loadmat(str(MAT))["labelData"].ravel()
    points = label[0][0, 0]["data_3d"].reshape(-1, 3)
    return points, [cam[0, 0]["data_2d"].reshape(-1, 2) for cam in label]


def _reprojection_errors(rig: Rig) -> list[float]:
    points, labels = _labels()
    uv, depth = rig.project(points)
    medians = []
    for v, ref in enumerate(labels):
        ok = np.isfinite(ref).all(1) & np.isfinite(points).all(1)
        assert ok.sum() > 1000 and (depth[v][ok] > 0).all()
        # data_2d are MATLAB pixels (first pixel's centre at 1, 1); the rig's are the project's (at 0.5, 0.5)
        medians.append(float(np.median(np.linalg.norm(uv[v][ok] - MATLAB_TO_PROJECT - ref[ok], axis=1))))
    return medians


def test_label3d_rig_reproduces_the_hand_labels_in_every_camera():
    rig = read_calibration(MAT, image_size=SIZE)
    assert rig.names == [f"Camera{i}" for i in range(1, 7)] and rig.units == "mm"
    assert all((f.w, f.h) == SIZE for f in rig.frames)
    assert all(f.skew != 0 and any(f.dist) for f in rig.frames)  # the lens model is really exercised
    assert max(_reprojection_errors(rig)) < 1e-3
    # the fixture's README: cameras 246-415 mm from the origin, Z up
    dist = [np.linalg.norm(f.centre) for f in rig.frames]
    assert 240 < min(dist) and max(dist) < 420
    assert all(f.up[2] > 0.9 for f in rig.frames)


def test_the_labels_only_fit_with_the_lens_model_and_the_skew():
    rig = read_calibration(MAT, image_size=SIZE)
    no_lens = Rig(rig.units, [RigCamera(f.name, f.w, f.h, f.fx, f.fy, f.cx, f.cy, f.skew, [0.0] * 5, f.w2c)
                              for f in rig.frames])
    no_skew = Rig(rig.units, [RigCamera(f.name, f.w, f.h, f.fx, f.fy, f.cx, f.cy, 0.0, f.dist, f.w2c)
                              for f in rig.frames])
    assert min(_reprojection_errors(no_lens)) > 0.1
    assert max(_reprojection_errors(no_skew)) > 1e-2


def test_anipose_round_trip_keeps_the_reprojection(tmp_path):
    rig = read_calibration(MAT, image_size=SIZE)
    path = write_anipose(rig, tmp_path / "calibration.toml")
    back = read_calibration(path)
    assert back.names == rig.names
    assert max(_reprojection_errors(back)) < 1e-3


def test_anipose_layout_is_aniposelibs(tmp_path):
    rig = read_calibration(MAT, image_size=SIZE)
    doc = tomllib.loads(write_anipose(rig, tmp_path / "calibration.toml").read_text())
    assert [k for k in doc if k.startswith("cam_")] == [f"cam_{i}" for i in range(6)] and "metadata" in doc
    cam, f = doc["cam_2"], rig.frames[2]
    assert cam["name"] == "Camera3" and cam["size"] == [1152, 1024]
    # OpenCV K: pixel centres on integers, so the project's cx is half a pixel more
    assert cam["matrix"][0][2] == pytest.approx(f.cx - 0.5) and cam["matrix"][1][1] == pytest.approx(f.fy)
    assert cam["distortions"] == pytest.approx(f.dist)
    # rotation is the Rodrigues vector of the world-to-camera rotation (scipy as the independent reference)
    np.testing.assert_allclose(Rotation.from_rotvec(cam["rotation"]).as_matrix(), f.w2c[:3, :3], atol=1e-12)
    np.testing.assert_allclose(cam["translation"], f.w2c[:3, 3])


def test_anipose_cameras_are_ordered_by_number(tmp_path):
    frames = [RigCamera(f"c{i}", 64, 48, 50.0, 50.0, 32.0, 24.0, w2c=np.eye(4)) for i in range(12)]
    path = write_anipose(Rig("mm", frames), tmp_path / "calibration.toml")
    text = path.read_text()
    blocks = text.split("[metadata]")[0].strip().split("\n\n")
    (tmp_path / "shuffled.toml").write_text("\n\n".join(reversed(blocks)) + "\n")
    assert read_calibration(tmp_path / "shuffled.toml").names == [f"c{i}" for i in range(12)]


def test_facelift_camera_file_projects_as_the_project_cameras():
    from facelift.data.camera_json import read_camera_file

    rig = read_calibration(M5)
    cams = read_camera_file(M5, need_file_path=False).cameras
    points = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.0, 0.0], [-0.3, 0.1, 0.2]], dtype=torch.float64)
    uv, _ = cams.project(points[None].expand(len(cams), -1, -1))
    np.testing.assert_allclose(rig.project(points.numpy())[0], uv.numpy(), atol=1e-9)
    assert len(rig.frames) == 6 and rig.frames[0].w == 512


def test_rig_json_round_trip(tmp_path):
    rig = read_calibration(MAT, image_size=SIZE)
    back = read_rig(write_rig(rig, tmp_path / "rig.json"))
    assert back.to_dict() == rig.to_dict()
    assert max(_reprojection_errors(back)) < 1e-3


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d.pop("units"), "units"),
    (lambda d: d["frames"][1].update(dist=[0.1, 0.2]), "frame 1: dist"),
    (lambda d: d["frames"][0].update(fx=-3.0), "focal lengths"),
    (lambda d: d["frames"][2]["w2c"][0].__setitem__(0, 5.0), "frame 2: w2c"),
    (lambda d: d["frames"][0].pop("name"), "lacks name"),
])
def test_bad_rig_json_names_the_file_and_frame(tmp_path, edit, problem):
    doc = read_calibration(MAT, image_size=SIZE).to_dict()
    edit(doc)
    path = tmp_path / "rig.json"
    path.write_text(__import__("json").dumps(doc))
    with pytest.raises(InputError, match=problem) as err:
        read_rig(path)
    assert str(path) in str(err.value)


def test_label3d_without_image_size_is_refused():
    with pytest.raises(InputError, match="--image-size"):
        read_calibration(MAT)


@pytest.mark.slow
def test_cli_writes_rig_and_report_and_refuses_a_missing_size(tmp_path):
    script = str(REPO / "scripts" / "import_rig.py")
    ok = subprocess.run([sys.executable, script, str(MAT), "--out", str(tmp_path / "rig"), "--image-size", "1152",
                         "1024"], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert max(_reprojection_errors(read_rig(tmp_path / "rig" / "rig.json"))) < 1e-3
    assert (tmp_path / "rig" / "rig_report.png").stat().st_size > 10_000
    bad = subprocess.run([sys.executable, script, str(MAT), "--out", str(tmp_path / "bad")], capture_output=True,
                         text=True, cwd=REPO)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and str(MAT) in bad.stderr
    assert not (tmp_path / "bad").exists()
