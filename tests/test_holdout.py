"""A held-out camera (``data.holdout_views``): its images are never read for a training item, in any view-sampling
mode, and every evaluation item scores it after the other targets; train.py trains without those files at all."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf

import facelift.data.sample_folder as sample_folder
from facelift.config_check import check_views
from facelift.data.multiview import MultiViewDataset
from facelift.data.sample_folder import read_file_list
from facelift.data.synthetic.blob_scenes import write_dataset
from facelift.errors import ConfigError, InputError
from facelift.evaluation.report import role_masks

HELD = 3


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> Path:
    """Six samples of 8 cameras on the human ring at 16 px (the last is the validation list)."""
    return write_dataset(tmp_path_factory.mktemp("ring") / "set", num_samples=6, size=16, num_views=8)


@pytest.fixture
def reads(monkeypatch) -> list[Path]:
    """Every image file the data path opens, in order (the spy wraps the one image reader the sample reader uses)."""
    opened = []

    def spy(path, *args, **kwargs):
        opened.append(Path(path))
        return original(path, *args, **kwargs)

    original = sample_folder.read_image
    monkeypatch.setattr(sample_folder, "read_image", spy)
    return opened


@pytest.mark.parametrize("sampling", [
    dict(view_sampling="random"), dict(view_sampling="fixed"), dict(view_sampling="random", input_views=[0, 4]),
    dict(view_sampling="random", maximize_view_overlap=True, view_overlap_angle=180.0),
])
def test_training_items_never_open_the_held_out_camera(ring, reads, sampling):
    samples = read_file_list(ring / "data_train.txt")
    train = MultiViewDataset(samples, num_views=6, num_input_views=2, image_size=16, holdout_views=[HELD],
                             **sampling)
    torch.manual_seed(0)
    for _ in range(12):  # several random draws of every sample
        for k in range(len(train)):
            item = train[k]
            assert item.num_views == 6 and HELD not in item.index[0, :, 0].tolist()
    assert len(reads) == 12 * len(samples) * 6  # only the chosen views were opened...
    assert not [p for p in reads if p.name == f"cam_{HELD:03d}.png"]  # ...and never the held-out camera's file
    seen = {int(p.stem[4:]) for p in reads}
    assert seen == set(range(8)) - {HELD} or sampling["view_sampling"] == "fixed"  # the others all get drawn


def test_evaluation_items_score_the_held_out_camera_after_the_other_targets(ring, reads):
    samples = read_file_list(ring / "data_val.txt")
    val = MultiViewDataset(samples, num_views=4, num_input_views=2, image_size=16, holdout_views=[HELD, 6],
                           evaluation=True)
    ids = val[0].index[0, :, 0]
    assert ids[-2:].tolist() == [HELD, 6] and len(ids) == 6 and len(set(ids.tolist())) == 6
    assert not set(ids[:4].tolist()) & {HELD, 6}
    assert {p.name for p in reads} == {f"cam_{i:03d}.png" for i in ids.tolist()}
    roles = role_masks(ids[None, 2:], ids[None, :2], [HELD, 6])  # targets after the 2 inputs
    assert roles["holdout"][0].tolist() == [False, False, True, True] and roles["novel"][0].tolist() == [
        True, True, False, False] and not roles["input"].any()


def test_bad_holdout_settings_are_refused(ring):
    samples = read_file_list(ring / "data_train.txt")
    with pytest.raises(ValueError, match="include held-out views"):
        MultiViewDataset(samples, num_views=4, num_input_views=2, image_size=16, input_views=[0, 3],
                         holdout_views=[3])
    with pytest.raises(ConfigError, match=r"data.holdout_views=\[3\]: names input views"):
        check_views(OmegaConf.create({"data": {"num_views": 4, "num_input_views": 2, "input_views": [0, 3],
                                               "holdout_views": [3]}}))
    with pytest.raises(ConfigError, match="distinct view ids"):
        check_views(OmegaConf.create({"data": {"holdout_views": [2, 2]}}))
    beyond = MultiViewDataset(samples, num_views=4, num_input_views=2, image_size=16, holdout_views=[8])
    with pytest.raises(InputError, match=r"holdout_views \[8\] name views beyond its 8 views"):
        beyond[0]
    too_many = MultiViewDataset(samples, num_views=8, num_input_views=2, image_size=16, holdout_views=[1])
    with pytest.raises(InputError, match="fewer than num_views=8 once 1 are held out"):
        too_many[0]


@pytest.mark.slow
def test_train_runs_without_the_held_out_images(tmp_path):
    """The acceptance command on a small default set whose training samples have no cam_003.png at all; its
    validation scores camera 3 (present in the validation sample) as the group holdout."""
    data = write_dataset(tmp_path / "data" / "synthetic_human_32px", num_samples=8, size=32, num_views=12)
    removed = [s / "images" / f"cam_{HELD:03d}.png" for s in read_file_list(data / "data_train.txt")]
    for path in removed:
        path.unlink()
    run = subprocess.run([sys.executable, "train.py", "trainer.max_steps=20", f"data.holdout_views=[{HELD}]",
                          f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path}",
                          "data.synthesize.num_samples=8", "data.synthesize.num_views=12",
                          "trainer.val_check_interval=20", "trainer.log_every_n_steps=1"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(removed) == 7 and not any(p.exists() for p in removed)
    (run_dir,) = (tmp_path / "train").iterdir()
    with open(run_dir / "csv" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(1 for r in rows if r.get("train/loss")) == 20
    last = [r for r in rows if r.get("val/psnr_fg_holdout")][-1]  # the held-out camera, its own group
    for key in ("val/psnr_holdout", "val/iou_holdout", "val/psnr_fg_novel", "val/psnr_fg_input"):
        assert last[key], key
