"""scripts/bench_gslrm.py: its FLOP count agrees with the spec's figure, and its CPU path runs end to end."""

from __future__ import annotations

import json
import runpy
import sys

import pytest
from facelift.models.gslrm import GSLRMConfig

from conftest import REPO

BENCH = runpy.run_path(str(REPO / "scripts" / "bench_gslrm.py"))


def test_full_size_forward_is_74_tflop_mostly_attention():
    flops = BENCH["forward_flops"](GSLRMConfig(), batch=1, views=6, size=512)
    assert round(sum(flops.values()) / 1e12) == 74  # gslrm_spec.md: 74 TFLOP for 6 views of 512²
    assert round(flops["attention"] / 1e12) == 59


@pytest.mark.slow
def test_cpu_tiny_run_writes_every_row(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench_gslrm.py", "--device", "cpu", "--tiny", "--size", "16", "--repeats", "1",
                                      "--warmup", "0", "--backends", "auto,cudnn", "--precisions", "autocast",
                                      "--out", str(out)])
    assert BENCH["main"]() == 0
    result = json.loads(out.read_text())
    auto, cudnn = result["reconstruction"]["rows"]
    assert auto["ms"] > 0 and auto["gaussians"] == 2 + 6 * 16 * 16
    assert "skipped" in cudnn  # no cuDNN attention on a CPU: reported, not fatal
    train = {(r["load"], r["checkpointing"]): r for r in result["training"]["rows"]}
    assert sorted(train) == [("init", "keep"), ("init", "recompute"), ("pixel", "keep"), ("pixel", "recompute")]
    assert all(r["ms"] > 0 and r["hardware_tflop"] > r["model_tflop"] for r in train.values())
    assert all(0 < r["attention_ms"] and 0 < r["render_ms"] for r in train.values())
    # recomputing the attention too costs more hardware FLOPs; the model FLOPs are the same
    assert train["pixel", "recompute"]["hardware_tflop"] > train["pixel", "keep"]["hardware_tflop"]
    assert train["pixel", "recompute"]["model_tflop"] == train["pixel", "keep"]["model_tflop"]
    assert train["init", "keep"]["log_scale_shift"] == 0 and train["pixel", "keep"]["log_scale_shift"] != 0
