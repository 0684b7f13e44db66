"""Config values that cannot work stop train.py and eval.py before any work, with one line naming the key."""

import subprocess
import sys

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_gslrm_training import compose_config

from facelift.config_check import (check_device, check_eval_config, check_train_config, check_train_data,
                                   check_train_files,
                                   overwritten_choices)
from facelift.errors import ConfigError, InputError, MissingWeightsError, SetupError
from facelift.resolvers import register_resolvers

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
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


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
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


@pytest.mark.slow
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




def compose_with_choices(tmp_path, *overrides):
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={REPO}", f"paths.data_dir={tmp_path}", *overrides],
                      return_hydra_config=True)
    return cfg, dict(cfg.hydra.runtime.choices)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_a_gpu_experiment_without_cuda_says_what_to_add(tmp_path, monkeypatch, experiment):
    """The fix and, where it was measured, a CPU step's time: as the experiment file writes them (cpu_run)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg, choices = compose_with_choices(tmp_path, f"experiment={experiment}")
    if cfg.trainer.accelerator != "gpu":
        return check_device(cfg, choices)  # a CPU experiment runs here
    own = OmegaConf.load(REPO / "conf" / "experiment" / f"{experiment}.yaml").get("cpu_run") or {}
    add = own.get("add", "trainer=cpu")
    told = ([f"about {own['seconds_per_step']:g} s a step on the CPU"] if own.get("seconds_per_step") else []) + \
        ([own["note"]] if own.get("note") else [])
    speed = f" ({'; '.join(told)})" if told else ""
    with pytest.raises(SetupError) as err:
        check_device(cfg, choices)
    assert str(err.value) == (f"experiment={experiment} selects trainer=gpu but no CUDA device is visible; "
                              f"add {add}{speed}")
    check_device(compose_with_choices(tmp_path, f"experiment={experiment}", *add.split())[0], choices)  # the fix works


def test_the_measured_cpu_step_time_is_in_the_message(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg, choices = compose_with_choices(tmp_path, "experiment=mouse_gslrm_scratch")
    with pytest.raises(SetupError, match=r"; add trainer=cpu data.batch_size_per_gpu=1 \(about \d+ s a step on the CPU\)$"):
        check_device(cfg, choices)


def test_every_missing_weight_file_is_named_once_with_what_it_is_and_how_to_get_it(tmp_path):
    """mouse_gslrm_v2 without weights/: FaceLift's checkpoint (read as init and as the VGG19 source) and LPIPS's
    VGG16, each at its own path with its own advice; never a .mat to put at the .pt's path."""
    cfg = compose_config("train", tmp_path, "experiment=mouse_gslrm_v2", "trainer=cpu", f"paths.weights_dir={tmp_path}")
    with pytest.raises(MissingWeightsError) as err:
        check_train_files(cfg)
    pt, vgg16 = tmp_path / "gslrm" / "ckpt_0000000000021125.pt", tmp_path / "lpips" / "vgg16-397923af.pth"
    parts = str(err.value).split(" | ")
    assert len(parts) == 2 and "\n" not in str(err.value)
    assert parts[0].startswith("model.init_ckpt, loss.vgg19_weights: FaceLift's released GS-LRM checkpoint")
    assert f"not found at {pt}; download checkpoints/gslrm/ckpt_0000000000021125.pt from the Hugging Face repo " \
           "wlyu/OpenFaceLift to that path" in parts[0]
    assert ".mat" not in parts[0]
    assert parts[1].startswith("loss.lpips_vgg16_weights, model.val_metrics.lpips_vgg16_weights: ") and \
        f"not found at {vgg16}; " in parts[1] and "get_lpips_vgg16.py" in parts[1]


def test_a_weight_path_the_user_gave_is_not_found_or_a_folder_without_download_advice(tmp_path):
    for given, said in ((tmp_path / "nowhere.ckpt", f"not found at {tmp_path / 'nowhere.ckpt'}"),
                        (tmp_path, f"{tmp_path} is a folder, not a file")):
        cfg = compose_config("train", tmp_path, f"model.init_ckpt={given}")
        with pytest.raises(MissingWeightsError) as err:
            check_train_files(cfg)
        assert str(err.value) == f"model.init_ckpt: GS-LRM weights to start from{':' if given == tmp_path else ''} {said}"
    check_train_files(compose_config("train", tmp_path))  # the default job needs no weight file


@pytest.mark.slow
def test_a_run_that_fails_during_set_up_says_one_line_and_leaves_no_run_folder(tmp_path):
    for script, args, start in (
            ("train.py", ["experiment=mouse_gslrm_v2", "trainer=cpu", f"paths.weights_dir={tmp_path / 'w'}"],
             "error: model.init_ckpt, loss.vgg19_weights: FaceLift's released GS-LRM checkpoint"),
            ("eval.py", [], "error: ckpt=???: must be given on the command line (usage: python eval.py ckpt=PATH")):
        run = subprocess.run([sys.executable, script, *args, f"paths.log_dir={tmp_path / 'out'}"], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
        assert run.stderr.strip().splitlines()[-1].startswith(start)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_missing_data_names_the_list_expected_and_the_command_that_makes_it(tmp_path):
    cfg = compose_config("train", tmp_path, "experiment=mouse_gslrm_scratch", "trainer=cpu")
    with pytest.raises(InputError) as err:
        check_train_data(cfg)
    prepared = tmp_path / "data" / "mouse_study" / "prepared"
    assert str(err.value).startswith(f"{prepared / 'data_train.txt'}: train file list not found")
    assert f"python scripts/prepare_mouse_data.py --src {tmp_path / 'data' / 'mouse_study' / 'raw'} --dst {prepared}" \
        in str(err.value)
    check_train_data(compose_config("train", tmp_path))  # the default job makes its set on first use


def test_paths_root_dir_is_the_checkout_from_any_working_directory(tmp_path, monkeypatch):
    """The sweep line crashed resolving ${hydra:runtime.cwd} in hydra.sweep.dir; the root must not need Hydra."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from facelift.resolvers import register_resolvers

    checkout = Path(__file__).resolve().parents[1]  # this test file sits in <checkout>/tests/
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACELIFT_ROOT", raising=False)
    register_resolvers()
    paths = OmegaConf.create({"paths": OmegaConf.load(checkout / "conf" / "paths" / "default.yaml")}).paths
    assert Path(paths.root_dir) == checkout
    assert Path(paths.log_dir) == checkout / "outputs"


EVAL_WITHOUT_CKPT = """
import runpy, sys
sys.argv = ["eval.py"]
try:
    runpy.run_path("eval.py", run_name="__main__")
except SystemExit as stop:
    print(stop.code, "lightning" in sys.modules, "torch" in sys.modules)
"""


@pytest.mark.slow
def test_eval_without_ckpt_stops_before_importing_lightning_or_torch():
    """The one-line error comes before the heavy imports (Lightning alone takes ~6 s to import on 2 cores)."""
    run = subprocess.run([sys.executable, "-c", EVAL_WITHOUT_CKPT], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.split() == ["2", "False", "False"], run.stdout + run.stderr[-2000:]
    assert run.stderr.startswith("error: ckpt=???: must be given on the command line")
