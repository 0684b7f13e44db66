"""The mouse study set: distinct animals, lab-like rigs, masks, a split by animal, calibration noise, preparation."""

import json
import math
from collections import Counter
from dataclasses import astuple, replace

import pytest
import torch

from conftest import REPO
from facelift.cameras import Cameras
from facelift.data.camera_json import read_camera_file
from facelift.data.synthetic.mouse_set import MouseSetConfig, build_scene, make_rigs, plan_samples
from facelift.data.prepare import PrepareConfig, prepare_dataset
from facelift.data.rig import RigNormalization
from facelift.data.sample_folder import read_file_list, read_sample
from facelift.data.synthetic.blob_scenes import sample_seed
from facelift.data.synthetic.mouse import COATS, sample_shape
from facelift.gaussians import Gaussians
from facelift.render import render

TINY = MouseSetConfig(num_animals=5, width=64, gaussians=1500, num_rigs=2, batch_size=3, seed=3)


def run_script(name: str, *args) -> None:
    """``scripts/<name>``'s main in this process (a subprocess would import torch again: seconds per test)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), REPO / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("mice") / "raw"
    run_script("make_mouse_set.py", "--out", out, "--num-animals", TINY.num_animals, "--width", TINY.width,
               "--gaussians", TINY.gaussians, "--num-rigs", TINY.num_rigs, "--batch-size", TINY.batch_size,
               "--seed", TINY.seed)
    return out


def test_two_thousand_animals_are_distinct_and_cover_every_coat():
    shapes = [sample_shape(torch.Generator().manual_seed(sample_seed(0, i))) for i in range(2000)]
    assert len({astuple(s) for s in shapes}) == 2000
    coats = Counter(s.coat for s in shapes)
    assert set(coats) == set(COATS) and min(coats.values()) > 0.2 * 2000
    lengths = torch.tensor([s.body_length for s in shapes])
    assert lengths.min() >= 0.40 and lengths.max() <= 0.56 and lengths.std() > 0.03


def test_split_is_by_animal_and_every_posture_follows_its_animal():
    plan = plan_samples(replace(TINY, num_animals=400, poses_per_animal=3))
    animals = {split: {p.animal for p in plan if p.split == split} for split in ("train", "val", "test")}
    assert not (animals["train"] & animals["val"]) and not (animals["train"] & animals["test"])
    assert not (animals["val"] & animals["test"])
    assert len(animals["test"]) == 40 and len(animals["val"]) == 20 and len(plan) == 1200
    assert {p.rig for p in plan} == {0, 1} and all(p.rig == p.animal % 2 for p in plan)
    assert len({p.name for p in plan}) == 1200


def test_rigs_look_like_the_labs():
    for rig in make_rigs(replace(TINY, num_rigs=4, width=288)):
        cams = rig.cameras
        assert len(cams) == 6 and (cams.width, cams.height) == (288, 256)
        dist = (cams.centers - rig.aim).norm(dim=-1)
        assert dist.min() >= 1.9 and dist.max() <= 3.4 and dist.max() - dist.min() > 0.9  # uneven, spread out
        fx, fy, cx, cy = cams.intrinsics.unbind(-1)
        assert ((fx >= 404) & (fx <= 412) & (fy >= 406) & (fy <= 414)).all()
        assert ((cx - 144).abs() <= 3).all() and ((cy - 128).abs() <= 3).all()
        # the calibration frame's Z is tilted off the true up (the arena's +Z) and its origin is off the arena
        true_up_in_raw = rig.raw_from_arena[:3, 2]
        assert 3 - 1e-6 <= math.degrees(math.acos(float(true_up_in_raw[2]))) <= 8 + 1e-6
        assert 0.3 - 1e-6 <= float(rig.raw_from_arena[:3, 3].norm()) <= 0.8 + 1e-6


def test_calibration_noise_moves_projections_by_the_asked_pixels():
    plan = plan_samples(replace(TINY, width=288))[0]
    rigs = make_rigs(replace(TINY, width=288))
    exact = build_scene(plan, replace(TINY, width=288), rigs)
    for px in (1.0, 3.0):
        noisy = build_scene(plan, replace(TINY, width=288, calib_noise_px=px), rigs)
        assert torch.equal(noisy.gaussians.means, exact.gaussians.means)  # the same animal, only the cameras moved
        points = to_raw(exact.gaussians, rigs[plan.rig].raw_from_arena).means[0].double()
        before = exact.written.project(points.expand(6, -1, 3))[0]
        after = noisy.written.project(points.expand(6, -1, 3))[0]
        shift = (after - before).norm(dim=-1).mean(-1)  # [6] mean over the animal's points
        assert shift == pytest.approx([px] * 6, rel=0.15)


def to_raw(g: Gaussians, raw_from_arena: torch.Tensor) -> Gaussians:
    rot, shift = raw_from_arena[:3, :3].float(), raw_from_arena[:3, 3].float()
    return Gaussians(g.means @ rot.T + shift, g.quats, g.log_scales, g.opacity_logits, g.sh)  # means only: a check


def test_generated_set_has_images_masks_lists_and_a_report(tiny_set):
    report = json.loads((tiny_set / "generation.json").read_text())
    assert report["num_samples"] == 5 and report["image_size"] == [64, 57]
    assert set(report["seconds"]) == {"build", "render", "write", "total"}
    files = [p for p in tiny_set.glob("sample_*/**/*") if p.is_file()]
    assert report["disk_bytes"] == sum(p.stat().st_size for p in files) and len(files) == 5 * 7
    lists = {s: [p.name for p in read_file_list(tiny_set / f"data_{s}.txt")] for s in ("train", "val", "test")}
    assert sorted(sum(lists.values(), [])) == [f"sample_{i:05d}" for i in range(5)]
    assert len(lists["val"]) == 1 and len(lists["test"]) == 1
    meta = {m["name"]: m for m in json.loads((tiny_set / "animals.json").read_text())}
    assert all(meta[n]["split"] == s for s, names in lists.items() for n in names)
    images, cams, frames = read_sample(tiny_set / "sample_00001")
    assert images.shape == (6, 4, 57, 64) and [f["view_id"] for f in frames] == list(range(6))
    alpha, rgb = images[:, 3], images[:, :3]
    fg = (alpha > 0.5).float().mean(dim=(1, 2))
    assert (fg > 0.01).all() and (fg < 0.5).all()  # the animal is seen, and small, in every view
    assert ((alpha < 0.02) | (alpha > 0.98)).float().mean() > 0.9  # a mask, soft only at the edges
    background = rgb.permute(1, 0, 2, 3)[:, alpha < 0.02]
    assert background.std() > 0.02 and background.mean() < 0.95  # an arena, not a white or flat backdrop
    assert (tiny_set / "preview.png").is_file()


def test_written_cameras_render_the_written_masks(tiny_set):
    """Re-render sample 2's animal with the cameras from its file, brought back from the calibration frame by the
    rig's rigid map: the masks must agree with the written alpha (the cameras on disk took these images)."""
    plan = plan_samples(TINY)[2]
    rigs = make_rigs(TINY)
    scene = build_scene(plan, TINY, rigs)
    cams = read_camera_file(tiny_set / plan.name / "opencv_cameras.json").cameras
    arena_c2w = torch.linalg.inv(rigs[plan.rig].raw_from_arena) @ cams.c2w
    images, _, _ = read_sample(tiny_set / plan.name)
    out = render(scene.gaussians, Cameras(arena_c2w, cams.intrinsics, cams.width, cams.height).to(torch.float32)[None],
                 0.0)
    assert (out.alpha[0] - images[:, 3:]).abs().mean() < 0.01


def test_prepare_keeps_the_split_and_normalizes_or_leaves_the_rigs(tiny_set, tmp_path):
    normalized = prepare_dataset(tiny_set, tmp_path / "norm", PrepareConfig(size=32))
    for split in ("train", "val", "test"):
        assert (tmp_path / "norm" / f"data_{split}.txt").read_text() == (tiny_set / f"data_{split}.txt").read_text()
    images, cams, _ = read_sample(tmp_path / "norm" / "sample_00000")
    assert images.shape == (6, 4, 32, 32)
    assert cams.centers.norm(dim=-1).mean().item() == pytest.approx(2.7, abs=1e-3)
    assert normalized["samples"]["sample_00000"]["up_source"] == "pca"

    prepare_dataset(tiny_set, tmp_path / "raw", PrepareConfig(size=32, rig=RigNormalization(enabled=False)))
    raw = read_camera_file(tiny_set / "sample_00000" / "opencv_cameras.json")
    kept = read_camera_file(tmp_path / "raw" / "sample_00000" / "opencv_cameras.json")
    torch.testing.assert_close(kept.cameras.c2w, raw.cameras.c2w, atol=1e-6, rtol=0)  # as recorded, only resized
    scale = 32 / 64  # padded to 64 x 64, then resized to 32
    torch.testing.assert_close(kept.cameras.intrinsics[:, :2], raw.cameras.intrinsics[:, :2] * scale, atol=1e-5,
                               rtol=0)
    assert "up" not in kept.header
    assert (tmp_path / "raw" / "data_test.txt").read_text() == (tiny_set / "data_test.txt").read_text()


def test_device_cuda_without_one_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    with pytest.raises(SystemExit) as stop:
        run_script("make_mouse_set.py", "--out", tmp_path / "raw", "--num-animals", TINY.num_animals, "--device",
                   "cuda")
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err == "error: device cuda: no CUDA device is visible here; use cpu"
    assert not (tmp_path / "raw").exists()


def test_the_shadow_only_darkens_the_floor_near_the_animal_and_the_empty_arena_is_cast_once():
    """A recording casts the empty arena once (`ArenaView`) and adds each frame's shadow: by the formula, the shadow
    multiplies floor pixels by 1 - 0.45 exp(-d^2 / 2r^2), so every pixel keeps between 55 % and 100 % of its
    unshadowed value, the darkest ones (d ~ 0) near 55 %, and pixels whose floor point lies past 4 radii change
    by under 0.45 exp(-8) = 1.5e-4 of their value; one view serves any number of frames, each with its own shadow."""
    from facelift.data.synthetic.mouse_lab import ArenaView, arena_background, sample_lab_rig

    rig = sample_lab_rig(torch.Generator().manual_seed(3), width=96)
    cams = Cameras.stack([rig.cameras])
    view = ArenaView(cams, [rig.arena])
    far_away = torch.tensor([[50.0, 50.0, 0.05]])  # no pixel sees the floor there
    empty = view(far_away)[0]  # [V, 3, H, W]
    shadows = torch.tensor([[0.0, 0.0, 0.15], [0.2, -0.1, 0.1]])
    frames = view(shadows)  # [2, V, 3, H, W]: one cast, two frames
    for frame, shadow in zip(frames, shadows):
        lit = empty > 0.05
        ratio = frame[lit] / empty[lit]
        assert ratio.max() <= 1 + 1e-6 and ratio.min() >= 0.55 - 1e-4
        assert ratio.min() < 0.6  # the shadow's centre is on the floor in some view
        d = (view.floor_xy[0] - shadow[:2]).norm(dim=-1)  # [V, H, W] floor point to the shadow's centre
        far = (d > 4 * shadow[2])[:, None].expand_as(frame)
        assert far.any() and (frame[far] - empty[far]).abs().max() <= 1.5e-4 * empty[far].max() + 1e-6
        # the same frame cast for itself, the way a set of separate animals is made
        torch.testing.assert_close(frame, arena_background(cams, [rig.arena], shadow[None])[0], rtol=0, atol=1e-6)
    assert not torch.allclose(frames[0], frames[1])
