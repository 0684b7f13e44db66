"""The mouse study: its experiment configs and every ablation row compose as intended; the driver runs end to end."""

import csv
import json
import math
import sys

import pytest
from PIL import Image
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import mouse_study  # noqa: E402  (the driver, called in-process: it runs every step as its own process anyway)

ROWS = {r.name: r for r in mouse_study.study_rows(spike_at=1000, spike_factor=100.0, spike_steps=20)}


def compose_row(name: str, *extra: str):
    row = ROWS[name]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={row.experiment}", *row.overrides, f"paths.root_dir={REPO}",
                                           "paths.output_dir=/tmp/unused", *extra])


def test_scratch_experiment_is_the_reduced_model_from_scratch():
    cfg = compose_row("scratch")
    net = cfg.model.net
    assert (net.d, net.n_layer, net.patch_size, net.d_head) == (512, 8, 8, 64) and cfg.model.init_ckpt is None
    assert (cfg.data.image_size, cfg.data.num_views, cfg.data.num_input_views) == (128, 6, 3)
    assert cfg.data.test_list == "data_test.txt" and cfg.data.target_has_input
    assert cfg.data.normalize_cameras.enabled and cfg.data.normalize_cameras.distance_mode == "global"
    loss = cfg.loss
    assert (loss.l2_loss_weight, loss.ssim_loss_weight, loss.lpips_loss_weight, loss.perceptual_loss_weight) == \
        (1.0, 0.5, 0.0, 0.0)  # nothing that needs a weight file
    assert not cfg.model.val_metrics.lpips and cfg.model.optim.lr_spike is None
    assert cfg.trainer.max_time == "00:00:14:00" and cfg.trainer.accelerator == "gpu"
    assert cfg.data.image_size % net.patch_size == 0


def test_finetune_experiment_is_v2_at_the_reduced_size():
    cfg = compose_row("finetune")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        v2 = compose("train", overrides=["experiment=mouse_gslrm_v2", f"paths.root_dir={REPO}",
                                         "paths.output_dir=/tmp/unused"])
    for key in ("optim", "step_rule"):  # v2's optimiser and step rule, as they are
        assert cfg.model[key] == v2.model[key]
    assert cfg.model.optim.lr == 5e-6 and cfg.model.step_rule.allowed_gradnorm_factor == 100
    assert cfg.loss.lpips_loss_weight == cfg.loss.perceptual_loss_weight == 1.0 and cfg.loss.ssim_loss_weight == 0.5
    assert cfg.data.augmentation == v2.data.augmentation and cfg.data.background_color == "white"
    assert (cfg.model.net.d, cfg.model.net.n_layer) == (512, 8) and (v2.model.net.d, v2.model.net.n_layer) == (1024, 24)
    assert cfg.model.init_ckpt.endswith("weights/gslrm/human_d512.ckpt")
    assert cfg.data.num_input_views == 3 and v2.data.num_input_views == 1  # the row's override, for comparison
    assert list(k for k, v in cfg.logger.items() if v) == ["csv"]  # offline: no wandb
    assert cfg.loss.vgg19_weights.endswith("vgg19/imagenet-vgg-verydeep-19.mat")


@pytest.mark.parametrize("name, key, value", [
    ("norm_per_camera", "distance_mode", "per_camera"), ("norm_off", "enabled", False),
])
def test_normalization_rows_change_one_knob(name, key, value):
    norm = compose_row(name).data.normalize_cameras
    assert norm[key] == value
    base = compose_row("scratch").data.normalize_cameras
    assert {k: v for k, v in norm.items() if k != key} == {k: v for k, v in base.items() if k != key}


def test_seed_recipe_row_and_every_rows_data_instantiates():
    norm = compose_row("norm_seed_recipe").data.normalize_cameras
    assert (norm.up_axis, norm.distance_mode, norm.rescale_focal, norm.recentre) == ("y", "per_camera", False, False)
    for name in ROWS:  # the data module checks every setting at construction
        data = instantiate(compose_row(name).data, _convert_="all")
        assert data.dataset_args["normalize_cameras"].up_axis == ("y" if name == "norm_seed_recipe" else "z")


def test_loss_and_spike_rows():
    assert compose_row("loss_l2_only").loss.ssim_loss_weight == 0.0
    lpips, base = compose_row("loss_lpips").loss, compose_row("scratch").loss
    warm = compose_row("loss_lpips_warmup").loss
    assert (warm.lpips_loss_weight, warm.l2_warmup_steps, base.l2_warmup_steps) == (1.0, 500, 0)
    assert lpips.lpips_loss_weight == 1.0 and base.lpips_loss_weight == 0.0
    assert {k: v for k, v in lpips.items() if k != "lpips_loss_weight"} == \
        {k: v for k, v in base.items() if k != "lpips_loss_weight"}
    perceptual = compose_row("loss_perceptual").loss
    assert (perceptual.l2_loss_weight, perceptual.perceptual_loss_weight, perceptual.lpips_loss_weight) == (1, 1, 1)
    on, off = compose_row("spike_rule_on"), compose_row("spike_rule_off")
    assert on.model.optim.lr_spike == off.model.optim.lr_spike == {"at_step": 1000, "factor": 100.0, "steps": 20}
    assert on.model.step_rule.allowed_gradnorm_factor == 20.0
    assert math.isinf(off.model.step_rule.allowed_gradnorm_factor)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_view_rows_hold_camera_5_out_and_take_the_first_k_of_the_others_as_inputs(k):
    data = compose_row(f"views_{k}_holdout5").data
    assert list(data.holdout_views) == [5] and list(data.input_views) == list(range(k))
    assert (data.num_views, data.num_input_views, data.target_has_input) == (5, k, True)  # all of cameras 0-4
    assert [r.name for r in mouse_study.view_rows()] == [f"views_{n}_holdout5" for n in range(1, 6)]
    assert compose_row("scratch").data.holdout_views == []  # the baseline holds nothing out


def test_summary_leads_with_the_foreground_and_states_the_foreground_fraction(tmp_path):
    groups = {"novel": {"count": 4, "psnr_fg": 21.5, "iou": 0.81, "psnr": 33.0, "ssim": 0.97, "fg_fraction": 0.02},
              "holdout": {"count": 2, "psnr_fg": 18.25, "iou": 0.7, "psnr": 31.0, "fg_fraction": 0.04},
              "all": {"count": 10, "psnr_fg": 20.0, "iou": 0.8, "psnr": 32.0, "fg_fraction": 0.025}}
    rows = [{"row": "views_2_holdout5", "status": "ok", "steps": 100, "what": "w", "test_groups": groups},
            {"row": "views_5_holdout5", "status": "ok", "steps": 90, "what": "w",
             "test_groups": {k: v for k, v in groups.items() if k != "novel"}}]  # 5 inputs: no novel camera
    mouse_study.write_summary(tmp_path, rows, {"num_animals": 4, "minutes": 1})
    text = (tmp_path / "summary.md").read_text()
    assert "| row | status | steps | skipped | novel psnr_fg (dB) | novel IoU | held-out psnr_fg (dB) | held-out IoU" \
           " | novel PSNR whole image (dB) |" in text
    assert "| views_2_holdout5 | ok | 100 | - | 21.50 | 0.810 | 18.25 | 0.700 | 33.00 | 0.970 | - | w |" in text
    assert "| views_5_holdout5 | 5 | 90 | 18.25 | 0.700 | - | - | 31.00 | - | w |" in text  # the ablation table
    assert "2.50 % of the frame in prepared (20 scored views over 2 rows" in text
    assert "UNEQUAL steps (100, 90)" in text


@pytest.mark.slow
def test_study_runs_end_to_end_on_cpu(tmp_path):
    """Tiny: 4 animals at 48 px, 16² views (4 of the 6 per step), a 2-layer model for 2 steps; the baseline and one
    ablation row run, the rows that need weights or a human checkpoint are skipped and say why."""
    out = tmp_path / "study"
    args = ["--out", out, "--num-animals", 4, "--minutes", 5, "--device", "cpu", "--workers", 0, "--gen-width", 48,
            "--gaussians", 600, "--image-size", 16, "--max-steps", 2, "--eval-samples", 1, "--spike", 1, 50, 1,
            "--rows", "scratch,spike_rule_off,loss_lpips,loss_perceptual,finetune,views_2_holdout5", "--weights-dir",
            tmp_path / "no_weights"]
    for o in ("model.net.d=64", "model.net.d_head=16", "model.net.n_layer=2", "data.batch_size_per_gpu=2",
              "trainer.log_every_n_steps=1", "data.num_views=4", "data.num_input_views=2"):
        args += ["--train-override", o]
    assert mouse_study.main([str(a) for a in args]) == 0
    summary = {r["row"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert summary["scratch"]["status"] == summary["spike_rule_off"]["status"] == "ok"
    assert summary["loss_perceptual"]["status"].startswith("skipped: missing weight file")
    assert summary["loss_lpips"]["status"] == f"skipped: missing weight file(s): {tmp_path}/no_weights/lpips/" \
                                             "vgg16-397923af.pth"
    assert Image.open(out / "curves.png").size == (2000, 420)  # the rows that ran, drawn together
    assert summary["finetune"]["status"].startswith("skipped: no --human-ckpt")
    test_animals = (out / "prepared" / "data_test.txt").read_text().split()
    assert (out / "raw" / "data_test.txt").read_text().split() == test_animals  # the split survived preparation
    for row in ("scratch", "spike_rule_off"):
        assert summary[row]["steps"] == 2 and summary[row]["test_samples"] == 1
        assert 0 < summary[row]["test_novel"]["psnr"] < 60
        metrics = json.loads((out / "eval" / row / "metrics.json").read_text())
        assert metrics["split"] == "test" and [s["sample"] for s in metrics["samples"]] == test_animals[:1]
    held = summary["views_2_holdout5"]  # camera 5 never trained on, scored as its own group on the test animals
    assert held["status"] == "ok" and held["test_groups"]["holdout"]["count"] == 1
    assert held["test_groups"]["input"]["count"] == 2 and held["test_groups"]["novel"]["count"] == 2
    assert "psnr_fg" in summary["scratch"]["test_groups"]["novel"]
    text = (out / "summary.md").read_text()
    assert "foreground fraction of the test views:" in text and "## View-count ablation" in text
    with open(out / "runs" / "spike_rule_off" / "csv" / "metrics.csv") as fh:
        lrs = {int(r["step"]): float(r["lr-AdamW/pg1"]) for r in csv.DictReader(fh) if r.get("lr-AdamW/pg1")}
    assert lrs[1] == pytest.approx(4e-4 * 1 / 300 * 50)  # peak x warmup at step 1 x the spike's factor
    commands = (out / "commands.sh").read_text()
    assert commands.count("train.py experiment=mouse_gslrm_scratch") == 3 and commands.count("eval.py") == 3
    assert "model.step_rule.allowed_gradnorm_factor=inf" in commands
    # a second call finds every row done and runs nothing
    assert mouse_study.main([str(a) for a in args]) == 0
    again = {r["row"]: r["status"] for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert again["scratch"] == "ok (earlier run)" and (out / "commands.sh").read_text() == commands
    # rows run as parallel studies are summarised together afterwards, without running the missing ones
    assert mouse_study.main([str(a) for a in args] + ["--rows", "scratch,norm_off", "--summary-only"]) == 0
    summary = {r["row"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert summary["norm_off"]["status"] == "not run (no evaluation there)" and summary["scratch"]["steps"] == 2
    assert (out / "commands.sh").read_text() == commands and not (out / "runs" / "norm_off").exists()


def test_finetune_drops_only_the_feature_losses_whose_weights_are_missing(tmp_path):
    weights = tmp_path / "weights"
    (weights / "lpips").mkdir(parents=True)
    (weights / "lpips" / "vgg16-397923af.pth").write_bytes(b"present")  # never read: a dry run
    args = ["--out", tmp_path / "study", "--rows", "finetune,loss_lpips", "--weights-dir", weights, "--human-ckpt",
            tmp_path / "human.ckpt", "--dry-run"]
    assert mouse_study.main([str(a) for a in args]) == 0
    commands = (tmp_path / "study" / "commands.sh").read_text().splitlines()
    finetune = next(c for c in commands if "experiment=mouse_gslrm_finetune" in c)
    assert "loss.perceptual_loss_weight=0" in finetune and "loss.lpips_loss_weight=0" not in finetune
    assert f"model.init_ckpt={tmp_path / 'human.ckpt'}" in finetune
    assert any("loss.lpips_loss_weight=1.0" in c for c in commands)  # the LPIPS row runs: its file is there


def test_foreground_fraction_is_stated_per_prepared_set():
    """Full frames and animal crops: each set's mean weighted by its rows' view counts, never one mean of both."""
    rows = [{"prepared": "prepared", "test_groups": {"all": {"count": 600, "fg_fraction": 0.06}}},
            {"prepared": "prepared", "test_groups": {"all": {"count": 200, "fg_fraction": 0.10}}},
            {"prepared": "prepared_crop", "test_groups": {"all": {"count": 100, "fg_fraction": 0.20}}},
            {"prepared": "prepared_crop", "status": "skipped"}]
    line = mouse_study._fg_fraction(rows)
    # (600 * 0.06 + 200 * 0.10) / 800 = 0.07; the crops alone 0.20
    assert "7.00 % of the frame in prepared (800 scored views over 2 rows)" in line
    assert "20.00 % of the frame in prepared_crop (100 scored views over 1 rows)" in line
