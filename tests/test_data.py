"""Camera files, sample folders, file lists, the multi-view dataset and the DataModule on the public sample."""

import copy
import json
import logging
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from conftest import REPO, SAMPLE
from facelift.cameras import Cameras, look_at
from facelift.data import sample_folder
from facelift.data.camera_json import cameras_to_frames, frames_to_cameras, read_camera_file
from facelift.data.multiview import MultiViewDataset
from facelift.data.sample_folder import read_file_list, read_sample, write_file_list, write_sample
from facelift.errors import InputError
from facelift.views import Views

GSLRM = SAMPLE / "gslrm"
HUMAN = GSLRM / "sample_000"
F64 = torch.float64


@pytest.fixture(scope="module")
def human_file():
    return read_camera_file(HUMAN / "opencv_cameras.json")


def compose_data(*overrides: str):
    """The ``data`` node of ``conf/train.yaml`` with overrides (no model group needed)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=["~model", *overrides]).data


# ----------------------------------------------------------------------------------------- camera files
def test_camera_file_of_the_public_sample(human_file):
    cams = human_file.cameras
    assert len(cams) == 32 and (cams.width, cams.height) == (512, 512) and cams.c2w.dtype == F64
    assert human_file.frames[3]["blender_camera_name"] == "lrm_cam.003" and human_file.header["id"] == "sample_000"
    torch.testing.assert_close(cams.centers.norm(dim=-1), torch.full((32,), 2.7, dtype=F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(cams.intrinsics[0], torch.tensor([548.9937744140625, 548.9937744140625, 256, 256],
                                                                dtype=F64))
    frames = cameras_to_frames(cams, [f["file_path"] for f in human_file.frames], human_file.frames)
    assert frames[3]["blender_camera_name"] == "lrm_cam.003"  # extra fields kept
    torch.testing.assert_close(frames_to_cameras(frames).c2w, cams.c2w)


def _frame(human_file):
    return copy.deepcopy(human_file.frames[0])


def _mutations():
    def drop_fy(f): f.pop("fy")
    def text_fx(f): f["fx"] = "548"
    def negative_fx(f): f["fx"] = -1.0
    def short_w2c(f): f["w2c"] = f["w2c"][:3]
    def nan_w2c(f): f["w2c"][1][3] = float("nan")
    def singular_w2c(f): f["w2c"][0][:3] = [0.0, 0.0, 0.0]
    def scaled_w2c(f): f["w2c"][0][:3] = [2 * x for x in f["w2c"][0][:3]]
    def mirrored_w2c(f): f["w2c"][0][:4] = [-x for x in f["w2c"][0][:4]]
    def zero_width(f): f["w"] = 0
    def no_file(f): f["file_path"] = ""
    return [(drop_fy, "lacks fy"), (text_fx, "fx must be a finite number"), (negative_fx, "must be positive"),
            (short_w2c, "4x4"), (nan_w2c, "non-finite"), (singular_w2c, "singular"),
            (scaled_w2c, "not orthonormal"), (mirrored_w2c, "reflection"), (zero_width, "positive integer"),
            (no_file, "file_path")]


@pytest.mark.parametrize("mutate, problem", _mutations(), ids=lambda x: getattr(x, "__name__", ""))
def test_camera_file_schema_errors_name_the_file_and_frame(tmp_path, human_file, mutate, problem):
    frames = [_frame(human_file), _frame(human_file)]
    mutate(frames[1])
    path = tmp_path / "opencv_cameras.json"
    path.write_text(json.dumps({"frames": frames}))
    with pytest.raises(InputError, match=problem) as err:
        read_camera_file(path)
    assert str(path) in str(err.value) and "frame 1" in str(err.value)


@pytest.mark.parametrize("text, problem", [("{frames: [", "not valid JSON"), ('{"frames": {}}', "frames"),
                                           ('{"frames": []}', "frames"), ("[1, 2]", "frames")])
def test_camera_file_that_is_not_a_camera_file(tmp_path, text, problem):
    path = tmp_path / "opencv_cameras.json"
    path.write_text(text)
    with pytest.raises(InputError, match=problem):
        read_camera_file(path)
    with pytest.raises(InputError, match="not found"):
        read_camera_file(tmp_path / "missing.json")


# ----------------------------------------------------------------------------------------- sample folders
def tiny_sample(n: int = 3, size=(6, 5), channels: int = 4, seed: int = 0) -> tuple[torch.Tensor, Cameras]:
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, channels, size[1], size[0], generator=gen)
    angles = torch.arange(n, dtype=F64) * 2.0
    eye = torch.stack([angles.cos(), angles.sin(), torch.full_like(angles, 0.5)], -1) * 2.7
    c2w = look_at(eye, torch.zeros(3, dtype=F64), torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    return images, Cameras(c2w, torch.tensor([[5.0, 5.5, 3.0, 2.5]], dtype=F64).repeat(n, 1), *size)


def test_write_then_read_a_sample(tmp_path):
    images, cams = tiny_sample()
    write_sample(tmp_path / "sample_a", images, cams, [{"view_id": 10 + i} for i in range(3)], {"up": [0, 0, 1]})
    back, back_cams, frames = read_sample(tmp_path / "sample_a")
    assert back.shape == images.shape and back_cams.c2w.dtype == torch.float32
    torch.testing.assert_close(back, images, atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(back_cams.c2w, cams.c2w.float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(back_cams.intrinsics, cams.intrinsics.float())
    assert [f["view_id"] for f in frames] == [10, 11, 12] and frames[0]["file_path"] == "images/cam_000.png"
    assert read_camera_file(tmp_path / "sample_a" / "opencv_cameras.json").up.tolist() == [0, 0, 1]


def test_write_sample_replaces_atomically_and_cleans_up_after_a_failure(tmp_path, monkeypatch):
    images, cams = tiny_sample()
    target = write_sample(tmp_path / "sample_a", images, cams)
    before = {p.name: p.read_bytes() for p in (target / "images").iterdir()}
    write_sample(target, 1 - images, cams)  # replacing works
    torch.testing.assert_close(read_sample(target)[0], 1 - images, atol=0.5 / 255 + 1e-6, rtol=0)
    write_sample(target, images, cams)

    calls = []

    def failing_write(path, image):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(path, image)

    real_write = sample_folder.write_image
    monkeypatch.setattr(sample_folder, "write_image", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_sample(target, 1 - images, cams)
    assert {p.name: p.read_bytes() for p in (target / "images").iterdir()} == before  # the old sample, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample_a"]  # no temporary folder left


def test_reading_the_public_sample_folder():
    images, cams, frames = read_sample(HUMAN)
    assert images.shape == (32, 4, 512, 512) and len(cams) == 32 and len(frames) == 32
    alpha = images[:, 3]
    assert 0.05 < alpha.mean() < 0.6 and alpha.min() == 0 and alpha.max() == 1  # a head on a transparent ground


def test_sample_folder_problems_name_the_file(tmp_path):
    images, cams = tiny_sample()
    sample = write_sample(tmp_path / "s", images, cams)
    (sample / "images" / "cam_003.png").write_bytes((sample / "images" / "cam_000.png").read_bytes())
    with pytest.raises(InputError, match="has 3 frames but .* holds 4 images"):
        read_sample(sample)
    (sample / "images" / "cam_003.png").unlink()
    write_sample(tmp_path / "other", *tiny_sample(size=(7, 5)))
    (sample / "images" / "cam_001.png").write_bytes((tmp_path / "other" / "images" / "cam_001.png").read_bytes())
    with pytest.raises(InputError, match="cam_001.png: image is 7x5 but opencv_cameras.json frame 1 says 6x5"):
        read_sample(sample)
    write_sample(tmp_path / "rgb", *tiny_sample(channels=3))
    (sample / "images" / "cam_001.png").write_bytes((tmp_path / "rgb" / "images" / "cam_001.png").read_bytes())
    with pytest.raises(InputError, match="mixes RGB and RGBA"):
        read_sample(sample)


# ----------------------------------------------------------------------------------------- file lists
def test_the_public_list_resolves_relative_to_itself_and_says_so_once(caplog, tmp_path):
    sample_folder._ANNOUNCED.clear()
    with caplog.at_level(logging.WARNING, logger="facelift.data.sample_folder"):
        assert read_file_list(GSLRM / "data_gslrm_train.txt") == [GSLRM / "sample_000"]
        assert read_file_list(GSLRM / "data_gslrm_train.txt") == [GSLRM / "sample_000"]
    assert len(caplog.records) == 1 and "/mnt/localssd/FaceLift/data_sample/gslrm/sample_000" in caplog.text


def test_file_lists_round_trip_relative_and_report_missing_entries(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "set" / name).mkdir(parents=True)
    listed = write_file_list(tmp_path / "set" / "list.txt", [tmp_path / "set" / "a", tmp_path / "set" / "b"])
    assert listed.read_text() == "a\nb\n"
    assert read_file_list(listed) == [tmp_path / "set" / "a", tmp_path / "set" / "b"]
    listed.write_text("a\n\nmissing\n")
    with pytest.raises(InputError, match="line 3: sample folder missing not found"):
        read_file_list(listed)


# ----------------------------------------------------------------------------------------- the dataset
def human_dataset(**kwargs) -> MultiViewDataset:
    args = dict(num_views=4, num_input_views=2, image_size=64, evaluation=True)
    return MultiViewDataset([HUMAN], **{**args, **kwargs})


def test_dataset_item_from_the_public_sample(human_file):
    views = human_dataset()[0]
    assert views.images.shape == (1, 4, 3, 64, 64) and views.masks.shape == (1, 4, 1, 64, 64)
    assert tuple(views.cameras.batch_shape) == (1, 4) and views.cameras.c2w.dtype == torch.float32
    ids = views.index[0, :, 0]
    assert len(set(ids.tolist())) == 4 and (views.index[0, :, 1] == 0).all()
    torch.testing.assert_close(views.cameras.c2w[0], human_file.cameras.c2w[ids].float())
    torch.testing.assert_close(views.cameras.intrinsics[0], human_file.cameras.intrinsics[ids].float() / 8)
    background = (views.masks == 0).expand(-1, -1, 3, -1, -1)
    assert 0.2 < background.float().mean() < 0.95
    torch.testing.assert_close(views.images[background], torch.ones(int(background.sum())))  # white
    # evaluation items are a function of the index: same views, inputs and targets each sorted
    again = human_dataset()[0]
    assert torch.equal(again.index, views.index) and torch.equal(again.images, views.images)
    assert ids[:2].tolist() == sorted(ids[:2].tolist()) and ids[2:].tolist() == sorted(ids[2:].tolist())


def test_normalizing_the_human_sample_changes_nothing():
    plain, normalized = human_dataset()[0], human_dataset(normalize_cameras={"enabled": True})[0]
    torch.testing.assert_close(normalized.cameras.c2w, plain.cameras.c2w, atol=1e-6, rtol=0)


@pytest.mark.parametrize("background", ["black", "random", 0.25])
def test_background_colour_fills_the_empty_pixels(background):
    views = human_dataset(background_color=background)[0]
    colour = views.background[0]  # [3]
    if background == "black":
        assert colour.tolist() == [0, 0, 0]
    empty = views.masks[0, :, 0] == 0  # [V, H, W]
    pixels = views.images[0].permute(0, 2, 3, 1)[empty]  # [N, 3]
    torch.testing.assert_close(pixels, colour.expand_as(pixels))


def test_training_items_draw_fresh_views_and_overlap_keeps_targets_near_inputs():
    ds = human_dataset(num_views=3, num_input_views=1, evaluation=False, maximize_view_overlap=True,
                       view_overlap_angle=30.0)
    torch.manual_seed(0)
    drawn = set()
    for _ in range(4):
        views = ds[0]
        ids = views.index[0, :, 0]
        drawn.add(tuple(ids.tolist()))
        dirs = torch.nn.functional.normalize(views.cameras.centers[0], dim=-1)
        assert (dirs[1:] @ dirs[0] >= torch.cos(torch.deg2rad(torch.tensor(30.0))) - 1e-6).all()
    assert len(drawn) > 1
    with pytest.raises(InputError, match="within 1.0 deg"):
        human_dataset(num_views=3, num_input_views=1, maximize_view_overlap=True, view_overlap_angle=1.0)[0]
    with pytest.raises(InputError, match="fewer than num_views=40"):
        human_dataset(num_views=40)[0]


def test_explicit_input_views_with_every_other_view_as_target():
    views = human_dataset(num_views=32, num_input_views=4, input_views=[24, 0, 8, 16], image_size=16)[0]
    ids = views.index[0, :, 0].tolist()
    assert ids[:4] == [0, 8, 16, 24] and sorted(ids[4:]) == [i for i in range(32) if i % 8]
    fixed = human_dataset(num_views=6, num_input_views=2, input_views=[5, 3], view_sampling="fixed")[0]
    assert fixed.index[0, :, 0].tolist() == [3, 5, 0, 1, 2, 4]
    drawn = human_dataset(num_views=6, num_input_views=2, input_views=[5, 3], evaluation=False)
    torch.manual_seed(0)
    targets = {tuple(drawn[0].index[0, 2:, 0].tolist()) for _ in range(3)}
    assert len(targets) > 1 and all(not {3, 5} & set(t) for t in targets)
    with pytest.raises(InputError, match=r"input_views \[0, 40\] name views beyond its 32 views"):
        human_dataset(num_input_views=2, input_views=[0, 40])[0]
    with pytest.raises(ValueError, match="2 distinct view ids"):
        human_dataset(num_input_views=2, input_views=[1, 1])


def rgb_sample(root: Path, name: str, n: int = 2, size=(12, 10)) -> Path:
    """``n`` identical RGB views: white ground, a coloured 4x4 square at rows 3-6, columns 5-8."""
    images, cams = tiny_sample(n=n, size=size, channels=3)
    images[:] = 1.0
    images[:, :, 3:7, 5:9] = torch.tensor([0.8, 0.3, 0.2])[:, None, None]
    return write_sample(root / name, images, cams)


def test_mask_from_near_white_and_augmentation_identical_across_views(tmp_path):
    sample = rgb_sample(tmp_path, "s")
    args = dict(num_views=2, num_input_views=1, image_size=12, resize_mode="stretch", view_sampling="fixed")
    plain = MultiViewDataset([sample], **args, evaluation=True)[0]
    expected = torch.zeros(10, 12)
    expected[3:7, 5:9] = 1
    torch.testing.assert_close(plain.masks[0, 0, 0], torch.nn.functional.interpolate(
        expected[None, None], size=(12, 12), mode="bilinear", antialias=True)[0, 0])
    augmented = MultiViewDataset([sample], **args, augmentation={"enabled": True, "brightness_range": [0.6, 0.8],
                                                                 "contrast_range": [1.2, 1.5]})
    torch.manual_seed(0)
    first, second = augmented[0], augmented[0]
    for views in (first, second):
        torch.testing.assert_close(views.images[0, 0], views.images[0, 1])  # one draw for all views of an item
        foreground = views.masks[0, 0, 0] > 0.99
        assert (views.images[0, 0][:, foreground] < plain.images[0, 0][:, foreground] - 0.05).any()
        assert (views.images[0, 0][:, views.masks[0, 0, 0] == 0] == 1).all()  # the background stays white
    assert not torch.equal(first.images, second.images)  # a fresh draw per item
    no_aug_in_eval = MultiViewDataset([sample], **args, evaluation=True, augmentation={"enabled": True,
                                                                                      "brightness_range": [0.5, 0.5]})
    assert torch.equal(no_aug_in_eval[0].images, plain.images)


@pytest.mark.parametrize("mode, scale", [("pad", (128 / 288, 128 / 288)), ("stretch", (128 / 288, 128 / 256))])
def test_a_projected_point_stays_on_its_pixel_through_resize_and_pad(tmp_path, mode, scale):
    """A 288 x 256 image with a dot where a 3D point projects: after the dataset's resize the dot is where the
    returned camera projects the point."""
    c2w = look_at(torch.tensor([[2.1, -1.4, 0.9]], dtype=F64), torch.zeros(3, dtype=F64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    cams = Cameras(c2w.repeat(2, 1, 1), torch.tensor([[408.0, 410.0, 144.0, 128.0]], dtype=F64).repeat(2, 1), 288, 256)
    cams.c2w[1, :3, 3] *= 1.2  # a second camera, so the rig is a rig
    cams.c2w[1, :3, :3] = look_at(cams.c2w[1, :3, 3], torch.zeros(3, dtype=F64),
                                  torch.tensor([0.0, 0.0, 1.0], dtype=F64))[:3, :3]
    world = torch.tensor([[0.12, 0.3, -0.25]], dtype=F64)
    (u, v), = cams[0].project(world)[0].tolist()
    images = torch.zeros(2, 4, 256, 288)
    col, row = int(u), int(v)  # the dot: 3x3 opaque pixels centred on the point's pixel
    images[:, :, row - 1:row + 2, col - 1:col + 2] = 1.0
    sample = write_sample(tmp_path / "dot", images, cams)
    views = MultiViewDataset([sample], num_views=2, num_input_views=1, image_size=128, resize_mode=mode,
                             view_sampling="fixed", evaluation=True)[0]
    mask = views.masks[0, 0, 0].double()  # [128, 128]
    rows, cols = torch.meshgrid(torch.arange(128, dtype=F64), torch.arange(128, dtype=F64), indexing="ij")
    found = torch.stack([(mask * (cols + 0.5)).sum(), (mask * (rows + 0.5)).sum()]) / mask.sum()
    dot_centre = torch.tensor([col + 0.5, row + 0.5 + (16 if mode == "pad" else 0)], dtype=F64)
    torch.testing.assert_close(found, dot_centre * torch.tensor(scale, dtype=F64), atol=0.02, rtol=0)
    projected = views.cameras[0, 0].to(F64).project(world)[0][0]
    shift = torch.tensor([0.0, 16.0 if mode == "pad" else 0.0], dtype=F64)
    torch.testing.assert_close(projected, (torch.tensor([u, v], dtype=F64) + shift) * torch.tensor(scale, dtype=F64),
                               atol=1e-3, rtol=0)
    assert (projected - found).norm() < 0.5 * 128 / 288  # the dot is where the camera says, within its half-pixel


def test_bad_samples_raise_or_are_skipped_and_counted(tmp_path, caplog):
    good = rgb_sample(tmp_path, "good")
    bad = rgb_sample(tmp_path, "bad")
    (bad / "images" / "cam_001.png").write_bytes(b"not a png")
    args = dict(num_views=2, num_input_views=1, image_size=8, view_sampling="fixed", evaluation=True)
    with pytest.raises(InputError, match="bad/images/cam_001.png"):
        MultiViewDataset([bad, good], **args)[0]
    skipping = MultiViewDataset([bad, good], **args, skip_bad_samples=True)
    with caplog.at_level(logging.WARNING, logger="facelift.data.multiview"):
        views = skipping[0]
    assert views.index[0, 0, 1] == 1 and skipping.skipped == 1 and "cam_001.png" in caplog.text


# ----------------------------------------------------------------------------------------- the DataModule
def test_human_datamodule_from_hydra_on_the_public_sample():
    cfg = compose_data("data=human_gslrm", f"data.data_dir={GSLRM}", "data.val_list=data_gslrm_train.txt",
                       "data.image_size=64", "data.num_workers=0", "data.num_views=5", "data.num_input_views=3",
                       "data.normalize_cameras.enabled=true")
    dm = instantiate(cfg)
    assert dm.num_input_views == 3 and dm.target_has_input is True
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, Views) and batch.images.shape == (1, 5, 3, 64, 64)
    assert batch.cameras.intrinsics[0, 0].tolist() == pytest.approx([548.99377 / 8, 548.99377 / 8, 32, 32])
    torch.testing.assert_close(batch.cameras.centers.norm(dim=-1), torch.full((1, 5), 2.7), atol=1e-5, rtol=0)
    val = next(iter(dm.val_dataloader()))
    assert val.images.shape == (1, 5, 3, 64, 64) and torch.equal(val.background, torch.ones(1, 3))
    with pytest.raises(InputError, match="has no test list"):  # never the validation list in its place
        dm.test_dataloader()


def test_datamodule_refuses_bad_settings():
    with pytest.raises(InstantiationException, match="no target view"):
        instantiate(compose_data("data=human_gslrm", "data.num_views=2", "data.num_input_views=2",
                                 "data.target_has_input=false", f"data.data_dir={GSLRM}"))
    with pytest.raises(InstantiationException, match="resize_mode"):
        instantiate(compose_data("data=human_gslrm", "data.resize_mode=crop", f"data.data_dir={GSLRM}"))
    with pytest.raises(InstantiationException, match="bad keys for RigNormalization"):
        instantiate(compose_data("data=human_gslrm", "+data.normalize_cameras.upp=[0,0,1]", f"data.data_dir={GSLRM}"))
