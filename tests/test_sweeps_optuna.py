"""Sweeps of the tiny default job: Optuna (conf/hparams_search/) proposes trials, each trial's validation metric goes
back into the study, and the study resumes; the submitit launcher (conf/hydra/launcher/) runs the jobs of a sweep."""

import csv
import pickle
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir

from facelift.data.synthetic.blob_scenes import write_dataset
from facelift.resolvers import register_resolvers

REPO = Path(__file__).resolve().parents[1]
METRIC = "val/psnr_fg_novel"  # mouse_gslrm_optuna's optimized_metric (tiny_optuna keeps it)
SET = {"num_samples": 8, "num_views": 12}  # a smaller synthetic set than the default job's (4 s to write, not 20)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The synthetic set made once, where the jobs look for it: parallel jobs never race to write it."""
    data = tmp_path_factory.mktemp("data")
    write_dataset(data / "synthetic_human_32px", rig="human", size=32, seed=0, **SET)
    return data


def train(data_dir: Path, log_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "train.py", f"paths.data_dir={data_dir}", f"paths.log_dir={log_dir}",
                          *(f"data.synthesize.{k}={v}" for k, v in SET.items()), "trainer.max_steps=2", *overrides],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def last_logged(job_dir: Path, key: str) -> float:
    """The last value of ``key`` in a job's csv log (the final validation's)."""
    with open(job_dir / "csv" / "metrics.csv") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)][-1]


def job_config(job_dir: Path) -> dict:
    return yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())


def test_the_mouse_search_space_names_keys_the_mouse_experiment_has():
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=mouse_gslrm_finetune", "hparams_search=mouse_gslrm_optuna"],
                      return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "maximize" and sweeper.sampler.seed is not None and cfg.optimized_metric == METRIC
    assert sweeper.study_name == "mouse_gslrm_finetune_optuna" and sweeper.storage.startswith("sqlite:///")
    for key in sweeper.params:  # every searched key exists in the experiment (a typo would fail each trial)
        node = cfg
        for part in key.split("."):
            assert part in node, f"{key}: no {part}"
            node = node[part]
    assert {"model.optim.lr", "loss.lpips_loss_weight", "loss.perceptual_loss_weight", "loss.ssim_loss_weight",
            "model.step_rule.allowed_gradnorm_factor", "model.optim.warmup"} <= set(sweeper.params)


@pytest.mark.slow
def test_optuna_sweep_tells_each_trial_its_metric_and_resumes(data_dir, tmp_path):
    train(data_dir, tmp_path, "hparams_search=tiny_optuna")  # 3 trials
    (sweep,) = (tmp_path / "train" / "multirun").iterdir()
    storage = f"sqlite:///{tmp_path / 'train' / 'optuna' / 'train_optuna.db'}"
    trials = optuna.load_study(study_name="train_optuna", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in trials:  # the trial's metric is what its job logged at its last validation, with its proposal
        job = sweep / str(trial.number)
        assert trial.value == pytest.approx(last_logged(job, METRIC), rel=1e-6)
        assert job_config(job)["model"]["optim"]["lr"] == pytest.approx(trial.params["model.optim.lr"])
    assert len({t.params["model.optim.lr"] for t in trials}) == 3  # three different proposals
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(trials, key=lambda t: t.value)
    assert results["best_value"] == pytest.approx(best.value) and results["best_params"] == best.params

    # the same command again (one more trial here) continues the study: the three trials stay, a fourth joins
    train(data_dir, tmp_path, "hparams_search=tiny_optuna", "hydra.sweeper.n_trials=1")
    again = optuna.load_study(study_name="train_optuna", storage=storage).trials
    assert len(again) == 4 and [t.value for t in again[:3]] == [t.value for t in trials]
    (second,) = set((tmp_path / "train" / "multirun").iterdir()) - {sweep}
    assert again[3].value == pytest.approx(last_logged(second / "0", METRIC), rel=1e-6)


@pytest.mark.slow
def test_submitit_local_launcher_runs_two_jobs_and_returns_both_results(data_dir, tmp_path):
    train(data_dir, tmp_path, "hydra.mode=MULTIRUN", "hydra/launcher=submitit_local", "seed=0,1", f"optimized_metric={METRIC}")
    (sweep,) = (tmp_path / "train" / "multirun").iterdir()
    returned = {}
    for result in sweep.glob(".submitit/*/*_result.pkl"):  # what each submitit job handed back to the launcher
        with open(result, "rb") as f:
            outcome, job_return = pickle.load(f)
        assert outcome == "success"
        returned[job_return.cfg["seed"]] = job_return.return_value
    assert sorted(returned) == [0, 1]
    for seed, value in returned.items():
        job = sweep / str(seed)  # job number = position in the sweep = the seed here
        assert job_config(job)["seed"] == seed and (job / "checkpoints" / "last.ckpt").is_file()
        assert value == pytest.approx(last_logged(job, METRIC), rel=1e-6)
