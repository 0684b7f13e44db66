"""What a training run leaves behind, exercised in-process on the tiny default job (4 steps each): the TensorBoard
logger's scalars, the periodic ``step_*.ckpt`` files, and the ``linear`` and ``constant`` LR schedules step by step
against their definition (linear warmup from 0 over ``warmup`` steps, then 1 - progress, or 1)."""

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from facelift.run import train
from test_gslrm_training import compose_config, logged

BASE_LR, WARMUP, STEPS = 2.0e-3, 2, 4
pytestmark = pytest.mark.slow  # train() runs: the whole entry point, seconds each


def expected_lr(schedule: str, step: int) -> float:
    """The LR of optimizer step ``step`` by the schedule's definition (not by `warmup_then_decay`)."""
    if step < WARMUP:
        return BASE_LR * step / WARMUP
    return BASE_LR * (1.0 if schedule == "constant" else 1.0 - (step - WARMUP) / (STEPS - WARMUP))


def run_tiny(tmp: Path, data_dir: Path, *overrides: str) -> Path:
    cfg = compose_config("train", tmp, f"paths.data_dir={data_dir}", f"trainer.max_steps={STEPS}",
                         f"model.optim.lr={BASE_LR}", f"model.optim.warmup={WARMUP}", "trainer.log_every_n_steps=1",
                         "trainer.limit_val_batches=0", "callbacks.progress_bar=null", *overrides)
    train(cfg)
    return tmp / "run"


@pytest.fixture(scope="module")
def tensorboard_linear_run(tiny_set, tmp_path_factory) -> Path:
    return run_tiny(tmp_path_factory.mktemp("tb"), tiny_set.parent, "logger=tensorboard", "model.optim.schedule=linear",
                    "callbacks.model_checkpoint.every_n_train_steps=2")


def test_tensorboard_logger_writes_the_training_scalars(tensorboard_linear_run):
    (events,) = (tensorboard_linear_run / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "train/grad_norm" in tags
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(STEPS))
    assert all(torch.isfinite(torch.tensor(e.value)) for e in acc.Scalars("train/loss"))
    assert not (tensorboard_linear_run / "csv").exists()  # logger=tensorboard replaces the csv logger


def test_periodic_checkpoints_are_written_every_n_steps(tensorboard_linear_run):
    ckpts = tensorboard_linear_run / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == ["last.ckpt", "step_0000002.ckpt", "step_0000004.ckpt"]
    for name, step in (("step_0000002.ckpt", 2), ("step_0000004.ckpt", 4)):
        assert torch.load(ckpts / name, weights_only=True)["global_step"] == step


def test_linear_schedule_decays_to_zero_after_its_warmup(tensorboard_linear_run):
    acc = EventAccumulator(str(next((tensorboard_linear_run / "tensorboard").glob("events.out.tfevents.*"))))
    acc.Reload()
    lr_tags = [t for t in acc.Tags()["scalars"] if t.startswith("lr-")]
    assert len(lr_tags) == 2  # AdamW's two groups (decayed tensors, the rest): one schedule drives both
    for tag in lr_tags:
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == list(range(STEPS))
        assert [v for _, v in got] == pytest.approx([expected_lr("linear", s) for s in range(STEPS)], rel=1e-6)


def test_constant_schedule_holds_the_lr_after_its_warmup(tiny_set, tmp_path):
    run = run_tiny(tmp_path, tiny_set.parent, "model.optim.schedule=constant",
                   "callbacks.model_checkpoint.every_n_train_steps=100")
    lr_keys = [k for k in (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",") if k.startswith("lr-")]
    assert len(lr_keys) == 2
    for key in lr_keys:
        got = logged(run, key)
        assert [s for s, _ in got] == list(range(STEPS))
        assert [v for _, v in got] == pytest.approx([expected_lr("constant", s) for s in range(STEPS)], rel=1e-6)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["last.ckpt"]  # none due in 4 steps
