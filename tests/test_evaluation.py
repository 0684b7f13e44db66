"""eval.py at scale on the CPU: batched scoring equals one sample at a time, the per-view CSV, the aggregates, the plot.

The data: five "animals" on a six-camera rig (six views of the public FaceLift sample at 32 px, a different six
per animal), three random inputs per animal, every view scored. The model: the tiny GS-LRM, random weights, saved
as train.py saves checkpoints (scores are meaningless, but they are the same whatever the batching).
"""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf
from PIL import Image
from raw_mouse_like import human_views
from test_gslrm_training import compose_config

from facelift.data.camera_json import read_camera_file
from facelift.data.image_ops import resize
from facelift.data.sample_folder import write_file_list, write_sample
from facelift.evaluation.foreground import FOREGROUND_METRICS
from facelift.evaluation.report import ViewRecord, aggregate, angles_to_nearest_input
from facelift.evaluation.evaluator import evaluate
from facelift.render.turntable import ring_cameras
from facelift.systems.gslrm_system import GSLRMSystem

ANIMALS, CAMERAS, INPUTS = 5, 6, 3
RIG = (0, 5, 11, 16, 21, 27)  # uneven azimuths on FaceLift's 32-view ring, as a lab rig's


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, fixtures_dir) -> Path:
    """``six/data_test.txt`` listing the animals and ``tiny.ckpt``, a random tiny GS-LRM with this data config."""
    tmp = tmp_path_factory.mktemp("eval")
    images, cameras = human_views(list(range(32)))
    images, cameras = resize(images, 32, 32), cameras.resized(32, 32)
    folders = []
    for k in range(ANIMALS):
        chosen = [(v + 2 * k) % 32 for v in RIG]  # each animal its own images and rig
        folders.append(write_sample(tmp / "six" / f"animal_{k}", images[chosen], cameras[chosen],
                                    [{"view_id": v} for v in range(CAMERAS)]))
    write_file_list(tmp / "six" / "data_test.txt", folders)
    cfg = compose_config("train", tmp, f"data.data_dir={tmp / 'six'}", "data.image_size=32",
                         f"data.num_views={CAMERAS}", f"data.num_input_views={INPUTS}", "data.synthesize=null",
                         "data.maximize_view_overlap=false", "data.train_list=data_test.txt",
                         "data.val_list=data_test.txt", "data.test_list=data_test.txt")
    torch.manual_seed(0)
    system = GSLRMSystem(**{k: v for k, v in cfg.model.items() if not k.startswith("_")})
    torch.save({"hyper_parameters": dict(system.hparams), "state_dict": system.state_dict(),  # as Lightning does
                "datamodule_hyper_parameters": OmegaConf.to_container(cfg.data, resolve=True)}, tmp / "tiny.ckpt")
    return tmp


def run_eval(tmp: Path, name: str, *overrides: str) -> Path:
    cfg = compose_config("eval", tmp / name, f"ckpt={tmp / 'tiny.ckpt'}", "split=test", "turntable.frames=0",
                         "metrics.allow_random_init=true", *overrides)
    torch.manual_seed(0)  # LPIPS's random VGG16 (no weight file in tests): the same in every run
    evaluate(cfg)
    return tmp / name / "run"


@pytest.fixture(scope="module")
def runs(tiny_setup) -> dict:
    """The same evaluation one sample at a time and in batches of 4 (5 samples: a full batch and a short one)
    read by 2 DataLoader workers; ``batch_sizes`` lists what the network got in each run."""
    sizes = []

    def reconstruct(self, batch, clip_xyz=None):
        sizes.append(batch.images.shape[0])
        return original(self, batch, clip_xyz)

    original = GSLRMSystem.reconstruct
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GSLRMSystem, "reconstruct", reconstruct)
        single = run_eval(tiny_setup, "single", "batch_size=1", "num_workers=0", "renders=null")
        single_sizes, sizes[:] = list(sizes), []
        batched = run_eval(tiny_setup, "batched", "batch_size=4", "num_workers=2", "renders=2", "ply=false")
    return {"single": single, "batched": batched, "batch_sizes": {"single": single_sizes, "batched": sizes}}


def read_csv(run: Path) -> list[dict]:
    with open(run / "per_view.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_batches_score_every_view_as_one_sample_at_a_time(runs):
    assert runs["batch_sizes"] == {"single": [1] * ANIMALS, "batched": [4, 1]}  # the network ran on whole batches
    single, batched = read_csv(runs["single"]), read_csv(runs["batched"])
    assert len(single) == len(batched) == ANIMALS * CAMERAS
    for a, b in zip(single, batched):
        assert (a["sample"], a["view"], a["input"], a["angle_deg"]) == (b["sample"], b["view"], b["input"],
                                                                        b["angle_deg"])
        assert float(a["psnr"]) == pytest.approx(float(b["psnr"]), abs=1e-4)
        assert float(a["ssim"]) == pytest.approx(float(b["ssim"]), abs=1e-5)
        assert float(a["lpips"]) == pytest.approx(float(b["lpips"]), abs=1e-5)


def test_the_csv_has_one_row_per_sample_and_view_with_the_inputs_flagged(runs, tiny_setup):
    rows = read_csv(runs["batched"])
    assert {(r["sample"], int(r["view"])) for r in rows} == {(f"animal_{k}", v) for k in range(ANIMALS)
                                                             for v in range(CAMERAS)}
    metrics = json.loads((runs["batched"] / "metrics.json").read_text())
    for sample in metrics["samples"]:
        flagged = {int(r["view"]) for r in rows if r["sample"] == sample["sample"] and r["input"] == "1"}
        assert len(flagged) == INPUTS and flagged == {v["view"] for v in sample["views"] if v["input"]}
    # the inputs are those the dataset gives the model: its first num_input_views views of each item
    from facelift.evaluation.evaluator import build_datamodule, load_system
    cfg = compose_config("eval", tiny_setup, f"ckpt={tiny_setup / 'tiny.ckpt'}")
    dataset = build_datamodule(load_system(cfg.ckpt, torch.device("cpu"))[1], cfg).dataset("test")
    for k in range(ANIMALS):
        inputs = set(dataset[k].index[0, :INPUTS, 0].tolist())
        assert inputs == {int(r["view"]) for r in rows if r["sample"] == f"animal_{k}" and r["input"] == "1"}


def test_angles_are_zero_for_inputs_and_the_nearest_input_direction_otherwise(runs, tiny_setup):
    rows = read_csv(runs["batched"])
    assert all(float(r["angle_deg"]) == 0.0 for r in rows if r["input"] == "1")
    assert all(float(r["angle_deg"]) > 1.0 for r in rows if r["input"] == "0")  # no two rig cameras coincide
    # by hand for one animal: camera centres read from its file, angle about the world origin
    centres = {}
    cam_json = json.loads((tiny_setup / "six" / "animal_0" / "opencv_cameras.json").read_text())
    for frame in cam_json["frames"]:
        w2c = torch.tensor(frame["w2c"], dtype=torch.float64)
        centres[frame["view_id"]] = -w2c[:3, :3].T @ w2c[:3, 3]
    mine = [r for r in rows if r["sample"] == "animal_0"]
    inputs = [centres[int(r["view"])] for r in mine if r["input"] == "1"]
    for r in mine:
        c = centres[int(r["view"])]
        expected = min(math.degrees(math.acos(max(-1.0, min(1.0, float(c @ i / (c.norm() * i.norm()))))))
                       for i in inputs)
        assert float(r["angle_deg"]) == pytest.approx(expected, abs=1e-3)


def test_the_angle_is_between_camera_centres_seen_from_the_origin():
    ring = ring_cameras([0.0, 90.0, 200.0, 30.0], elevation_deg=0.0, dtype=torch.float64)  # [4]
    angles = angles_to_nearest_input(ring[None], ring[None, :2])  # inputs: azimuths 0 and 90
    assert angles[0].tolist() == pytest.approx([0.0, 0.0, 110.0, 30.0], abs=1e-4)


def test_aggregates_group_by_role_camera_and_angle_bin():
    def rec(view, is_input, angle, psnr):
        return ViewRecord(0, "a", view, is_input, angle, {"psnr": psnr, "ssim": psnr / 100})

    agg = aggregate([rec(0, True, 0.0, 30.0), rec(1, False, 14.9, 20.0), rec(2, False, 15.0, 10.0),
                     rec(1, False, 29.0, 12.0)], bin_deg=15)
    assert {k: (g.count, g.means["psnr"]) for k, g in agg.roles.items()} == {
        "input": (1, 30.0), "novel": (3, 14.0), "all": (4, 18.0)}
    assert {k: g.count for k, g in agg.per_camera.items()} == {(0, "input"): 1, (1, "novel"): 2, (2, "novel"): 1}
    assert {k: g.means["psnr"] for k, g in agg.per_angle.items()} == {(0, 15): 20.0, (15, 30): 11.0}  # no input
    only_inputs = aggregate([rec(0, True, 0.0, 30.0)], bin_deg=15)
    assert "novel" not in only_inputs.roles and not only_inputs.per_angle


def test_the_aggregates_are_means_of_the_csv(runs):
    rows = read_csv(runs["batched"])
    agg = json.loads((runs["batched"] / "aggregate.json").read_text())

    def check(entry: dict, chosen: list[dict]) -> None:
        assert entry["count"] == len(chosen) > 0
        for k in ("psnr", "ssim", "lpips"):
            assert entry[k] == pytest.approx(sum(float(r[k]) for r in chosen) / len(chosen), rel=1e-9)
        for k in FOREGROUND_METRICS:  # NaN views (no foreground) left out and counted
            kept = [float(r[k]) for r in chosen if not math.isnan(float(r[k]))]
            assert entry["left_out"][k] == len(chosen) - len(kept)
            assert entry[k] == pytest.approx(sum(kept) / len(kept), rel=1e-9) if kept else math.isnan(entry[k])

    check(agg["novel"], [r for r in rows if r["input"] == "0"])
    check(agg["input"], [r for r in rows if r["input"] == "1"])
    check(agg["all"], rows)
    assert sum(e["count"] for e in agg["per_camera"]) == len(rows)
    for e in agg["per_camera"]:
        check(e, [r for r in rows if int(r["view"]) == e["camera"] and r["input"] == str(int(e["role"] == "input"))])
    assert sum(e["count"] for e in agg["per_angle"]) == agg["novel"]["count"]  # novel views only
    for e in agg["per_angle"]:
        assert e["angle_max_deg"] - e["angle_min_deg"] == agg["angle_bin_deg"] == 15
        check(e, [r for r in rows if r["input"] == "0" and e["angle_min_deg"] <= float(r["angle_deg"])
                  < e["angle_max_deg"]])
    metrics = json.loads((runs["batched"] / "metrics.json").read_text())
    assert metrics["aggregate"] == agg and metrics["mean"]["novel"]["psnr"] == pytest.approx(agg["novel"]["psnr"])
    table = (runs["batched"] / "aggregate.md").read_text()
    novel = agg["novel"]  # foreground first, whole-image PSNR after the silhouette scores
    assert f"| novel views | {novel['count']} | {novel['psnr_fg']:.2f} | {novel['iou']:.4f} | " \
           f"{novel['psnr_int']:.2f} | {novel['coverage']:.4f} | {novel['precision']:.4f} | {novel['psnr']:.2f} | {novel['ssim']:.4f} |" in table
    assert "PSNR fg (dB) | IoU |" in table and "PSNR whole image (dB)" in table
    assert "## Per camera" in table and "angle between camera centres seen from the world origin" in table


def test_the_plot_is_a_png(runs):
    path = runs["batched"] / "psnr.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 600 and im.size[1] > 300


def test_renders_and_plys_only_for_the_first_samples_asked(runs):
    every = sorted(p.name for p in (runs["single"] / "samples").iterdir())
    assert every == [f"animal_{k}" for k in range(ANIMALS)]  # renders=null: all
    assert all((runs["single"] / "samples" / s / "gaussians.ply").is_file() for s in every)
    first = sorted(p.name for p in (runs["batched"] / "samples").iterdir())
    assert first == ["animal_0", "animal_1"]  # renders=2
    assert all((runs["batched"] / "samples" / s / "renders.png").is_file() for s in first)
    assert not list((runs["batched"] / "samples").glob("*/gaussians.ply"))  # ply=false


def test_a_sample_handed_twice_for_a_bad_one_is_scored_once(tiny_setup, tmp_path):
    ckpt = torch.load(tiny_setup / "tiny.ckpt", weights_only=True)
    ckpt["datamodule_hyper_parameters"]["skip_bad_samples"] = True
    torch.save(ckpt, tmp_path / "skipping.ckpt")
    six = tiny_setup / "six"
    broken = write_sample(six / "broken", torch.ones(CAMERAS, 3, 32, 32), read_camera_file(
        six / "animal_0" / "opencv_cameras.json").cameras)
    (broken / "images" / "cam_000.png").unlink()
    write_file_list(six / "data_bad.txt", [six / "animal_0", broken, six / "animal_1"])
    cfg = compose_config("eval", tmp_path, f"ckpt={tmp_path / 'skipping.ckpt'}", "split=test", "batch_size=3",
                         "num_workers=0", "data.test_list=data_bad.txt", "turntable.frames=0", "metrics.lpips=false")
    result = evaluate(cfg)  # the batch: animal_0, animal_1 (for the broken one), animal_1
    assert [s["sample"] for s in result["samples"]] == ["animal_0", "animal_1"] and result["num_samples"] == 2
    assert len(read_csv(tmp_path / "run")) == 2 * CAMERAS


def test_cli_runs_batched_with_a_progress_bar(tiny_setup, tmp_path):
    run = subprocess.run([sys.executable, "eval.py", f"ckpt={tiny_setup / 'tiny.ckpt'}", "split=test",
                          "batch_size=2", "num_workers=1", "limit_samples=3", "turntable.frames=0", "renders=0",
                          "metrics.lpips=false", "report.angle_bin_deg=30", f"paths.log_dir={tmp_path}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (out,) = (tmp_path / "eval").iterdir()
    for name in ("per_view.csv", "aggregate.md", "aggregate.json", "psnr.png", "metrics.json"):
        assert (out / name).is_file(), name
    assert not (out / "samples").exists()  # renders=0
    assert "3/3" in run.stderr and "samples/s" in run.stdout  # tqdm's bar; the speed logged at the end
    assert len(read_csv(out)) == 3 * CAMERAS
    agg = json.loads((out / "aggregate.json").read_text())
    assert "lpips" not in agg["all"] and {e["angle_max_deg"] - e["angle_min_deg"] for e in agg["per_angle"]} == {30}


def test_a_held_out_camera_is_its_own_group(tiny_setup):
    """Camera 5 held out: the other 5 cameras give the inputs and novel targets, camera 5 is scored after them."""
    run = run_eval(tiny_setup, "holdout", "batch_size=2", "num_workers=0", "renders=0", "metrics.lpips=false",
                   "data.num_views=5", "data.holdout_views=[5]")
    rows = read_csv(run)
    assert len(rows) == ANIMALS * CAMERAS  # 3 inputs + 2 novel + the held-out camera per animal
    assert {(r["input"], r["holdout"]) for r in rows if r["view"] == "5"} == {("0", "1")}
    assert all(r["holdout"] == "0" for r in rows if r["view"] != "5")
    agg = json.loads((run / "aggregate.json").read_text())
    assert (agg["input"]["count"], agg["novel"]["count"], agg["holdout"]["count"]) == (3 * ANIMALS, 2 * ANIMALS,
                                                                                       ANIMALS)
    held = [float(r["psnr_fg"]) for r in rows if r["holdout"] == "1"]
    assert agg["holdout"]["psnr_fg"] == pytest.approx(sum(held) / len(held), rel=1e-9)
    assert [e["role"] for e in agg["per_camera"] if e["camera"] == 5] == ["holdout"]
    assert "| holdout views | 5 |" in (run / "aggregate.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["mean"]["holdout"]["psnr"] == pytest.approx(agg["holdout"]["psnr"])
    novel = [float(r["psnr"]) for r in rows if r["input"] == "0" and r["holdout"] == "0"]
    assert metrics["mean"]["novel"]["psnr"] == pytest.approx(sum(novel) / len(novel))


@pytest.mark.slow
def test_renders_png_recomputes_the_per_view_foreground_psnr(tiny_setup, tmp_path):
    """`eval.py ckpt=... renders=null`: from each sample's renders.png (its target and render rows) and the data's
    alpha (the dataset's masks), psnr_fg by hand agrees with per_view.csv (to the PNG's 8-bit rounding)."""
    from facelift.evaluation.evaluator import build_datamodule, load_system
    from facelift.evaluation.renders_figure import FigureLayout

    run = subprocess.run([sys.executable, "eval.py", f"ckpt={tiny_setup / 'tiny.ckpt'}", "split=test", "renders=null",
                          "turntable.frames=0", "metrics.lpips=false", "ply=false", "num_workers=0",
                          f"paths.log_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (out,) = (tmp_path / "eval").iterdir()
    rows = read_csv(out)
    cfg = compose_config("eval", tiny_setup, f"ckpt={tiny_setup / 'tiny.ckpt'}")
    dataset = build_datamodule(load_system(cfg.ckpt, torch.device("cpu"))[1], cfg).dataset("test")
    layout = FigureLayout.for_views(32, 32, CAMERAS)
    assert layout.scale == 4  # 32 px views shown at 128 px
    checked = 0
    for k in range(ANIMALS):
        item = dataset[k]  # the same views, in the same order, as eval scored (evaluation items are seeded)
        with Image.open(out / "samples" / f"animal_{k}" / "renders.png") as im:
            figure = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float64) / 255).permute(2, 0, 1)
        assert tuple(figure.shape[1:]) == layout.size
        mine = {int(r["view"]): r for r in rows if r["sample"] == f"animal_{k}"}
        for c, view in enumerate(item.index[0, :, 0].tolist()):  # every view is a target (target_has_input)
            target, render = layout.view(figure, 1, c), layout.view(figure, 2, c)
            fg = item.masks[0, c, 0].double() > 0.5  # the data's alpha
            assert torch.equal(layout.view(figure, 3, c)[0] > 0.5, fg)  # the mask row shows that alpha
            mse = (render - target).square().mean(0)[fg].mean()
            assert float(mine[view]["psnr_fg"]) == pytest.approx(float(-10 * torch.log10(mse)), abs=0.05)
            checked += 1
    assert checked == ANIMALS * CAMERAS
