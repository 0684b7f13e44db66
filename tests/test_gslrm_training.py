"""GS-LRM training and evaluation end to end on the CPU: the default job, the step rule, resume, eval, experiments."""

import csv
import json
import logging
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from conftest import REFERENCE, REPO
from facelift.data.datamodule import MultiViewDataModule
from facelift.evaluation.curves import read_series
from facelift.data.synthetic.blob_scenes import write_dataset
from facelift.evaluation.evaluator import evaluate
from facelift.gaussians import load_ply
from facelift.models.gslrm.checkpoint import load_gslrm
from facelift.resolvers import register_resolvers
from facelift.run import train
from facelift.systems.gslrm_system import GSLRMSystem
from facelift.systems.optim import warmup_then_decay


def compose_config(name: str, tmp: Path, *overrides: str):
    """A composed config whose paths all point into ``tmp`` (no Hydra run: outputs go to ``tmp/run``)."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=[f"paths.root_dir={REPO}", f"paths.data_dir={tmp / 'data'}",
                                        f"paths.output_dir={tmp / 'run'}", *overrides])


def logged(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` rows of one metric in a run's csv log."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [(int(r["step"]), float(r[key])) for r in csv.DictReader(f) if r.get(key)]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> Path:
    """The default job (`python train.py`, no arguments) on a smaller synthetic set, 40 steps."""
    tmp = tmp_path_factory.mktemp("default")
    run = subprocess.run([sys.executable, "train.py", f"paths.data_dir={tmp / 'data'}", f"paths.log_dir={tmp}",
                          "data.synthesize.num_samples=8", "data.synthesize.num_views=12", "trainer.max_steps=40",
                          "trainer.log_every_n_steps=1", "trainer.val_check_interval=20"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (run_dir,) = (tmp / "train").iterdir()
    (run_dir / "console.txt").write_text(run.stdout + run.stderr)
    return run_dir


@pytest.mark.slow
def test_default_job_makes_its_data_trains_and_says_where_things_are(default_run):
    cfg = compose_config("train", default_run)  # what `python train.py` composes
    assert cfg.model.net.n_layer == 2 and cfg.trainer.accelerator == "cpu" and cfg.data.image_size == 32
    data = default_run.parents[1] / "data" / "synthetic_human_32px"
    assert (data / "data_train.txt").is_file() and len(list(data.glob("sample_*"))) == 8  # made on first use
    losses = [v for _, v in logged(default_run, "train/loss")]
    assert len(losses) == 40 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, f"loss did not fall: {first:.4f} -> {last:.4f}"
    assert logged(default_run, "val/psnr") and (default_run / "val_images" / "step_0000040.png").is_file()
    novel = logged(default_run, "val/psnr_novel")  # the 4 targets that were not inputs, at each validation
    assert [s for s, _ in novel] == [s for s, _ in logged(default_run, "val/psnr")]
    assert (default_run / "checkpoints" / "last.ckpt").is_file() and (default_run / ".hydra" / "config.yaml").is_file()
    console = (default_run / "console.txt").read_text()
    assert "checkpoints:" in console and "metrics log:" in console and "it/s" in console  # where things are; bar


@pytest.mark.slow
def test_the_default_job_prints_no_warning_a_user_cannot_act_on(default_run):
    """Lightning's cloud-logger tip, torch's pytree FutureWarning (from Lightning's loader), the summary's "FLOPs 0"
    and torch's too-many-workers warning are gone; the parameter count is one line."""
    console = (default_run / "console.txt").read_text()
    for noise in ("Tip:", "litlogger", "LeafSpec", "FLOPs", "worker processes", "Warning", "deprecated"):
        assert noise not in console, noise
    assert re.search(r"model: GSLRMSystem, 0\.19\d M parameters \(0\.19\d M trainable\)", console)


def test_every_logger_names_where_its_metrics_are(tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    from facelift.run import metrics_location

    wandb = WandbLogger(save_dir=str(tmp_path), offline=True, project="t")
    try:
        where = metrics_location(wandb)
        folder = next((tmp_path / "wandb").glob("offline-run-*"))
        assert where == f"{folder} (wandb, offline: wandb sync {folder})"
    finally:
        wandb.experiment.finish()
    csv_dir = metrics_location(L.pytorch.loggers.CSVLogger(str(tmp_path), name="csv", version=""))
    assert Path(csv_dir) == tmp_path / "csv"


@pytest.mark.slow
def test_resume_continues_the_step_count(default_run, tmp_path):
    last = default_run / "checkpoints" / "last.ckpt"
    cfg = compose_config("train", tmp_path, f"paths.data_dir={default_run.parents[1] / 'data'}",
                         f"ckpt_path={last}", "trainer.max_steps=44", "trainer.log_every_n_steps=1",
                         "trainer.val_check_interval=1000")
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 44
    steps = [s for s, _ in logged(tmp_path / "run", "train/loss")]
    assert steps[0] >= 40 and steps[-1] == 43  # steps 40..43 only: training continued, it did not start over
    before = torch.load(last, weights_only=True)["optimizer_states"][0]["state"]
    assert ckpt["optimizer_states"][0]["state"][0]["step"] == before[0]["step"] + 4  # Adam moments carried on


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_resume_restores_step_optimizer_and_schedule(default_run, tmp_path):
    """train.py dies by SIGKILL (no clean-up at all) after writing a checkpoint; ``ckpt_path=.../last.ckpt`` then
    carries on from that step with its Adam moments and its place in the LR schedule (warmup 10 of 12 steps here:
    a schedule started afresh would log LR 0 at the first resumed step)."""
    common = [f"paths.data_dir={default_run.parents[1] / 'data'}", "trainer.max_steps=12",
              "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0",
              "callbacks.model_checkpoint.every_n_train_steps=3"]
    with open(tmp_path / "killed.log", "w") as log_file:
        proc = subprocess.Popen([sys.executable, "train.py", *common, f"paths.log_dir={tmp_path}"], cwd=REPO,
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not (found := list(tmp_path.glob("train/*/checkpoints/last.ckpt"))):
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint within 300 s"
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
    (last,) = found
    killed_at = torch.load(last, weights_only=True)
    step = killed_at["global_step"]
    assert proc.returncode == -9 and 3 <= step < 12  # killed mid-run, from a checkpoint renamed into place whole

    cfg = compose_config("train", tmp_path / "resumed", *common, f"ckpt_path={last}")
    train(cfg)
    run = tmp_path / "resumed" / "run"
    assert [s for s, _ in logged(run, "train/loss")] == list(range(step, 12))  # the step count went on
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 12 and final["lr_schedulers"][0]["last_epoch"] == 12
    assert final["optimizer_states"][0]["state"][0]["step"] == killed_at["optimizer_states"][0]["state"][0]["step"] \
        + 12 - step == 12  # Adam's state was restored, not started afresh (that would count 12 - step)
    base = cfg.model.optim.lr
    schedule = warmup_then_decay(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base), 10, 12, "cosine")
    with open(run / "csv" / "metrics.csv") as f:
        lr_key = next(k for k in csv.DictReader(f).fieldnames if k.startswith("lr-"))
    assert [v for _, v in logged(run, lr_key)] == pytest.approx([base * schedule.lr_lambdas[0](s)
                                                                  for s in range(step, 12)])


class PlantedFailures(GSLRMSystem):
    """Step 1 gets a NaN loss and step 2 a gradient 1e6 times too large: FaceLift's rule must skip both."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return {1: loss * float("nan"), 2: loss * 1e6}.get(self.global_step, loss)


class ParameterTrace(L.Callback):
    def __init__(self):
        self.changed = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before = [p.detach().clone() for p in module.net.parameters()]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.changed.append(any(not torch.equal(a, p) for a, p in zip(self.before, module.net.parameters())))


@pytest.mark.slow
def test_step_rule_skips_a_planted_nan_and_a_planted_explosion_and_logs_both(tiny_set, tmp_path, caplog):
    cfg = compose_config("train", tmp_path, f"paths.data_dir={tiny_set.parent}",
                         "model.optim.warmup=0")  # a warmup would start at LR 0: step 0 would not move either
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    system = PlantedFailures(**{k: v for k, v in cfg.model.items() if not k.startswith("_")})
    trace = ParameterTrace()
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=L.pytorch.loggers.CSVLogger(tmp_path, name="csv",
                        version=""), callbacks=[trace], limit_val_batches=0, log_every_n_steps=1,
                        enable_checkpointing=False, enable_progress_bar=False)
    with caplog.at_level(logging.WARNING, logger="facelift"):
        trainer.fit(system, datamodule=datamodule)
    assert trace.changed == [True, False, False, True]  # steps 1 and 2 left the weights alone
    assert dict(system.step_rule.skipped) == {"nonfinite_loss": 1, "gradnorm": 1}
    assert trainer.global_step == 4 and trainer.lr_scheduler_configs[0].scheduler.last_epoch == 4  # LR moved on
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skips) == 2 and "nonfinite_loss" in skips[0] and "gradnorm" in skips[1]
    rows = {s: v for s, v in logged(tmp_path, "train/skipped_gradnorm")}
    assert rows[1] == 0 and rows[2] == 1 and logged(tmp_path, "train/skipped_nonfinite_loss")[-1][1] == 1


class ReachTrace(GSLRMSystem):
    """Records, per training step, how far the pixel Gaussians reach from the origin (max |coordinate|)."""

    def reconstruct(self, batch, clip_xyz=None):
        rec = super().reconstruct(batch, clip_xyz)
        if self.training:
            self.reach.append(float(rec.gaussians.means[:, self.net.config.n_gaussians:].detach().abs().max()))
        return rec


@pytest.mark.slow
def test_the_clamp_holds_for_clip_xyz_steps_then_training_runs_unclamped(tiny_set, tmp_path):
    cfg = compose_config("train", tmp_path, f"paths.data_dir={tiny_set.parent}",
                         "model.net.clip_xyz=true", "model.clip_xyz_steps=2")
    system = ReachTrace(**{k: v for k, v in cfg.model.items() if not k.startswith("_")})
    system.reach = []
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, limit_val_batches=0,
                        enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(system, datamodule=hydra.utils.instantiate(cfg.data, _convert_="all"))
    assert max(system.reach[:2]) <= 1.0 < min(system.reach[2:])  # random depths reach past the box unclamped


@pytest.mark.slow
def test_eval_writes_metrics_renders_turntables_and_plys(default_run, tmp_path):
    cfg = compose_config("eval", tmp_path, f"ckpt={default_run / 'checkpoints' / 'last.ckpt'}",
                         "metrics.allow_random_init=true", "turntable.size=32")
    result = evaluate(cfg)
    out = tmp_path / "run"
    assert (out / "metrics.json").is_file() and result["num_samples"] == 1  # 8 samples: the last one is val
    (sample,) = result["samples"]
    assert [v["input"] for v in sample["views"]] == [True] * 4 + [False] * 4  # inputs are supervised too
    for view in sample["views"]:
        assert 5 < view["psnr"] < 60 and 0 < view["ssim"] <= 1 and view["lpips"] >= 0
    novel = [v["psnr"] for v in sample["views"] if not v["input"]]
    assert result["mean"]["novel"]["psnr"] == pytest.approx(sum(novel) / len(novel))
    folder = out / "samples" / sample["sample"]
    for name in ("renders.png", "gaussians.ply", "turntable.mp4", "turntable.png"):
        assert (folder / name).is_file(), name
    import imageio_ffmpeg  # here only: the GPU machine's tests import this module's helpers without it

    assert imageio_ffmpeg.count_frames_and_secs(str(folder / "turntable.mp4"))[0] == 150
    cloud = load_ply(folder / "gaussians.ply")
    assert 0 < cloud.num_gaussians <= 2 + 4 * 32 * 32  # pruned, as FaceLift's inference
    assert (cloud.means.abs() <= 1.0 + 1e-6).all()  # the pruning box


@pytest.mark.slow
def test_the_eval_command_the_default_job_prints_works_without_lpips_weights(default_run, tmp_path):
    """A fresh checkout has no weights/: LPIPS is skipped with a one-line note, PSNR and SSIM are still scored."""
    (command,) = re.findall(r"evaluate: (python eval\.py ckpt=\S+?)\)", (default_run / "console.txt").read_text())
    run = subprocess.run([sys.executable, *command.split()[1:], f"paths.weights_dir={tmp_path / 'no_weights'}",
                          f"paths.log_dir={tmp_path}", "turntable.frames=0"],  # the turntable only costs time here
                         cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    notes = [line for line in run.stdout.splitlines() if "LPIPS skipped" in line]
    assert len(notes) == 1 and str(tmp_path / "no_weights" / "lpips" / "vgg16-397923af.pth") in notes[0]
    ((out,),) = [list((tmp_path / "eval").iterdir())]
    view = json.loads((out / "metrics.json").read_text())["samples"][0]["views"][0]
    assert set(view) == {"view", "input", "holdout", "angle_deg", "psnr", "ssim", "psnr_fg", "psnr_int", "iou", "coverage",
                         "precision", "fg_fraction"}  # no lpips key


@pytest.mark.slow
def test_a_training_checkpoint_loads_as_the_network_it_trained(default_run):
    """d_head is in no weight shape: it must come from the checkpoint's config (the tiny model's is 16, not 64)."""
    ckpt = default_run / "checkpoints" / "last.ckpt"
    net, layout = load_gslrm(ckpt)
    assert layout == "project" and net.config.d_head == 16 and net.config.n_layer == 2
    system = GSLRMSystem(**torch.load(ckpt, weights_only=True)["hyper_parameters"]).eval()
    system.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    views = MultiViewDataModule(**torch.load(ckpt, weights_only=True)["datamodule_hyper_parameters"]
                                ).dataset("val")[0].select(slice(0, 4))
    with torch.no_grad():
        assert torch.equal(net(views).means, system.net(views).means)


@pytest.mark.slow
def test_a_missing_weight_file_is_one_sentence(tmp_path):
    run = subprocess.run([sys.executable, "train.py", "experiment=human_gslrm", "trainer=cpu",
                          f"paths.weights_dir={tmp_path}", f"paths.log_dir={tmp_path}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loss.vgg19_weights: MatConvNet's ImageNet VGG19 (the perceptual loss) not found at "
                           f"{tmp_path / 'vgg19' / 'imagenet-vgg-verydeep-19.mat'}; download ")


@pytest.mark.slow
def test_eval_refuses_what_is_not_a_training_checkpoint(tmp_path):
    run = subprocess.run([sys.executable, "eval.py", f"ckpt={REFERENCE / 'gslrm_tiny_parity.pt'}",
                          f"paths.log_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error:") and "not a train.py checkpoint" in run.stderr


@pytest.fixture(scope="module")
def mouse_set(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("mouse")
    write_dataset(tmp / "raw", "mouse", num_samples=3, size=72)
    run = subprocess.run([sys.executable, "scripts/prepare_mouse_data.py", "--src", str(tmp / "raw"), "--dst",
                          str(tmp / "prep"), "--size", "32", "--val-fraction", "0.34"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    fixture = torch.load(REFERENCE / "gslrm_tiny_parity.pt", weights_only=True)
    torch.save(fixture["checkpoint"], tmp / "ckpt_tiny.pt")  # FaceLift's format, gslrm_tiny's architecture
    return tmp


def test_mouse_gslrm_v2_holds_the_forks_values(tmp_path):
    cfg = compose_config("train", tmp_path, "experiment=mouse_gslrm_v2")
    m, d, loss = cfg.model, cfg.data, cfg.loss
    assert (m.net.d, m.net.n_layer, m.net.patch_size, d.image_size) == (1024, 24, 8, 512)
    assert (d.num_views, d.num_input_views, d.target_has_input, d.maximize_view_overlap) == (6, 1, True, False)
    assert (loss.l2_loss_weight, loss.lpips_loss_weight, loss.perceptual_loss_weight, loss.ssim_loss_weight,
            loss.l2_warmup_steps) == (1.0, 1.0, 1.0, 0.5, 0)
    assert (m.optim.lr, list(m.optim.betas), m.optim.weight_decay, m.optim.warmup) == (5e-6, [0.9, 0.95], 0.05, 500)
    assert (m.step_rule.grad_clip_norm, m.step_rule.allowed_gradnorm_factor) == (1.0, 100.0)
    assert m.init_ckpt.endswith("ckpt_0000000000021125.pt") and m.net.gradient_checkpointing
    assert cfg.trainer.precision == "bf16-mixed" and cfg.matmul_precision == "high"
    assert (cfg.trainer.max_steps, cfg.trainer.val_check_interval,
            cfg.callbacks.model_checkpoint.every_n_train_steps) == (50000, 500, 500)
    assert d.normalize_cameras.enabled and d.normalize_cameras.target_camera_distance == 2.7
    assert list(d.augmentation.brightness_range) == [0.9, 1.1] and cfg.logger.wandb.project == "mouse_facelift"
    human = compose_config("train", tmp_path, "experiment=human_gslrm")
    assert (human.data.num_views, human.data.num_input_views, human.loss.perceptual_loss_weight) == (8, 6, 0.5)


@pytest.mark.slow
def test_mouse_gslrm_v2_runs_two_steps_with_the_tiny_model_from_an_official_checkpoint(mouse_set, tmp_path):
    run = subprocess.run(
        [sys.executable, "train.py", "experiment=mouse_gslrm_v2", "model=gslrm_tiny", "trainer=cpu",
         "trainer.max_steps=2", f"data.data_dir={mouse_set / 'prep'}", "data.image_size=32", "data.num_workers=0",
         f"paths.official_gslrm_ckpt={mouse_set / 'ckpt_tiny.pt'}", "loss.vgg19_weights=null",
         "loss.allow_random_init=true", f"paths.log_dir={tmp_path}", "logger.wandb.offline=true"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "initialised GS-LRM from" in run.stdout  # Hydra logs to stdout
    (run_dir,) = (tmp_path / "mouse_gslrm_v2").iterdir()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["optim"]["lr"] == 5e-6
    assert list(run_dir.glob("wandb/offline-run-*"))  # logged to wandb (offline)


@pytest.mark.slow
def test_multirun_from_another_folder_puts_each_job_where_the_readme_says_and_summarises_the_sweep(tmp_path):
    """`train.py -m` with the shipped configs, typed outside the checkout (a copy of train.py and conf/, as a fresh
    clone): both jobs under <checkout>/outputs/<task>/multirun/<date>_<time>/<job>/ with a checkpoint at its LR and a
    final validation (2 steps, fewer than val_check_interval), and sweep_summary.csv with one row per job."""
    clone, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    shutil.copytree(REPO / "conf", clone / "conf")
    shutil.copy(REPO / "train.py", clone / "train.py")
    elsewhere.mkdir()
    run = subprocess.run([sys.executable, str(clone / "train.py"), "-m", "model.optim.lr=1e-3,3e-3",
                          "trainer.max_steps=2", "data.synthesize.num_samples=4", "data.synthesize.num_views=8"],
                         cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (sweep,) = (clone / "outputs" / "train" / "multirun").iterdir()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}", sweep.name)
    assert not list(elsewhere.iterdir())  # nothing written where the command was typed
    lrs = sorted(torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
                 ["optim"]["lr"] for job in ("0", "1"))
    assert lrs == [1e-3, 3e-3]
    final = {job: logged(sweep / job, "val/psnr") for job in ("0", "1")}
    assert all(len(rows) == 1 and math.isfinite(rows[0][1]) for rows in final.values())
    with open(sweep / "sweep_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], float(r["model.optim.lr"])) for r in rows] == [("0", 1e-3), ("1", 3e-3)]
    assert [float(r["val/psnr"]) for r in rows] == pytest.approx([final["0"][0][1], final["1"][0][1]])
    for r in rows:  # and one line per job on the console
        assert f"job {r['job']}: model.optim.lr={r['model.optim.lr']} -> val/psnr=" in run.stdout + run.stderr


@pytest.mark.slow
def test_ddp_on_two_processes_gives_the_single_process_loss_at_the_same_global_batch(tmp_path):
    """`trainer=ddp` through Lightning (CPU processes and gloo here; GPUs and NCCL on a GPU host): the same global
    batch of 2 as one process with batch 2, so the same losses step after step (gradients are averaged)."""
    common = ["trainer.precision=32-true", "trainer.max_steps=3", "trainer.log_every_n_steps=1",
              "data.view_sampling=fixed", "data.maximize_view_overlap=false", "data.synthesize.num_samples=3",
              f"paths.data_dir={tmp_path / 'data'}"]  # fixed views: both runs see the same two training samples
    losses = {}
    for name, extra in (("single", ["data.batch_size_per_gpu=2"]),
                        ("ddp", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                 "data.batch_size_per_gpu=1"])):
        run = subprocess.run([sys.executable, "train.py", *common, *extra, f"paths.log_dir={tmp_path / name}"],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        (run_dir,) = (tmp_path / name / "train").iterdir()
        losses[name] = [v for _, v in logged(run_dir, "train/loss")]
    assert len(losses["ddp"]) == 3 and losses["ddp"] == pytest.approx(losses["single"], rel=1e-4)
    assert losses["single"][2] < losses["single"][0]  # and training moved


def test_freeze_takes_facelifts_parameter_names_and_keeps_them_out_of_the_optimizer(tmp_path):
    cfg = compose_config("train", tmp_path, "model.freeze=[transformer_layers.0-0,gaussian_upsampler]")
    system = hydra.utils.instantiate(cfg.model)
    frozen = {n for n, p in system.net.named_parameters() if not p.requires_grad}
    assert frozen == {f"transformer.blocks.0.{m}.weight" for m in ("attn_norm", "mlp_norm", "attn.qkv", "attn.out",
                                                                   "mlp.fc1", "mlp.fc2")} | \
        {"heads.learned_norm.weight", "heads.learned_proj.weight"}
    system.trainer = L.Trainer(max_steps=10, accelerator="cpu", logger=False)  # configure_optimizers reads max_steps
    optimizer = system.configure_optimizers()["optimizer"]
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in system.net.parameters() if p.requires_grad}


@pytest.mark.slow
def test_plot_run_draws_the_curves_of_a_run(default_run, tmp_path):
    done = subprocess.run([sys.executable, "scripts/plot_run.py", str(default_run), str(default_run),
                           "--out", str(tmp_path / "curves.png")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    image = Image.open(tmp_path / "curves.png")
    assert image.size == (2000, 420)
    series = read_series(default_run / "csv" / "metrics.csv")
    assert series["train/loss"][0].tolist() == list(range(40)) and "val/psnr_novel" in series
    assert {"val/psnr_fg", "val/psnr_fg_novel", "val/psnr_fg_input", "val/iou", "val/psnr_fg_left_out"} <= set(series)
    missing = subprocess.run([sys.executable, "scripts/plot_run.py", str(tmp_path)], cwd=REPO, capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "no metrics.csv here" in missing.stderr
