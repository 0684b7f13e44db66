"""scripts/bench_study.py end to end on the CPU: both ways trained and evaluated, the report's keys, the plot."""

import json
import subprocess
import sys

import pytest

from conftest import REPO
from facelift.data.synthetic.blob_scenes import write_dataset


@pytest.mark.slow  # two 3-step trainings and two evaluations in a subprocess
def test_bench_study_reports_both_ways(tmp_path):
    data = write_dataset(tmp_path / "set", "human", num_samples=4, size=32, num_views=12)
    (data / "data_test.txt").write_text((data / "data_val.txt").read_text())  # the benchmark scores a test split
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "scripts/bench_study.py", "--out", str(out), "--data", str(data),
                          "--experiment", "none", "--steps", "3", "--override", "trainer.log_every_n_steps=1",
                          "--fast", "model.compile=false",
                          "--eval-override", "data.test_list=data_test.txt"],
                         cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["train"]) == set(report["eval"]) == {"today", "fast"}
    for way, r in report["train"].items():
        assert r["timed_steps"] >= 1 and r["steps_per_s"] > 0 and r["samples_per_s"] > 0 and r["fit_wall_s"] > 0
        assert {"gpu_utilisation_pct", "peak_memory_gib", "mfu", "model_tflop_per_step", "loss_curve",
                "skipped_updates"} <= set(r)
        assert r["loss_curve"]["step"] == [0, 1, 2] and len(r["loss_curve"]["loss"]) == 3
        assert report["eval"][way]["samples"] == 1 and report["eval"][way]["samples_per_s"] > 0
    assert report["train"]["today"]["overrides"] == ["trainer.log_every_n_steps=1"]  # the configs as they are
    assert "data.cache=device" in report["train"]["fast"]["overrides"]
    profile = report["train"]["fast"]["profile"]
    assert profile["top"] and 0 < sum(t["share"] for t in profile["top"]) <= 1 + 1e-9 and profile["table"]
    assert set(report["speedup"]) == {"train_steps_per_s", "train_fit_wall", "eval_samples_per_s"}
    assert out.with_suffix(".png").stat().st_size > 1000
