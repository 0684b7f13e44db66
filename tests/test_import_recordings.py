"""import_recordings: a sphere recorded through a distorting, skewed rig comes out undistorted and cropped with
cameras that project it onto the written masks; the time split; resuming; every bad input named, nothing damaged."""

import json
import subprocess
import sys

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from facelift.cameras import look_at
from facelift.data.sample_folder import read_file_list, read_sample
from facelift.errors import InputError
from facelift.rigs.importer import ImportConfig, import_recordings
from facelift.rigs.rig import Rig, RigCamera, write_rig

from conftest import REPO

W, H, RADIUS = 160, 128, 25.0  # image size (a multiple of 16: no codec padding), sphere radius in mm
FRAMES = 12


def _rig() -> Rig:
    """Three cameras ~300 mm from the arena, with real-rig-like distortion, skew and off-centre principal points."""
    eyes = [(300.0, 0.0, 80.0), (-150.0, 260.0, 60.0), (-150.0, -260.0, 120.0)]
    dists = [[-0.35, 0.9, -0.001, -0.004, -2.7], [-0.25, 0.04, -0.002, -0.007, 0.24], [-0.2, -0.16, -0.008, 0.002,
                                                                                       0.5]]
    frames = []
    for i, (eye, dist) in enumerate(zip(eyes, dists)):
        c2w = look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor([0.0, 0.0, 20.0], dtype=torch.float64),
                      torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        frames.append(RigCamera(f"Cam{i + 1}", W, H, 210.0 + 5 * i, 212.0, 86.0 - 4 * i, 60.0 + 3 * i, -1.5 + i,
                                dist, torch.linalg.inv(c2w).numpy()))
    return Rig("mm", frames)


def _centre(t: int) -> np.ndarray:
    """The sphere walks a circle: every camera sees it move by > 3 diameters, so each pixel's median is floor."""
    angle = 2 * np.pi * t / FRAMES
    return np.array([60.0 * np.cos(angle), 60.0 * np.sin(angle), 25.0 + 10.0 * np.sin(2 * angle)])


def _silhouette_distorted(f: RigCamera, centre: np.ndarray) -> np.ndarray:
    """Mask [H, W] of the pixels of the DISTORTED camera whose ray meets the sphere (OpenCV's inverse lens model
    as the reference, not the code under test)."""
    v, u = np.mgrid[0:f.h, 0:f.w] + 0.5
    yd = (v - f.cy) / f.fy
    xd = (u - f.cx - f.skew * yd) / f.fx
    xn = cv2.undistortPoints(np.stack([xd, yd], -1).reshape(-1, 1, 2), np.eye(3), np.array(f.dist)).reshape(-1, 2)
    return _hits(np.concatenate([xn, np.ones((len(xn), 1))], 1), f.w2c, centre).reshape(f.h, f.w)


def _hits(dirs_cam: np.ndarray, w2c: np.ndarray, centre: np.ndarray) -> np.ndarray:
    d = dirs_cam @ w2c[:3, :3]  # camera -> world directions (rows): R^T d
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = -w2c[:3, :3].T @ w2c[:3, 3]
    t = (centre - o) @ d.T
    return np.linalg.norm(o + t[:, None] * d - centre, axis=1) < RADIUS


def _record(root, rig: Rig, frames: int = FRAMES, as_video: bool = True, sizes=None):
    """VIDEOS/ and MASKS/ of the sphere over a static striped floor, as mp4 or as PNG folders."""
    videos, masks = root / "videos", root / "masks"
    videos.mkdir(parents=True)
    masks.mkdir()
    stripes = ((np.mgrid[0:H, 0:W][1] // 8) % 2 * 60 + 60).astype(np.uint8)
    for f in rig.frames:
        rgb, alpha = [], []
        for t in range(frames):
            m = _silhouette_distorted(f, _centre(t))
            img = np.repeat(stripes[..., None], 3, -1)
            img[m] = (230, 40, 30)
            rgb.append(img)
            alpha.append(np.repeat((m * 255).astype(np.uint8)[..., None], 3, -1))
        for folder, seq in ((videos, rgb), (masks, alpha)):
            if as_video:
                imageio.mimwrite(folder / f"{f.name}.mp4", seq, fps=10, quality=10, macro_block_size=16)
            else:
                (folder / f.name).mkdir()
                for t, im in enumerate(seq):
                    imageio.imwrite(folder / f.name / f"{t:05d}.png", im)
    return videos, masks


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _centroid(mask: np.ndarray) -> np.ndarray:
    v, u = np.nonzero(mask)
    return np.array([u.mean(), v.mean()])


def _check_samples(out, rig: Rig, min_iou: float, max_offset: float):
    """Each written camera (a pinhole, no lens left) projects the sphere onto its written mask: IoU above
    ``min_iou``, centroids within ``max_offset`` written pixels."""
    ious, offsets = [], []
    for sample in sorted(out.glob("sample_*")):
        images, cams, frames = read_sample(sample)
        t = json.loads((sample / "opencv_cameras.json").read_text())["frame"]
        assert [fr["name"] for fr in frames] == rig.names and all("dist" not in fr for fr in frames)
        for v, f in enumerate(rig.frames):
            np.testing.assert_allclose(cams.w2c[v].double().numpy(), f.w2c, atol=1e-5)  # the rig's world frame
            fx, fy, cx, cy = cams.intrinsics[v].double().tolist()
            vv, uu = np.mgrid[0:cams.height, 0:cams.width] + 0.5
            dirs = np.stack([(uu - cx) / fx, (vv - cy) / fy, np.ones_like(uu)], -1).reshape(-1, 3)
            expected = _hits(dirs, f.w2c, _centre(t)).reshape(cams.height, cams.width)
            written = images[v, 3].numpy() > 0.5
            ious.append(_iou(expected, written))
            offsets.append(float(np.linalg.norm(_centroid(expected) - _centroid(written))))
            # the crop is around the animal: its centroid near the middle, and not a tiny part of the view
            assert 0.2 < expected.mean() < 0.8
    assert len(ious) and min(ious) > min_iou and max(offsets) < max_offset, (min(ious), max(offsets))


def test_written_cameras_project_the_sphere_onto_the_written_masks(tmp_path):
    rig = _rig()
    write_rig(rig, tmp_path / "rig.json")
    videos, masks = _record(tmp_path, rig)
    report = import_recordings(ImportConfig(tmp_path / "rig.json", videos, tmp_path / "raw", masks, size=64))
    assert report["written"] == FRAMES
    _check_samples(tmp_path / "raw", rig, min_iou=0.95, max_offset=0.5)


@pytest.mark.slow  # starts worker processes
def test_workers_write_the_same_samples_as_one_process(tmp_path):
    rig = _rig()
    write_rig(rig, tmp_path / "rig.json")
    videos, masks = _record(tmp_path, rig, frames=4, as_video=False)
    for workers in (0, 2):
        import_recordings(ImportConfig(tmp_path / "rig.json", videos, tmp_path / f"raw{workers}", masks, size=32,
                                       workers=workers))
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*"))  # noqa: E731
                          if p.is_file() and p.name != "import.json"}
    one, pooled = files(tmp_path / "raw0"), files(tmp_path / "raw2")
    assert len(one) == 4 * 4 + 3 and one == pooled  # 4 samples of 3 views + their camera file; the 3 lists


def test_ignoring_the_lens_would_show(tmp_path):
    """The check above has teeth: the same recording imported as if the rig had no lens misses the masks (by up to
    1.2 px at 64 px here, IoU 0.93; with the lens: 0.3 px, IoU 0.97)."""
    rig = _rig()
    videos, masks = _record(tmp_path, rig)
    flat = Rig("mm", [RigCamera(f.name, f.w, f.h, f.fx, f.fy, f.cx, f.cy, 0.0, [0.0] * 5, f.w2c)
                      for f in rig.frames])
    write_rig(flat, tmp_path / "rig.json")
    import_recordings(ImportConfig(tmp_path / "rig.json", videos, tmp_path / "raw", masks, size=64))
    with pytest.raises(AssertionError):
        _check_samples(tmp_path / "raw", rig, min_iou=0.95, max_offset=0.5)


def test_background_subtraction_finds_the_animal_without_masks(tmp_path):
    rig = _rig()
    write_rig(rig, tmp_path / "rig.json")
    videos, _ = _record(tmp_path, rig)
    import_recordings(ImportConfig(tmp_path / "rig.json", videos, tmp_path / "raw", None, size=64))
    assert sorted(p.name for p in (tmp_path / "raw" / "backgrounds").iterdir()) == ["Cam1.png", "Cam2.png",
                                                                                     "Cam3.png"]
    _check_samples(tmp_path / "raw", rig, min_iou=0.85, max_offset=1.0)


def test_split_is_by_time_and_a_rerun_resumes(tmp_path, monkeypatch):
    import facelift.rigs.importer as importer

    rig = _rig()
    write_rig(rig, tmp_path / "rig.json")
    videos, masks = _record(tmp_path, rig, as_video=False)
    out = tmp_path / "raw"
    cfg = ImportConfig(tmp_path / "rig.json", videos, out, masks, size=32, frames="0:10:1")
    real, calls = importer.write_sample, []

    def interrupted(*args, **kwargs):  # the run is killed while writing its fourth sample
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "write_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_recordings(cfg)
    first = {p: p.stat().st_mtime_ns for p in out.glob("sample_*/images/*.png")}
    assert len(first) == 3 * 3 and not (out / "data_train.txt").exists()
    monkeypatch.setattr(importer, "write_sample", real)
    report = import_recordings(cfg)  # continues: the three samples there are not rewritten
    assert {p: p.stat().st_mtime_ns for p in out.glob("sample_00000[0-2]/images/*.png")} == first
    names = {k: [p.name for p in read_file_list(out / f"data_{k}.txt")] for k in ("train", "val", "test")}
    assert names == {"train": [f"sample_{i:06d}" for i in range(8)], "val": ["sample_000008"],
                     "test": ["sample_000009"]}
    assert report["split"]["train"] == {"count": 8, "first_frame": 0, "last_frame": 7}
    with pytest.raises(InputError, match="other settings"):
        import_recordings(ImportConfig(**{**vars(cfg), "size": 48}))


def _bad_cases(tmp_path):
    rig = _rig()
    write_rig(rig, tmp_path / "rig.json")
    videos, masks = _record(tmp_path, rig, frames=4, as_video=False)
    return rig, videos, masks


def test_bad_inputs_are_named_and_nothing_written_is_damaged(tmp_path):
    rig, videos, masks = _bad_cases(tmp_path)
    out = tmp_path / "raw"
    base = ImportConfig(tmp_path / "rig.json", videos, out, masks, size=32, frames="0:2")
    import_recordings(base)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "sample_" in str(p)}

    # an undecodable frame (frame 3 of camera 2): stops there, naming the file; earlier samples intact
    bad = videos / "Cam2" / "00003.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(InputError) as err:
        import_recordings(ImportConfig(**{**vars(base), "frames": "::"}, ))
    assert str(bad) in str(err.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "sample_" in str(p)
            and "sample_000002" not in str(p)} == before
    assert not (out / "sample_000003").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written leftovers


@pytest.mark.parametrize("case", ["camera_without_video", "frame_counts", "mask_size", "names_match_nothing"])
def test_each_bad_input_names_its_file(tmp_path, case):
    rig, videos, masks = _bad_cases(tmp_path)
    rig_path = tmp_path / "rig.json"
    if case == "camera_without_video":
        import shutil

        shutil.rmtree(videos / "Cam3")
        named = videos / "Cam3.mp4"
    elif case == "frame_counts":
        (videos / "Cam2" / "00003.png").unlink()
        named = videos / "Cam2"
    elif case == "mask_size":
        for p in (masks / "Cam1").iterdir():
            imageio.imwrite(p, np.zeros((H // 2, W // 2, 3), np.uint8))
        named = masks / "Cam1"
    else:
        write_rig(Rig("mm", [RigCamera(f"Other{i}", W, H, 200.0, 200.0, 80.0, 64.0, w2c=f.w2c)
                             for i, f in enumerate(rig.frames)]), rig_path)
        named = rig_path
    with pytest.raises(InputError) as err:
        import_recordings(ImportConfig(rig_path, videos, tmp_path / "raw", masks, size=32))
    assert str(err.value).startswith(f"{named}:"), str(err.value)
    assert not list((tmp_path / "raw").glob("sample_*")) if (tmp_path / "raw").exists() else True


@pytest.mark.slow
def test_cli_exit_status_and_one_line(tmp_path):
    rig, videos, masks = _bad_cases(tmp_path)
    script = str(REPO / "scripts" / "import_recordings.py")
    args = [sys.executable, script, "--rig", str(tmp_path / "rig.json"), "--videos", str(videos), "--masks",
            str(masks), "--out", str(tmp_path / "raw"), "--size", "32"]
    ok = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert "4 samples" in ok.stdout
    (videos / "Cam1" / "00000.png").unlink()
    bad = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Cam" in bad.stderr
