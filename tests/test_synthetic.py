"""Synthetic scenes and rigs: the human ring equals the public sample's, the mouse rig looks like the lab's raw one."""

import importlib.util
import json
import math

import torch

from conftest import REPO, SAMPLE
from facelift.cameras import Cameras
from facelift.data.sample_folder import read_file_list, read_sample
from facelift.data.synthetic.blob_scenes import human_rig, make_sample, mouse_rig
from facelift.render import render


def _script(name: str, *args) -> None:
    """Run ``scripts/<name>``'s main in this process (an error exits non-zero, failing the test)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), REPO / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(a) for a in args])


def test_human_rig_is_the_public_samples_ring(fixtures_dir):
    frames = json.loads((SAMPLE / "gslrm" / "sample_000" / "opencv_cameras.json").read_text())["frames"]
    w2c = torch.tensor([f["w2c"] for f in frames], dtype=torch.float64)
    intrinsics = torch.tensor([[f["fx"], f["fy"], f["cx"], f["cy"]] for f in frames])
    sample = Cameras.from_w2c(w2c, intrinsics.double(), 512, 512)
    rig = human_rig(32, 512)
    torch.testing.assert_close(rig.c2w.double(), sample.c2w, atol=2e-6, rtol=0)
    torch.testing.assert_close(rig.intrinsics, intrinsics)


def test_mouse_rig_is_uneven_off_centre_and_tilted():
    cams, raw_from_subject = mouse_rig(torch.Generator().manual_seed(5), width=144)
    assert len(cams) == 6 and (cams.width, cams.height) == (144, 128)
    fx, fy, cx, cy = cams.intrinsics.unbind(-1)
    assert ((fx > 202) & (fx < 206) & (fy > 203) & (fy < 207)).all() and (cx == 72).all() and (cy == 64).all()
    subject = torch.tensor([0.0, 0.0, 0.12])
    dist = (cams.centers - subject).norm(dim=-1)
    assert dist.min() > 1.75 and dist.max() < 3.55 and dist.max() - dist.min() > 0.2
    azimuth = torch.sort(torch.atan2(cams.centers[:, 1], cams.centers[:, 0])).values
    gaps = torch.diff(torch.cat([azimuth, azimuth[:1] + 2 * math.pi]))
    assert gaps.max() - gaps.min() > math.radians(5)  # not a regular ring
    elevation = torch.rad2deg(torch.asin((cams.centers[:, 2] - subject[2]) / dist))
    assert elevation.min() > 5 and elevation.max() < 35
    tilt = math.degrees(math.acos(raw_from_subject[2, 2].item()))
    assert 3 - 1e-3 <= tilt <= 8 + 1e-3  # the raw frame's Z is not the true up
    assert 0.3 - 1e-6 <= raw_from_subject[:3, 3].norm() <= 0.8 + 1e-6  # nor its origin at the animal


def test_samples_are_deterministic_varied_and_consistent_with_their_cameras():
    a, b = make_sample("mouse", seed=3, size=54), make_sample("mouse", seed=3, size=54)
    assert torch.equal(a.images, b.images) and torch.equal(a.cameras.c2w, b.cameras.c2w)
    c = make_sample("mouse", seed=4, size=54)
    assert (a.images - c.images).abs().max() > 0.5
    assert a.images.shape == (6, 4, 48, 54)
    alpha = a.images[:, 3]
    assert ((alpha > 0.5).float().mean(dim=(1, 2)) > 0.01).all()  # the animal is seen by every camera
    # what was written (raw-frame cameras) renders the raw-frame scene into the same images
    again = render(a.gaussians, a.cameras[None], 0.0)
    torch.testing.assert_close(again.alpha[0], a.images[:, 3:], atol=1e-3, rtol=0)
    human = make_sample("human", seed=0, size=32, num_views=3)
    assert human.images.shape == (3, 4, 32, 32)
    fg = human.images[:, 3] > 0.5
    assert (fg.float().mean(dim=(1, 2)) > 0.1).all() and not fg[:, 0, :].any()  # a bust that fits in the frame


def test_make_synthetic_writes_readable_sample_folders_and_lists(tmp_path):
    out = tmp_path / "human"
    _script("make_synthetic.py", "--out", out, "--rig", "human", "--num-samples", 2, "--size", 24, "--num-views", 3,
            "--seed", 7)
    train, val = read_file_list(out / "data_train.txt"), read_file_list(out / "data_val.txt")
    assert [p.name for p in train] == ["sample_00000"] and [p.name for p in val] == ["sample_00001"]
    images, cams, _ = read_sample(val[0])
    expected = make_sample("human", seed=7 * 1_000_003 + 1, size=24, num_views=3)  # sample i depends on (seed, i)
    assert images.shape == (3, 4, 24, 24)
    torch.testing.assert_close(images, expected.images, atol=1 / 255 + 1e-6, rtol=0)  # 8-bit PNG round trip
    torch.testing.assert_close(cams.c2w, human_rig(3, 24).c2w, atol=1e-6, rtol=0)


def test_raw_mouse_set_goes_through_prepare_mouse_data(tmp_path):
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    _script("make_synthetic.py", "--out", raw, "--rig", "mouse", "--num-samples", 2, "--size", 54)
    frames = json.loads((raw / "sample_00000" / "opencv_cameras.json").read_text())["frames"]
    assert [f["view_id"] for f in frames] == list(range(6)) and (frames[0]["w"], frames[0]["h"]) == (54, 48)
    _script("prepare_mouse_data.py", "--src", raw, "--dst", prepared, "--size", 32)
    assert len(read_file_list(prepared / "data_train.txt")) + len(read_file_list(prepared / "data_val.txt")) == 2
    images, cams, _ = read_sample(prepared / "sample_00001")
    assert images.shape == (6, 4, 32, 32)
    assert abs(cams.centers.norm(dim=-1).mean().item() - 2.7) < 1e-3  # normalized: mean distance 2.7
    report = json.loads((prepared / "rig_report.json").read_text())["samples"]["sample_00000"]
    assert not report.get("warnings")
