"""Sweeps of the tiny default job: Optuna (conf/hparams_search/) proposes trials, each trial's validation metric goes
back into the study, and the study resumes; the submitit launcher (conf/hydra/launcher/) runs the jobs of a sweep."""

import csv
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facelift.data.synthetic.blob_scenes import write_dataset

REPO = Path(__file__).resolve().parents[1]
METRIC = "val/psnr_novel"  # novel-view PSNR of the final validation
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
