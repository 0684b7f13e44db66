"""Config values that cannot work stop train.py and eval.py before any work, with one line naming the key."""

import subprocess
import sys

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_gslrm_training import compose_config

from facelift.config_check import check_eval_config, check_train_config, overwritten_choices
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


@pytest.mark.parametrize("experiment", [None, *sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))])
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


def test_a_model_chosen_on_the_command_line_replaces_the_experiments_network_and_the_run_says_what_it_kept(tmp_path):
    """`experiment=human_gslrm_sample model=gslrm_tiny`: gslrm_tiny's sizes (as its file writes them), and one line
    naming the experiment's values that land on the chosen model (its LR, as the experiment file writes it)."""
    tiny, sample = (OmegaConf.load(REPO / "conf" / f) for f in ("model/gslrm_tiny.yaml",
                                                                 "experiment/human_gslrm_sample.yaml"))
    typed = ["experiment=human_gslrm_sample", "model=gslrm_tiny"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={REPO}", f"paths.data_dir={tmp_path}", *typed])
        note = overwritten_choices(cfg, "train", typed)
        kept = overwritten_choices(cfg, "train", [*typed, f"model.optim.lr={tiny.optim.lr}"])
        alone = overwritten_choices(compose("train", overrides=["model=gslrm_tiny"]), "train", ["model=gslrm_tiny"])
    assert (cfg.model.net.d, cfg.model.net.d_head, cfg.model.net.n_layer) == (tiny.net.d, tiny.net.d_head,
                                                                              tiny.net.n_layer)
    assert note.startswith("experiment=human_gslrm_sample sets ") and note.endswith(" over model=gslrm_tiny; give "
                                                                                    "KEY=VALUE on the command line "
                                                                                    "to keep a value")
    assert f"model.optim.lr={sample.model.optim.lr} (was {tiny.optim.lr})" in note
    assert "model.optim.lr" not in kept  # a key typed on the command line wins, so it is not reported
    assert alone is None  # no experiment: nothing written over the choice
