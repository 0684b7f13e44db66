"""Synthetic mice recorded through the DANNCE rig: true size against the fixture's hand labels, the lens path against
the rig's own projection, a tiny recording through import_recordings.py, and the lab's foreground fraction."""

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import torch

from facelift.data.synthetic.mouse import mouse_gaussians
from facelift.data.synthetic.rig_recording import (
    MOUSE_MM, RigRecordingConfig, generate_rig_recording, load_trajectory, make_animal, nose_to_tail_base,
    posed_length, trajectory_poses)
from facelift.image_io import read_image
from facelift.rigs import lens
from facelift.rigs.formats import read_calibration

from conftest import FIXTURES, REPO

MAT = FIXTURES / "real_rigs" / "markerless_mouse_1_label3d_dannce.mat"


def _rig():
    return read_calibration(MAT, image_size=(1152, 1024))


def test_the_animal_has_a_mouses_size_and_the_labelled_mouses_length():
    shape, base, scale, length = make_animal(RigRecordingConfig(), "mm")
    assert length == MOUSE_MM and nose_to_tail_base(shape, base) * scale == pytest.approx(MOUSE_MM, rel=1e-6)
    # body width from the Gaussians themselves (not the recipe): ~0.3 of the length, a mouse's ~22-27 mm
    g = mouse_gaussians(shape, base, 20000, torch.Generator().manual_seed(0))
    means = g.means[0].double().numpy() * scale
    along = means @ np.array([np.cos(base.heading), np.sin(base.heading), 0.0])
    side = means @ np.array([-np.sin(base.heading), np.cos(base.heading), 0.0])
    middle = np.abs(along - np.median(along)) < 5
    assert 18 < np.ptp(side[middle]) < 30
    # posed along the real walk, snout to tail base as a labeller measures it: within the fixture's labels
    labels = scipy.io.loadmat(str(MAT))["labelData"].ravel()[0][0, 0]["data_3d"].reshape(-1, 22, 3)
    labelled = np.linalg.norm(labels[:, 0] - labels[:, 5], axis=1)  # DANNCE mouse22: 0 Snout, 5 Tail base
    lo, hi = np.nanpercentile(labelled, [10, 90])
    poses = trajectory_poses(load_trajectory(MAT)[:6000], 100.0, length, base)
    posed = np.median([posed_length(shape, p) * scale for p in poses[::200]])
    assert lo < posed < hi and abs(posed - np.nanmedian(labelled)) < 5


def test_a_pinhole_image_drawn_through_the_lens_lands_where_the_rig_projects():
    """The generator's path (pinhole canvas -> `distort_maps`, OpenCV's inverse) against the rig's forward model
    (`Rig.project`, OpenCV's projectPoints): a dot rendered in the canvas appears where the rig puts the point."""
    f = _rig().scaled(0.25).frames[1]
    pad = lens.pinhole_cover(vars(f))
    src = {"fx": f.fx, "fy": f.fy, "cx": f.cx + pad[0], "cy": f.cy + pad[1]}
    cw, ch = f.w + pad[0] + pad[2], f.h + pad[1] + pad[3]
    maps = lens.distort_maps(src, vars(f))
    centre = -f.w2c[:3, :3].T @ f.w2c[:3, 3]
    for xn in ([0.25, 0.2], [-0.3, -0.22], [0.02, 0.01]):  # near the corners (strong distortion) and the centre
        point = centre + f.w2c[:3, :3].T @ (np.array([*xn, 1.0]) * 300)
        cam = f.w2c[:3, :3] @ point + f.w2c[:3, 3]
        u, v = src["fx"] * cam[0] / cam[2] + src["cx"], src["fy"] * cam[1] / cam[2] + src["cy"]
        yy, xx = np.mgrid[0:ch, 0:cw] + 0.5
        canvas = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5 ** 2)).astype(np.float32)
        image = lens.remap(canvas, maps)
        yy, xx = np.mgrid[0:f.h, 0:f.w] + 0.5
        seen = np.array([(xx * image).sum(), (yy * image).sum()]) / image.sum()
        np.testing.assert_allclose(seen, f.project(point[None])[0][0], atol=0.1)


@pytest.mark.slow
def test_a_tiny_recording_goes_through_import_recordings(tmp_path):
    """Fresh-clone-like: the two CLIs as a user runs them; each written camera sees the trajectory's animal centre
    inside its written mask (walking frames, where the real centre is on the body)."""
    (tmp_path / "rig").mkdir()
    run = lambda *args: subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,  # noqa
                                       cwd=REPO, timeout=600)
    rig = run(REPO / "scripts" / "import_rig.py", MAT, "--out", tmp_path / "rig", "--image-size", 1152, 1024)
    assert rig.returncode == 0, rig.stderr
    syn = tmp_path / "syn"
    made = run(REPO / "scripts" / "make_mouse_set.py", "--rig", tmp_path / "rig" / "rig.json", "--trajectory", MAT,
               "--frames", "4400:6000:400", "--scale", 0.125, "--gaussians", 2000, "--out", syn)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (syn / "VIDEOS").iterdir()) == [f"Camera{i}.mp4" for i in range(1, 7)]
    report = json.loads((syn / "generation.json").read_text())
    assert report["frames"] == 4 and report["image_size"] == [144, 128]
    raw = tmp_path / "raw"
    imported = run(REPO / "scripts" / "import_recordings.py", "--rig", syn / "rig.json", "--videos", syn / "VIDEOS",
                   "--masks", syn / "MASKS", "--out", raw, "--size", 48, "--split", 0.5, 0.25, 0.25)
    assert imported.returncode == 0, imported.stderr
    assert [line.strip() for line in (raw / "data_train.txt").read_text().splitlines()] == [
        "sample_000000", "sample_000001"]  # the recording's frames 0 and 1 (trajectory 4400, 4800)
    com = load_trajectory(MAT)
    for k, t in enumerate((4400, 4800, 5200, 5600)):  # walking frames: com3d at 13-14 mm
        doc = json.loads((raw / f"sample_{k:06d}" / "opencv_cameras.json").read_text())
        for frame in doc["frames"]:
            alpha = read_image(raw / f"sample_{k:06d}" / frame["file_path"])[3].numpy()
            w2c = np.array(frame["w2c"])
            cam = w2c[:3, :3] @ com[t] + w2c[:3, 3]
            u, v = frame["fx"] * cam[0] / cam[2] + frame["cx"], frame["fy"] * cam[1] / cam[2] + frame["cy"]
            assert 0 <= u < 48 and 0 <= v < 48
            window = alpha[max(0, int(v) - 3):int(v) + 4, max(0, int(u) - 3):int(u) + 4]
            assert window.max() > 0.5, (k, frame["name"])  # the animal's centre is on the animal


@pytest.mark.slow
def test_foreground_fraction_at_full_resolution_is_the_labs(tmp_path):
    """Two frames far apart of the real walk at the rig's full 1152 x 1024: every view's mask in the lab's range."""
    report = generate_rig_recording(tmp_path, _rig(), load_trajectory(MAT),
                                    RigRecordingConfig(frames="2000:18000:8000", batch_size=1))
    fg = report["foreground_fraction"]
    assert report["image_size"] == [1152, 1024] and report["frames"] == 2
    assert fg["views_in_range"] == 6, fg["per_view"]
    assert 0.015 < fg["mean"] < 0.035
