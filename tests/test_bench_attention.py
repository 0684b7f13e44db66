"""scripts/bench_attention.py on a CPU: its fp32 reference, FLOP count, FP8 quantization and projection, and a tiny
end-to-end run (the GPU kernels themselves are not exercised here: no cuDNN, no FP8 attention on a CPU)."""

from __future__ import annotations

import json
import runpy
import sys

import torch
import torch.nn.functional as F
from conftest import REPO

from facelift.models.gslrm import GSLRMConfig

BENCH = runpy.run_path(str(REPO / "scripts" / "bench_attention.py"))
FP8 = runpy.run_path(str(REPO / "scripts" / "cudnn_fp8_attention.py"))


def _qkv(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen) for _ in range(4)]


def test_chunked_reference_equals_unchunked_sdpa():
    q, k, v, _ = _qkv((2, 3, 37, 16))
    full = F.scaled_dot_product_attention(q, k, v)
    for chunk in (1, 5, 37):
        torch.testing.assert_close(BENCH["reference_attention"](q, k, v, chunk=chunk), full, rtol=1e-5, atol=1e-6)


def test_chunked_reference_gradients_equal_autograd():
    q, k, v, grad = _qkv((2, 3, 29, 16), seed=1)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*leaves)
    out.backward(grad)
    expected = (out.detach(), *(t.grad for t in leaves))
    for got, want in zip(BENCH["reference_gradients"](q, k, v, grad, chunk=6), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_shapes_and_flops_are_the_models():
    cfg = GSLRMConfig()
    heads = cfg.d // cfg.d_head
    for name, views in (("reconstruction", 6), ("training", 4)):
        tokens = cfg.n_gaussians + views * 512 * 512 // cfg.patch_size**2
        assert BENCH["SHAPES"][name][1:] == (heads, tokens, cfg.d_head)
    b, h, n, d = BENCH["SHAPES"]["reconstruction"]
    forward = BENCH["attention_flops"](b, h, n, d)
    assert forward == 4 * n * n * cfg.d  # 4·N²·d per layer, as bench_gslrm counts it
    assert round(cfg.n_layer * forward / 1e12) == 59  # gslrm_spec.md: 59 of the 74 TFLOP are attention
    assert BENCH["attention_flops"](b, h, n, d, backward=True) == 3.5 * forward


def test_e4m3_quantization_round_trips_with_power_of_two_scales():
    assert FP8["e4m3_scale"](torch.tensor(1.0)).item() == 256.0  # largest 2^k with 2^k <= 448
    assert FP8["e4m3_scale"](torch.tensor(3.0)).item() == 128.0
    x = torch.randn(1, 2, 50, 16).to(torch.bfloat16) * 3
    x8, descale = FP8["quantize_e4m3"](x)
    assert x8.dtype == torch.float8_e4m3fn and x8.shape == x.shape and descale.shape == (1, 1, 1, 1)
    assert x8.stride() == (50 * 2 * 16, 16, 2 * 16, 1)  # a [B, N, H, D] buffer, like the model's q/k/v views
    assert torch.log2(descale).item().is_integer()
    assert x8.float().abs().max() <= 448
    assert 0 < BENCH["relative_error"](x8.float() * descale, x.float()) < 0.05  # 3 mantissa bits: ~3 % rms
    assert FP8["poison"](torch.empty(4, dtype=torch.float8_e4m3fn)).float().isnan().all()


def test_projection_swaps_24_layers_of_attention():
    rows = [{"shape": "reconstruction", "pass": "forward", "variant": "sdpa-cudnn", "ms": 5.0},
            {"shape": "reconstruction", "pass": "forward", "variant": "fp8", "ms": 2.5},
            {"shape": "reconstruction", "pass": "forward", "variant": "fp8+quant", "error": "no graph"}]
    proj = BENCH["projections"](rows, {"reconstruction": 183.0, "training": 670.0})
    assert proj["reconstruction"] == {"sdpa-cudnn": 183.0, "fp8": 123.0}
    assert "training" not in proj


def test_cpu_run_writes_rows_and_degrades_without_cudnn(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench_attention.py", "--device", "cpu", "--repeats", "1", "--warmup", "0",
                                      "--sets", "2", "--out", str(out)])
    assert BENCH["main"]() == 0
    rows = {(r["shape"], r["pass"], r["variant"]): r for r in json.loads(out.read_text())["rows"]}
    assert len(rows) == 12
    flash = rows["training", "forward+backward", "sdpa-flash"]  # bf16 on a CPU, against the fp32 reference
    assert flash["ms"] > 0 and set(flash["rel_err"]) == {"out", "dq", "dk", "dv"}
    assert all(0 < e < 2e-2 for e in flash["rel_err"].values())
    assert "error" in rows["reconstruction", "forward", "sdpa-cudnn"]  # no cuDNN here: a row, not a crash
    assert all("error" in r for key, r in rows.items() if key[2].startswith("fp8"))
