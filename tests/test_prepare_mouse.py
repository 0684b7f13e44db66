"""scripts/prepare_mouse_data.py on a raw mouse-like set built from the public sample: output, rigs, bad input."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import REPO
from facelift.cameras import look_at
from facelift.data.camera_json import read_camera_file
from facelift.data.multiview import MultiViewDataset
from facelift.data.prepare import PrepareConfig, prepare_dataset, split_samples
from facelift.data.rig import RigNormalization
from facelift.image_io import read_image, write_image
from raw_mouse_like import VIEWS, human_views, write_raw_dataset
from test_data import compose_data
from test_rig import align_about_z

SCRIPT = REPO / "scripts" / "prepare_mouse_data.py"
F64 = torch.float64
sys.path.insert(0, str(SCRIPT.parent))
import prepare_mouse_data  # noqa: E402  (the CLI, run in-process where a subprocess would only cost time)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    write_raw_dataset(root, num_samples=3)  # sample_001 is RGB on white, the others RGBA
    return root


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("prepared") / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--src", str(raw), "--dst", str(out), "--size", "64",
                           "--val-fraction", "0.3", "--seed", "1"], capture_output=True, text=True, cwd=REPO)
    return out, done


@pytest.fixture(scope="module")
def prepared_here(raw, tmp_path_factory) -> Path:
    """The same preparation as `prepared`, by the script's main in this process: an output folder to protect."""
    out = tmp_path_factory.mktemp("prepared_here") / "out"
    prepare_mouse_data.main(["--src", str(raw), "--dst", str(out), "--size", "64", "--val-fraction", "0.3",
                             "--seed", "1"])
    return out


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_cli_writes_the_prepared_layout(prepared):
    out, done = prepared
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and "wrote 3 samples" in done.stdout
    train = (out / "data_train.txt").read_text().split()
    val = (out / "data_val.txt").read_text().split()
    assert sorted(train + val) == ["sample_000", "sample_001", "sample_002"] and len(val) == 1
    for name in train + val:
        images = sorted((out / name / "images").iterdir())
        assert [p.name for p in images] == [f"cam_{i:03d}.png" for i in range(6)]
        assert read_image(images[0]).shape[-2:] == (64, 64)
        cam_file = read_camera_file(out / name / "opencv_cameras.json")
        assert [f["view_id"] for f in cam_file.frames] == list(VIEWS)  # extra fields carried over
        assert cam_file.header["up"] == [0, 0, 1]
    report = json.loads((out / "rig_report.json").read_text())
    entry = report["samples"]["sample_002"]
    assert entry["up_source"] == "pca" and entry["warnings"] == [] and len(entry["distances_before"]) == 6
    assert sum(entry["distances_after"]) / 6 == pytest.approx(2.7)
    assert report["settings"]["rig"]["distance_mode"] == "global"
    plot = read_image(out / "rig_report.png")
    assert plot.shape[-1] > 800 and plot[:3].std() > 0.05  # a real picture, not a blank canvas


@pytest.mark.slow
def test_prepared_rigs_are_the_subject_frame_again(prepared):
    """Each raw rig was FaceLift's ring moved by a random similarity: preparing must undo it (up to a turn about
    Z), and the intrinsics must follow the pad to 288² and the resize to 64²."""
    out, _ = prepared
    _, human = human_views()
    for name in ("sample_000", "sample_001", "sample_002"):
        cams = read_camera_file(out / name / "opencv_cameras.json").cameras
        spin = align_about_z(cams.centers, human.centers)
        torch.testing.assert_close(cams.centers @ spin.T, human.centers, atol=1e-4, rtol=0)
        torch.testing.assert_close(spin @ cams.c2w[:, :3, :3], human.c2w[:, :3, :3], atol=1e-4, rtol=0)
        s = 64 / 288
        expected = torch.tensor([548.9937744140625 * 0.75 * s, 548.9937744140625 * 0.75 * s, 144 * s, 144 * s],
                                dtype=F64)
        torch.testing.assert_close(cams.intrinsics, expected.expand(6, 4), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_datamodule_reads_the_prepared_mouse_set(prepared):
    out, _ = prepared
    cfg = compose_data("data=mouse_gslrm", f"data.data_dir={out}", "data.image_size=32", "data.num_workers=0",
                       "data.batch_size_per_gpu=2")
    dm = instantiate(cfg)
    assert dm.num_input_views == 4 and dm.target_has_input is True
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.images.shape == (2, 6, 3, 32, 32) and batch.masks.shape == (2, 6, 1, 32, 32)
    torch.testing.assert_close(batch.cameras.centers.norm(dim=-1), torch.full((2, 6), 2.7), atol=1e-4, rtol=0)
    assert 0.0 <= batch.images.min() and batch.images.max() <= 1.0
    # the RGB sample's near-white mask agrees with the alpha of the same views in an RGBA sample
    masks = {}
    for name in ("sample_000", "sample_001"):  # RGBA, RGB on white
        item = MultiViewDataset([out / name], num_views=6, num_input_views=4, image_size=32, view_sampling="fixed",
                                evaluation=True)[0]
        masks[name] = item.masks[0] > 0.5
    overlap = (masks["sample_000"] & masks["sample_001"]).sum() / (masks["sample_000"] | masks["sample_001"]).sum()
    assert overlap > 0.9


def test_per_camera_and_stretch_modes(raw, tmp_path):
    config = PrepareConfig(size=48, resize_mode="stretch", val_fraction=0.0,
                           rig=RigNormalization(distance_mode="per_camera", front_view=2))
    report = prepare_dataset(raw, tmp_path / "out", config)
    entry = report["samples"]["sample_000"]
    assert entry["distances_after"] == pytest.approx([2.7] * 6) and entry["transform"] is entry["scale"] is None
    cams = read_camera_file(tmp_path / "out" / "sample_000" / "opencv_cameras.json").cameras
    fx = 548.9937744140625 * 0.75
    # the ring is at one distance already, so the per-camera focal factor is the global scale
    scale = torch.tensor(entry["focal_scales"], dtype=F64)
    torch.testing.assert_close(cams.intrinsics[:, 0], fx * 48 / 288 * scale)
    torch.testing.assert_close(cams.intrinsics[:, 1], fx * 48 / 256 * scale)
    torch.testing.assert_close(cams.intrinsics[:, 2:], torch.tensor([[144 * 48 / 288, 128 * 48 / 256]], dtype=F64)
                               .expand(6, 2))
    front = cams.centers[2]
    assert abs(float(front[0])) < 1e-6 and float(front[1]) < 0  # view 2 turned onto -Y
    assert (tmp_path / "out" / "data_val.txt").read_text() == ""


def test_random_split_can_hold_out_a_test_list():
    names = [f"s{i:02d}" for i in range(20)]
    lists = split_samples(names, val_fraction=0.1, seed=0, test_fraction=0.25)
    assert [len(lists[k]) for k in ("train", "val", "test")] == [13, 2, 5]
    assert sorted(sum(lists.values(), [])) == names  # each sample in exactly one list
    assert "test" not in split_samples(names, 0.1, 0)  # no test share: no test list


def test_a_source_with_lists_keeps_them_and_a_stale_test_list_goes(raw, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    (src / "data_train.txt").write_text("sample_000\nsample_002\n")
    (src / "data_test.txt").write_text("sample_001\n")
    out = tmp_path / "out"
    prepare_dataset(src, out, PrepareConfig(size=16))
    assert (out / "data_train.txt").read_text().split() == ["sample_000", "sample_002"]
    assert (out / "data_test.txt").read_text().split() == ["sample_001"] and not (out / "data_val.txt").exists()
    prepare_dataset(src, out, PrepareConfig(size=16, split="random", val_fraction=0.3))  # again, split at random
    assert not (out / "data_test.txt").exists()  # the old test list would name a training sample now
    assert len((out / "data_val.txt").read_text().split()) == 1


# --------------------------------------------------------------------------------------------- bad input
def _w2c_of(c2w: torch.Tensor) -> list:
    return torch.linalg.inv(c2w).tolist()


def _edit_json(sample: Path, edit) -> None:
    path = sample / "opencv_cameras.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _place_cameras(doc, eyes: list[list[float]], target: list[float]) -> None:
    c2w = look_at(torch.tensor(eyes, dtype=F64), torch.tensor(target, dtype=F64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    for frame, m in zip(doc["frames"], c2w):
        frame["w2c"] = _w2c_of(m)


def corrupt_png(s):
    (s / "images" / "cam_002.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")


def truncated_png(s):
    data = (s / "images" / "cam_002.png").read_bytes()
    (s / "images" / "cam_002.png").write_bytes(data[: len(data) // 2])


def missing_json(s):
    (s / "opencv_cameras.json").unlink()


def malformed_json(s):
    (s / "opencv_cameras.json").write_text('{"frames": [{"w": 288,')


def bad_schema(s):
    _edit_json(s, lambda d: d.update(frames={"cam_000": {}}))


def missing_key(s):
    _edit_json(s, lambda d: d["frames"][3].pop("cx"))


def nan_pose(s):
    _edit_json(s, lambda d: d["frames"][4]["w2c"][1].__setitem__(3, float("nan")))


def singular_pose(s):
    _edit_json(s, lambda d: d["frames"][4]["w2c"].__setitem__(2, [0.0, 0.0, 0.0, 1.0]))


def view_count_mismatch(s):
    _edit_json(s, lambda d: d["frames"].pop())


def missing_image(s):
    (s / "images" / "cam_004.png").unlink()


def two_missing_images(s):
    (s / "images" / "cam_002.png").unlink()
    (s / "images" / "cam_004.png").unlink()


def image_size_mismatch(s):
    write_image(s / "images" / "cam_001.png", torch.ones(4, 100, 100))


def one_point_rig(s):
    _edit_json(s, lambda d: _place_cameras(d, [[0.5, 0.5, 0.5]] * 6, [3.0, 0.0, 0.0]))


def collinear_rig(s):
    _edit_json(s, lambda d: _place_cameras(d, [[k * 0.5, 0.0, 0.0] for k in range(6)], [1.0, 4.0, 0.0]))


def fewer_views_than_the_others(s):
    _edit_json(s, lambda d: d["frames"].pop())
    (s / "images" / "cam_005.png").unlink()


CASES = [  # (break sample_001 this way, the file the error must name, a word of the problem)
    (corrupt_png, "images/cam_002.png", "not a readable image"),
    (truncated_png, "images/cam_002.png", "not a readable image"),
    (missing_json, "opencv_cameras.json", "not found"),
    (malformed_json, "opencv_cameras.json", "not valid JSON"),
    (bad_schema, "opencv_cameras.json", "frames"),
    (missing_key, "opencv_cameras.json", "frame 3 lacks cx"),
    (nan_pose, "opencv_cameras.json", "non-finite"),
    (singular_pose, "opencv_cameras.json", "singular"),
    (view_count_mismatch, "opencv_cameras.json", "holds 6 images; no frame names cam_005.png"),
    (missing_image, "images/cam_004.png", "image not found (opencv_cameras.json frame 4 names it)"),
    (two_missing_images, "images/cam_002.png", "frame 2 names it); also missing: cam_004.png (frame 4)"),
    (image_size_mismatch, "images/cam_001.png", "100x100"),
    (one_point_rig, "opencv_cameras.json", "one point"),
    (collinear_rig, "opencv_cameras.json", "on a line"),
    (fewer_views_than_the_others, "opencv_cameras.json", "has 5 views but sample_000 has 6"),
]


@pytest.mark.parametrize("breaker, file, problem", CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_stops_with_one_line_and_leaves_the_output_alone(raw, prepared_here, tmp_path, capsys, breaker,
                                                                  file, problem):
    src, out = tmp_path / "raw", tmp_path / "out"
    shutil.copytree(raw, src)
    shutil.copytree(prepared_here, out)
    before = snapshot(out)
    breaker(src / "sample_001")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        prepare_mouse_data.main(["--src", str(src), "--dst", str(out), "--size", "64"])
    assert stop.value.code != 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(src / "sample_001" / file) in lines[0] and problem in lines[0], lines[0]
    assert snapshot(out) == before  # nothing in OUT touched


@pytest.mark.slow
def test_bad_input_from_the_real_command_line(raw, tmp_path):
    src = tmp_path / "raw"
    shutil.copytree(raw, src)
    truncated_png(src / "sample_002")
    done = subprocess.run([sys.executable, str(SCRIPT), "--src", str(src), "--dst", str(tmp_path / "out"),
                           "--size", "32"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "sample_002/images/cam_002.png" in done.stderr
    assert not (tmp_path / "out").exists()  # checked before anything was written


def test_missing_source_and_no_samples(tmp_path, capsys):
    for src, problem in ((tmp_path / "nowhere", "source folder not found"), (tmp_path, "holds no sample_* folders")):
        with pytest.raises(SystemExit):
            prepare_mouse_data.main(["--src", str(src), "--dst", str(tmp_path / "out")])
        assert problem in capsys.readouterr().err
