"""Pose Splatter side by side: its input format written from a recording (cameras that project a known point where
this project's do, masks and frames that line up), the torch_scatter shim against hand-worked scatter_min
results, the one protocol that scores every method on the same frame/camera list, and bad input in one line.

The camera file is read back here as Pose Splatter's code documents its layout (HDF5 group camera_parameters:
rotation, translation, intrinsic; x = K (R X + t)) and its orientation rule (the world turned so that minus the
stored up lies on +z), re-implemented with scipy, not with the code under test. When a checkout of its repository
is named by POSE_SPLATTER_REPO, its own reader is run on the files too, and (slow) its CPU steps.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.spatial.transform import Rotation

from facelift.cameras import look_at
from facelift.errors import InputError
from facelift.image_io import read_image, write_image
from facelift.peers import pose_splatter as ps
from facelift.peers.protocol import (comparison_figure, make_protocol, read_protocol, render_path, score_folder,
                                     truth_view, write_protocol, write_split_lists, write_tables)
from facelift.peers.shims.torch_scatter import scatter_min
from facelift.rigs.importer import ImportConfig, import_recordings
from facelift.rigs.rig import Rig, RigCamera, write_rig

from conftest import REPO

W, H, RADIUS, FRAMES = 64, 48, 25.0, 9  # image size, sphere radius (mm), recorded frames
PS_REPO = os.environ.get("POSE_SPLATTER_REPO")


# ------------------------------------------------------------------------------------------ the tiny recording
def _rig() -> Rig:
    """Four upright distorting cameras ~300 mm from the arena (world up +z). Not three: its camera reader's
    ``np.linalg.solve(rotation, translation)`` takes a [3, 3] right-hand side as one matrix under NumPy 2 and then
    scales the world by another number; with 4 or 6 cameras it solves camera by camera."""
    eyes = [(300.0, 0.0, 90.0), (-150.0, 260.0, 70.0), (-150.0, -260.0, 120.0), (0.0, 280.0, 150.0)]
    dists = [[-0.2, 0.1, 0.001, -0.002, 0.0], [-0.1, 0.02, 0.0, 0.001, 0.0], [0.05, -0.01, 0.0, 0.0, 0.0],
             [-0.15, 0.05, 0.0, 0.0, 0.0]]
    frames = []
    for i, (eye, dist) in enumerate(zip(eyes, dists)):
        c2w = look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor([0.0, 0.0, 20.0], dtype=torch.float64),
                      torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).numpy()
        frames.append(RigCamera(f"Cam{i}", W, H, 100.0 + 3 * i, 101.0, 33.0 - i, 23.0 + i, 0.0, dist,
                                np.linalg.inv(c2w)))
    return Rig("mm", frames)


def _centre(t: int) -> np.ndarray:
    angle = 2 * np.pi * t / FRAMES
    return np.array([40.0 * np.cos(angle), 40.0 * np.sin(angle), 25.0])


def _hits(dirs_cam: np.ndarray, w2c: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Which camera rays (directions [N, 3] in camera space) pass within RADIUS of ``centre``."""
    d = dirs_cam @ w2c[:3, :3]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = -w2c[:3, :3].T @ w2c[:3, 3]
    along = (centre - o) @ d.T
    return np.linalg.norm(o + along[:, None] * d - centre, axis=1) < RADIUS


def _silhouette(f: RigCamera, centre: np.ndarray, distorted: bool) -> np.ndarray:
    """[h, w] mask of the sphere through camera ``f`` (OpenCV's inverse lens model for a distorted one)."""
    v, u = np.mgrid[0:f.h, 0:f.w] + 0.5
    xy = np.stack([(u - f.cx) / f.fx, (v - f.cy) / f.fy], -1).reshape(-1, 1, 2)
    if distorted:
        xy = cv2.undistortPoints(xy, np.eye(3), np.array(f.dist))
    xy = xy.reshape(-1, 2)
    return _hits(np.concatenate([xy, np.ones((len(xy), 1))], 1), f.w2c, centre).reshape(f.h, f.w)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The sphere recorded as PNG folders, imported (RAW), its protocol, and its Pose Splatter export."""
    root = tmp_path_factory.mktemp("rec")
    rig = _rig()
    write_rig(rig, root / "rig.json")
    for f in rig.frames:
        for t in range(FRAMES):
            m = _silhouette(f, _centre(t), distorted=True)
            img = np.full((H, W, 3), 90, np.uint8)
            img[m] = (220, 40, 30)
            write_image(root / "videos" / f.name / f"{t:04d}.png", img)
            write_image(root / "masks" / f.name / f"{t:04d}.png", (m * 255).astype(np.uint8))
    import_recordings(ImportConfig(rig=root / "rig.json", videos=root / "videos", masks=root / "masks",
                                   out=root / "raw", size=32))
    protocol = make_protocol(root / "raw", holdout=3, size=16)
    write_protocol(protocol, root / "protocol.json")
    config = ps.export(protocol, root / "rig.json", root / "videos", root / "masks", root / "ps",
                       ps.ExportConfig(scale=0.5))
    return {"root": root, "rig": rig, "protocol": protocol, "config": config}


def _read_cameras(path: Path):
    """Pose Splatter's camera file, read by its documented layout: (K [C, 3, 3], R [C, 3, 3], t [C, 3])."""
    with h5py.File(path, "r") as f:
        g = f["camera_parameters"]
        return np.asarray(g["intrinsic"]), np.asarray(g["rotation"]), np.asarray(g["translation"])


# ------------------------------------------------------------------------------------------ format writer
def test_cameras_round_trip_project_a_point_where_the_projects_do(recording):
    k, r, t = _read_cameras(recording["root"] / "ps" / "project" / ps.CAMERAS)
    assert k.shape == (4, 3, 3) and r.shape == (4, 3, 3) and t.shape == (4, 3)
    point = np.array([12.0, -7.0, 31.0])
    pinholes = ps.scaled_pinholes(recording["rig"], 0.5)
    offset = np.mean([p.centre for p in pinholes], axis=0)  # written with the cameras' mean at the origin
    meta = json.loads((recording["root"] / "ps" / "project" / "frames.json").read_text())
    np.testing.assert_allclose(meta["world_offset"], offset)
    for i, f in enumerate(pinholes):
        x = k[i] @ (r[i] @ (point - offset) + t[i])
        theirs = x[:2] / x[2]
        ours, _ = f.to_cameras().project(torch.tensor(point)[None, None])
        np.testing.assert_allclose(theirs, ours[0, 0].numpy(), atol=1e-9)
        # the scaled camera is the full one's with both image axes scaled by the exact size ratio (32/64, 24/48)
        full_uv, _ = recording["rig"].frames[i].pinhole().to_cameras().project(torch.tensor(point)[None, None])
        np.testing.assert_allclose(theirs, full_uv[0, 0].numpy() * 0.5, atol=1e-9)


@pytest.mark.parametrize("world_up", [(0.0, 0.0, 1.0), (0.0, -0.34, 0.94), (0.6, 0.0, -0.8), (0.0, 1.0, 0.0)])
def test_written_up_is_turned_onto_plus_z_by_its_orientation_rule(world_up):
    world_up = np.array(world_up) / np.linalg.norm(world_up)
    stored = ps.up_vector(world_up)
    # its rule: u = -stored; R2 = the shortest rotation taking +z onto u; cameras R -> R R2^T, so X -> R2 X
    r2 = Rotation.align_vectors([-stored], [[0.0, 0.0, 1.0]])[0].as_matrix()
    np.testing.assert_allclose(r2 @ world_up, [0.0, 0.0, 1.0], atol=1e-9)


def test_frames_and_masks_line_up_with_the_written_cameras(recording):
    root, protocol = recording["root"], recording["protocol"]
    k, r, t = _read_cameras(root / "ps" / "project" / ps.CAMERAS)
    offset = np.array(json.loads((root / "ps" / "project" / "frames.json").read_text())["world_offset"])
    config = json.loads((root / "ps" / "project" / ps.CONFIG).read_text())
    assert (config["image_width"], config["image_height"], config["image_downsample"]) == (32, 24, 1)
    assert config["holdout_views"] == [3] and config["frame_jump"] == 1
    ious = []
    for i, frame in enumerate(protocol.frames):
        for c in range(4):
            mask = cv2.imread(str(Path(config["data_directory"]) / (config["mask_video_fns"][c] % i)),
                              cv2.IMREAD_GRAYSCALE) > 127
            rgb = cv2.imread(str(Path(config["data_directory"]) / (config["video_fns"][c] % i)))[..., ::-1]
            pinhole = RigCamera("c", 32, 24, k[c][0, 0], k[c][1, 1], k[c][0, 2], k[c][1, 2], 0.0, [0.0] * 5,
                                np.vstack([np.c_[r[c], t[c]], [0, 0, 0, 1]]))
            expected = _silhouette(pinhole, _centre(frame) - offset, distorted=False)
            ious.append((mask & expected).sum() / (mask | expected).sum())
            red = (rgb[..., 0] > 150) & (rgb[..., 1] < 110)
            assert (red & mask).sum() >= 0.8 * mask.sum()  # the colour frame shows the animal where the mask is
    assert min(ious) > 0.7 and np.mean(ious) > 0.85


# ------------------------------------------------------------------------------------------ torch_scatter shim
def test_scatter_min_shim_matches_hand_worked_results():
    src = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 2.0])
    index = torch.tensor([0, 0, 1, 1, 3, 3])
    init = torch.full((5,), float("inf"))
    out, arg = scatter_min(src, index, out=init)
    assert out is init  # written in place, as torch_scatter does with out=
    assert out.tolist() == [1.0, 1.0, math.inf, 2.0, math.inf]
    assert arg.tolist() == [1, 3, 6, 5, 6]  # nothing scattered: src.size(0)
    out, arg = scatter_min(torch.tensor([2.0, 2.0, 7.0]), torch.tensor([0, 0, 1]), out=torch.tensor([9.0, 0.0]))
    assert out.tolist() == [2.0, 0.0] and arg.tolist() == [0, 3]  # a tie: the first; out's own smaller value: none
    out, arg = scatter_min(torch.tensor([5.0, 3.0]), torch.tensor([2, 2]))
    assert out.tolist() == [0.0, 0.0, 3.0] and arg.tolist() == [2, 2, 1]  # no out: empty positions read 0


def test_scatter_min_shim_picks_one_front_voxel_per_pixel_as_its_visibility_test_needs():
    distances = torch.tensor([5.0, 2.0, 9.0, 4.0, 4.5, 1.0])
    pixel = torch.tensor([7, 7, 7, 2, 2, 0])
    out, arg = scatter_min(distances, pixel, out=distances.new_full((10,), float("inf")))
    visible = (torch.arange(6) == arg[pixel]) & (out[pixel] < float("inf"))
    assert visible.tolist() == [False, True, False, True, False, True]


# ------------------------------------------------------------------------------------------ the protocol
def test_protocol_thirds_and_lists(recording, tmp_path):
    protocol = recording["protocol"]
    assert protocol.frames == list(range(9)) and protocol.num_cameras == 4
    assert (protocol.train_frames, protocol.val_frames, protocol.test_frames) == ([0, 1, 2], [3, 4, 5], [6, 7, 8])
    assert protocol.views() == [(f, c) for f in (6, 7, 8) for c in (0, 1, 2, 3)]
    write_split_lists(protocol)
    raw = Path(protocol.raw)
    assert (raw / "data_test.txt").read_text().split() == ["sample_000006", "sample_000007", "sample_000008"]
    assert read_protocol(recording["root"] / "protocol.json") == protocol


def test_both_methods_are_scored_on_the_same_views(recording, tmp_path):
    protocol = recording["protocol"]
    for frame in protocol.test_frames:
        truth, _ = truth_view(protocol, frame)
        for c in range(4):
            write_image(render_path(tmp_path / "exact", frame, c), truth[c])
            write_image(render_path(tmp_path / "empty", frame, c), torch.ones(4, 16, 16) * torch.tensor(
                [1.0, 1.0, 1.0, 0.0])[:, None, None])
    records = score_folder(protocol, tmp_path / "exact", "exact") + score_folder(protocol, tmp_path / "empty", "empty")
    views = {m: [(r["frame"], r["camera"]) for r in records if r["method"] == m] for m in ("exact", "empty")}
    assert views["exact"] == views["empty"] == protocol.views()
    exact = [r for r in records if r["method"] == "exact"]
    assert all(r["iou"] == 1.0 and r["l1"] < 2e-3 and r["psnr_fg"] > 45 for r in exact)
    empty = [r for r in records if r["method"] == "empty"]
    assert all(r["iou"] == 0.0 and r["coverage"] == 0.0 and math.isnan(r["precision"]) for r in empty)
    assert {r["group"] for r in records if r["camera"] == 3} == {"holdout"}
    assert {r["group"] for r in records if r["camera"] != 3} == {"input"}
    content = write_tables(records, tmp_path / "table")
    assert [(row["method"], row["group"], row["views"]) for row in content["summary"]] == [
        ("exact", "holdout", 3), ("exact", "input", 9), ("empty", "holdout", 3), ("empty", "input", 9)]
    assert (tmp_path / "table" / "comparison.md").read_text().count("\n") == 6
    figure = read_image(comparison_figure(protocol, {"exact": tmp_path / "exact"}, tmp_path / "f.png"))
    assert figure.shape == (3, 2 * 256, 4 * 256)  # truth | exact, 4 cameras, 16 px views shown at 256
    np.testing.assert_allclose(figure[:, 256 + 40:, 40:256], figure[:, 40:256, 40:256], atol=1 / 255)  # the same


def test_its_full_frame_renders_are_resampled_into_the_protocols_views(recording, tmp_path):
    """A render of the sphere drawn for its scaled full-frame camera, warped into a test view's crop camera,
    matches the sphere's silhouette drawn for that crop camera directly."""
    protocol, rig = recording["protocol"], recording["rig"]
    frame = protocol.test_frames[0]
    _, cams = truth_view(protocol, frame)
    pinholes = ps.scaled_pinholes(rig, 0.5)
    for c in range(4):
        fine = RigCamera("f", 32 * 8, 24 * 8, *(v * 8 for v in (pinholes[c].fx, pinholes[c].fy, pinholes[c].cx,
                                                                  pinholes[c].cy)), 0.0, [0.0] * 5, rig.frames[c].w2c)
        m = _silhouette(fine, _centre(frame), distorted=False).astype(np.float32)
        rgba = np.concatenate([np.stack([np.ones_like(m), 1 - 0.8 * m, 1 - 0.8 * m], -1), m[..., None]], -1)  # red
        source = (fine.fx, fine.fy, fine.cx, fine.cy)
        out = ps.warp_to_view(rgba, source, cams.intrinsics[c].tolist(), 16)
        fx, fy, cx, cy = cams.intrinsics[c].double().tolist()
        crop = RigCamera("c", 16, 16, fx, fy, cx, cy, 0.0, [0.0] * 5, rig.frames[c].w2c)
        expected = _silhouette(crop, _centre(frame), distorted=False)
        drawn = out[..., 3] > 0.5
        assert (drawn & expected).sum() / (drawn | expected).sum() > 0.8
        # over white, the opacity-weighted colour averaged: green = 1 - 0.8 alpha at every pixel, edges included
        np.testing.assert_allclose(out[..., 1], 1 - 0.8 * out[..., 3], atol=1e-5)
        assert out[..., 3].max() > 0.99


def test_collect_reads_its_render_file_back_into_the_protocols_views(recording, tmp_path):
    """A perfect Pose Splatter (its renders = its own frames, alpha = its masks) in its evaluation's layout
    (rendered_images.h5 [frames, C, h, w, 4] uint8, metrics_test.csv) comes back aligned with the protocol's truth."""
    root, protocol = recording["root"], recording["protocol"]
    project = tmp_path / "project"
    project.mkdir()
    for name in (ps.CONFIG, ps.CAMERAS):
        (project / name).write_bytes((root / "ps" / "project" / name).read_bytes())
    config = recording["config"]
    data = Path(config["data_directory"])
    renders = np.zeros((len(protocol.frames), 4, 24, 32, 4), np.uint8)
    for i in range(len(protocol.frames)):
        for c in range(4):
            rgb = cv2.imread(str(data / (config["video_fns"][c] % i)))[..., ::-1]
            mask = cv2.imread(str(data / (config["mask_video_fns"][c] % i)), cv2.IMREAD_GRAYSCALE)
            renders[i, c] = np.concatenate([np.where(mask[..., None] > 127, rgb, 255), mask[..., None]], -1)
    (project / "images").mkdir()
    with h5py.File(project / "images" / "rendered_images.h5", "w") as f:
        f["images"] = renders
    own = np.array([[0.9, 0.1, 30.0, 0.88, 0.95]] * 4)  # its columns, sorted: iou, l1, psnr, soft_iou, ssim
    np.savetxt(project / "metrics_test.csv", own, delimiter=",", header="\t".join(["iou", "l1", "psnr", "soft_iou",
                                                                                   "ssim"]), fmt="%.6f")
    notes = ps.collect(protocol, project, tmp_path / "renders")
    assert notes["pose_splatter_own_metrics"][3] == {"iou": 0.9, "l1": 0.1, "psnr": 30.0, "soft_iou": 0.88,
                                                     "ssim": 0.95}
    records = score_folder(protocol, tmp_path / "renders", "pose_splatter")
    assert [(r["frame"], r["camera"]) for r in records] == protocol.views()
    assert np.mean([r["iou"] for r in records]) > 0.85 and min(r["iou"] for r in records) > 0.75  # seen: 0.91, 0.86


# ------------------------------------------------------------------------------------------ bad input
def test_missing_checkout_is_one_sentence(tmp_path, capsys, recording):
    sys.path.insert(0, str(REPO / "scripts" / "peers"))
    try:
        import pose_splatter as script
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit) as exit_:
        script.main(["run", "--out", str(recording["root"] / "ps"), "--repo", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "git clone https://github.com/jackgoffinet/pose-splatter" in err


def test_too_few_frames_for_its_chunks_is_one_line(tmp_path, capsys, recording, monkeypatch):
    sys.path.insert(0, str(REPO / "scripts" / "peers"))
    try:
        import pose_splatter as script
    finally:
        sys.path.pop(0)
    for name in ps.REPO_FILES:  # a stand-in checkout: the run stops before any of it is started
        (tmp_path / "repo" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "repo" / name).touch()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    with pytest.raises(SystemExit) as exit_:
        script.main(["run", "--out", str(recording["root"] / "ps"), "--repo", str(tmp_path / "repo")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "9 frames for 16 cores" in err


def test_wrong_camera_count_is_refused(recording, tmp_path):
    rig = _rig()
    write_rig(Rig("mm", rig.frames[:3]), tmp_path / "rig.json")
    with pytest.raises(InputError, match="has 3 cameras"):
        ps.export(recording["protocol"], tmp_path / "rig.json", recording["root"] / "videos",
                  recording["root"] / "masks", tmp_path / "ps")
    with pytest.raises(InputError, match="held-out camera 4"):
        make_protocol(recording["protocol"].raw, holdout=4, size=16)


def test_volume_idx_spans_the_carved_slices_in_multiples_of_16():
    volume = np.zeros((64, 64, 64), int)
    volume[20:30, 5:40, 50:60] = 10  # carved in 10 of 10 frames
    volume[0, 0, 0] = 1  # carved once: under a threshold of 20 % of the frames
    # axis 0: slices 20-29 -> 16 about their middle 25 -> 17-33; axis 1: 5-39 (35) -> 48 from -2, kept in: 0-48
    assert ps.volume_idx(volume, 10, 0.2) == [[17, 33], [0, 48], [47, 63]]
    assert ps.volume_idx(volume, 10, 0.0)[0] == [0, 32]  # the once-carved corner voxel counts at threshold 0


# ------------------------------------------------------------------------------------------ its own code
@pytest.mark.skipif(not PS_REPO, reason="POSE_SPLATTER_REPO (a checkout of jackgoffinet/pose-splatter) not set")
def test_its_own_reader_sees_our_cameras(recording):
    """Its get_cam_params on the written files: a world point, moved into its normalized frame (the cameras' mean
    at the origin, the farthest camera at 1, up on +z), projects to the pixel this project's camera gives."""
    sys.path.insert(0, PS_REPO)
    try:
        from src.utils import get_cam_params
    finally:
        sys.path.pop(0)
    project = recording["root"] / "ps" / "project"
    k, e, _ = get_cam_params(str(project / ps.CAMERAS), ds=1, up_fn=str(project / ps.UP_FILE), auto_orient=True,
                             load_up_direction=True)
    pinholes = ps.scaled_pinholes(recording["rig"], 0.5)
    centres = np.stack([p.centre for p in pinholes])
    scale = 1.0 / np.linalg.norm(centres - centres.mean(0), axis=1).max()  # the farthest camera at 1
    turn = e[0, :3, :3].T @ pinholes[0].w2c[:3, :3]  # its world from ours (the same for every camera)
    np.testing.assert_allclose(turn @ np.array([0.0, 0.0, 1.0]), [0.0, 0.0, 1.0], atol=1e-9)
    point = np.array([12.0, -7.0, 31.0])
    moved = scale * turn @ (point - centres.mean(0))
    for i, p in enumerate(pinholes):
        x = k[i] @ (e[i, :3, :3] @ moved + e[i, :3, 3])
        ours, _ = p.to_cameras().project(torch.tensor(point)[None, None])
        np.testing.assert_allclose(x[:2] / x[2], ours[0, 0].numpy(), atol=1e-6)


@pytest.mark.slow
def test_gslrm_renders_every_camera_of_the_test_frames(recording, tmp_path):
    """A tiny random GS-LRM on the protocol's prepared set: a render folder with every (test frame, camera) of
    the protocol, the held-out camera never an input, scored like any other method's."""
    from test_gslrm_training import compose_config

    from facelift.peers.gslrm_renders import render_protocol
    from facelift.systems.gslrm_system import GSLRMSystem

    protocol = make_protocol(recording["protocol"].raw, holdout=3, size=32)
    write_split_lists(protocol)
    prepared = tmp_path / "prepared"
    subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_mouse_data.py"), "--src", protocol.raw, "--dst",
                    str(prepared), "--size", "32", "--no-normalize", "--split", "keep"], check=True,
                   capture_output=True)
    cfg = compose_config("train", tmp_path, f"data.data_dir={prepared}", "data.image_size=32", "data.num_views=3",
                         "data.num_input_views=2", "data.synthesize=null", "data.maximize_view_overlap=false",
                         "data.holdout_views=[3]")
    torch.manual_seed(0)
    system = GSLRMSystem(**{k: v for k, v in cfg.model.items() if not k.startswith("_")})
    torch.save({"hyper_parameters": dict(system.hparams), "state_dict": system.state_dict(),
                "datamodule_hyper_parameters": OmegaConf.to_container(cfg.data, resolve=True)}, tmp_path / "t.ckpt")
    timing = render_protocol(protocol, tmp_path / "t.ckpt", prepared, tmp_path / "gslrm", "cpu")
    assert timing["frames"] == 3 and set(timing["input_cameras"]) <= {0, 1, 2}  # 2 of them per frame, never 3
    records = score_folder(protocol, tmp_path / "gslrm", "gslrm")
    assert [(r["frame"], r["camera"]) for r in records] == protocol.views()
    timing = render_protocol(protocol, tmp_path / "t.ckpt", prepared, tmp_path / "all", "cpu", inputs=3)
    assert timing["input_cameras"] == [0, 1, 2]  # every camera but the held-out one, each frame


@pytest.mark.skipif(not PS_REPO, reason="POSE_SPLATTER_REPO (a checkout of jackgoffinet/pose-splatter) not set")
def test_its_visibility_test_runs_on_the_shim_and_keeps_the_nearest_voxel_per_pixel():
    """Its ray_cast_visibility_torch (the one torch_scatter call) with the shim in place of torch_scatter: per pixel
    exactly the voxels nearest the camera are visible (brute force over voxels as the reference)."""
    sys.path[:0] = [str(REPO / "facelift" / "peers" / "shims"), PS_REPO]
    try:
        from src.shape_carver import ray_cast_visibility_torch
    finally:
        del sys.path[:2]
    g = torch.linspace(-0.1, 0.1, 6)
    grid = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)  # [216, 3]
    k = torch.tensor([[[40.0, 0.0, 8.0], [0.0, 40.0, 8.0], [0.0, 0.0, 1.0]]])
    e = torch.eye(4)[None].clone()
    e[0, :3, 3] = torch.tensor([0.03, -0.02, 1.0])  # the cube 1 in front of the camera
    visible = ray_cast_visibility_torch(grid, k, e, 16, 16)[0]  # [216]
    cam = grid + e[0, :3, 3]
    uv = (cam[:, :2] / cam[:, 2:]) * 40.0 + 8.0
    pixel = uv[:, 1].round().long().clamp(0, 15) * 16 + uv[:, 0].round().long().clamp(0, 15)
    dist = cam.norm(dim=1)
    expected = torch.tensor([bool(dist[i] == dist[pixel == pixel[i]].min()) for i in range(len(grid))])
    assert torch.equal(visible, expected) and 0 < int(visible.sum()) < len(grid)


@pytest.mark.slow
@pytest.mark.skipif(not PS_REPO, reason="POSE_SPLATTER_REPO (a checkout of jackgoffinet/pose-splatter) not set")
def test_its_cpu_steps_run_on_the_export(recording, tmp_path):
    """Its centre/rotation, crop, image and Zarr steps, run unmodified from the checkout on the export: its image
    file holds every protocol frame and camera, and the masks it derives from them (not white) are ours."""
    import shutil

    shutil.copytree(recording["root"] / "ps", tmp_path / "ps")
    config_path = tmp_path / "ps" / "project" / ps.CONFIG
    config = json.loads(config_path.read_text())
    config["project_directory"] = str(tmp_path / "ps" / "project")
    config_path.write_text(json.dumps(config))
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "peers" / "pose_splatter.py"), "run", "--out",
                           str(tmp_path / "ps"), "--repo", PS_REPO, "--to-step", "zarr"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    config = json.loads(config_path.read_text())
    assert all((hi - lo) % 16 == 0 and hi > lo for lo, hi in config["volume_idx"])
    with h5py.File(tmp_path / "ps" / "project" / "images" / "images.h5", "r") as f:
        images = np.asarray(f["images"])
    assert images.shape == (9, 4, 24, 32, 3)
    data = Path(config["data_directory"])
    for i in range(9):
        for c in range(4):
            mask = cv2.imread(str(data / (config["mask_video_fns"][c] % i)), cv2.IMREAD_GRAYSCALE) > 127
            theirs = images[i, c, ..., 0] != 255
            assert (theirs == mask).mean() > 0.98
    run = json.loads((tmp_path / "ps" / "run.json").read_text())
    assert set(run["steps"]) == {"center_rotation", "crop_indices", "volume_idx", "write_images", "zarr"}
