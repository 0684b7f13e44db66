"""Config values that cannot work stop train.py and eval.py before any work, with one line naming the key."""

import subprocess
import sys

import pytest
from conftest import REPO
from test_gslrm_training import compose_config

from facelift.config_check import check_eval_config, check_train_config
from facelift.errors import ConfigError

TRAIN_CASES = [  # (overrides, the line's start, a word of the problem)
    (["data.num_input_views=9"], "data.num_input_views=9", "more input views than data.num_views=8"),
    (["data.num_views=4", "data.num_input_views=4", "data.target_has_input=false"], "data.num_views=4",
     "leaves no target view"),
    (["data.input_views=[0,1]"], "data.input_views=[0, 1]", "num_input_views=4 distinct view ids"),
    (["model.render_backend=vulkan"], "model.render_backend=vulkan", "unknown value; use one of auto, gsplat, torch"),
    (["model.render_backend=gsplat"], "model.render_backend=gsplat", "needs CUDA but trainer.accelerator=cpu"),
    (["model.net.attention_backend=fast"], "model.net.attention_backend=fast", "unknown value"),
    (["data.image_size=36"], "data.image_size=36", "not a multiple of model.net.patch_size=8"),
    (["loss.ssim_loss_weight=-0.5"], "loss.ssim_loss_weight=-0.5", "non-negative"),
    (["loss.l2_loss_weight=nan"], "loss.l2_loss_weight=nan", "non-negative finite number"),
    (["model.optim.lr=0"], "model.optim.lr=0", "positive"),
    (["model.optim.schedule=step"], "model.optim.schedule=step", "cosine, linear, constant"),
    (["data.batch_size_per_gpu=0"], "data.batch_size_per_gpu=0", ">= 1"),
    (["trainer.max_steps=0"], "trainer.max_steps=0", ">= 1"),
]


@pytest.mark.parametrize("overrides, key, problem", TRAIN_CASES, ids=[c[1] for c in TRAIN_CASES])
def test_train_config_values_that_cannot_work_name_their_key(tmp_path, overrides, key, problem):
    with pytest.raises(ConfigError) as err:
        check_train_config(compose_config("train", tmp_path, *overrides))
    assert str(err.value).startswith(f"{key}: ") and problem in str(err.value), str(err.value)


@pytest.mark.parametrize("experiment", [None, "human_gslrm", "human_gslrm_sample", "mouse_gslrm_v2",
                                        "human_mvdiffusion", "mouse_mvdiffusion"])
def test_every_shipped_config_passes(tmp_path, experiment):
    check_train_config(compose_config("train", tmp_path, *([f"experiment={experiment}"] if experiment else [])))


EVAL_CASES = [
    (["split=train"], "split=train", "use one of val, test"),
    (["device=tpu"], "device=tpu", "auto, cpu, cuda or cuda:N"),
    (["precision=fp16"], "precision=fp16", "fp32, bf16"),
    (["metrics.lpips=maybe"], "metrics.lpips=maybe", "auto, true, false"),
    (["render_backend=vulkan"], "render_backend=vulkan", "auto, gsplat, torch"),
    (["data.num_views=4", "data.num_input_views=6"], "data.num_input_views=6", "more input views than"),
    (["limit_samples=0"], "limit_samples=0", ">= 1"),
]


@pytest.mark.parametrize("overrides, key, problem", EVAL_CASES, ids=[c[1] for c in EVAL_CASES])
def test_eval_config_values_that_cannot_work_name_their_key(tmp_path, overrides, key, problem):
    with pytest.raises(ConfigError) as err:
        check_eval_config(compose_config("eval", tmp_path, "ckpt=x.ckpt", *overrides))
    assert str(err.value).startswith(f"{key}: ") and problem in str(err.value), str(err.value)
    check_eval_config(compose_config("eval", tmp_path, "ckpt=x.ckpt"))  # the defaults pass


def test_train_py_stops_before_any_work_with_one_line(tmp_path):
    run = subprocess.run([sys.executable, "train.py", "data.image_size=36", f"paths.data_dir={tmp_path / 'data'}",
                          f"paths.log_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == ("error: data.image_size=36: is not a multiple of "
                                                   "model.net.patch_size=8 (GS-LRM cuts each view into square "
                                                   "patches)")
    assert not (tmp_path / "data").exists()  # the synthetic set was not started


def test_paths_root_dir_is_the_checkout_from_any_working_directory(tmp_path, monkeypatch):
    """The sweep line crashed resolving ${hydra:runtime.cwd} in hydra.sweep.dir; the root must not need Hydra."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from facelift.run import register_resolvers

    checkout = Path(__file__).resolve().parents[1]  # this test file sits in <checkout>/tests/
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACELIFT_ROOT", raising=False)
    register_resolvers()
    paths = OmegaConf.create({"paths": OmegaConf.load(checkout / "conf" / "paths" / "default.yaml")}).paths
    assert Path(paths.root_dir) == checkout
    assert Path(paths.log_dir) == checkout / "outputs"
