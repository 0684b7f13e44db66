"""One attention call at GS-LRM's shapes: PyTorch SDPA (cuDNN, flash; bf16) against cuDNN's FP8 attention, as JSON.

    PYTHONPATH=. python scripts/bench_attention.py --out bench_attention.json   # CUDA (an H100 or H200), ~1-2 min
    PYTHONPATH=. python scripts/bench_attention.py --device cpu --out b.json    # tiny shapes on a CPU: code paths only

Why (issue 12): attention is 80 % of GS-LRM's FLOPs (4·N²·d per layer) and cuDNN's bf16 kernel runs it at ~405
TFLOP/s, which bounds reconstruction at ~180 ms against a 120 ms target; FP8 tensor cores are twice as fast as bf16.
Shapes, [B, H, N, D]: reconstruction [1, 16, 24578, 64] (6 views of 512², patch 8, plus the 2 learned tokens) and
training [2, 16, 16386, 64] (4 views). Inputs are random normal (q and k std ``--qk-std``, v and the upstream gradient
std 1), q, k, v strided views of one [B, N, 3, H, D] bf16 tensor as the model's fused qkv Linear makes them.

Rows, per shape: ``sdpa-cudnn`` and ``sdpa-flash`` (bf16), forward, and forward+backward for the training shape;
``fp8`` (cuDNN's FP8 kernel via cudnn-frontend on pre-quantized e4m3 q, k, v: the kernel alone) and ``fp8+quant`` (the
same plus quantizing q, k, v (and dO) from bf16 each call, as the model would have to: per-tensor power-of-two scales
from each tensor's amax, on the GPU). FP8 rows write O (and dq, dk, dv) in bf16 where cuDNN builds it, else fp16,
else e4m3 dequantized: ``out_dtype`` says which. At the training shape the forward rows run the training graph (it
also writes the softmax stats), unless cuDNN builds no FP8 backward (``backward_error``). P's scale is ``--p-scale``
(the ``fp8`` forward rows also record O's error at ``--p-scales-extra``); dP's is calibrated from one run's amax. If
cudnn-frontend cannot import or build, the FP8 rows carry the error and the SDPA rows still run.

Timing: median of ``--repeats`` samples after ``--warmup``; a sample calls the variant once on each of ``--sets`` input
sets in turn (so no set stays in L2, and host overhead is amortised) and counts sample / sets, by CUDA events.
TFLOP/s: 4·B·H·N²·D forward, 2.5x that more for a backward. Accuracy: ‖x − ref‖/‖ref‖ for O (and dq, dk, dv) against
fp32 math SDPA on the same, unquantized inputs, chunked over queries; outputs the kernel writes are NaN-poisoned first.
``projection``: what a reconstruction (training step) would take if all 24 layers' attention ran at a row's speed:
baseline − 24·t(sdpa-cudnn) + 24·t(row), baselines 183 ms (issue 12's reconstruction) and 670 ms (README's training
step, pixel load). A projection, not a measurement: the rest of the network is assumed unchanged; ``fp8+quant`` is
the row the model could get (it pays for the quantization), ``fp8`` a bound.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the FP8 wrapper beside this file
from cudnn_fp8_attention import CudnnFp8Attention, poison, quantize_e4m3

LAYERS = 24
SHAPES = {"reconstruction": (1, 16, 24578, 64), "training": (2, 16, 16386, 64)}  # [B, H, N, D]
TINY_SHAPES = {"reconstruction": (1, 2, 200, 64), "training": (2, 2, 136, 64)}
BASELINE_MS = {"reconstruction": 183.0, "training": 670.0}  # with cuDNN bf16 attention (module docstring)
SDPA = {"sdpa-cudnn": SDPBackend.CUDNN_ATTENTION, "sdpa-flash": SDPBackend.FLASH_ATTENTION}
REFERENCE_BYTES = 2**30  # fp32 score block the reference holds at once


def attention_flops(b: int, h: int, n: int, d: int, backward: bool = False) -> float:
    """QK^T and PV at 2 FLOPs a multiply-add: 4·B·H·N²·D; a backward adds 2.5x that (five N²·D matmuls)."""
    forward = 4.0 * b * h * n * n * d
    return forward * 3.5 if backward else forward


def _chunk(q: Tensor, budget: int) -> int:
    b, h, n, _ = q.shape
    return max(1, min(n, budget // (b * h * n * 4)))


def reference_attention(q: Tensor, k: Tensor, v: Tensor, chunk: int | None = None) -> Tensor:
    """fp32 math SDPA of [B, H, N, D] inputs, over chunks of queries so only a [chunk, N] score block is held."""
    q, k, v = (t.detach().float() for t in (q, k, v))
    chunk = chunk or _chunk(q, REFERENCE_BYTES)
    out = torch.empty_like(q)
    with sdpa_kernel([SDPBackend.MATH]):
        for i in range(0, q.shape[2], chunk):
            out[:, :, i:i + chunk] = F.scaled_dot_product_attention(q[:, :, i:i + chunk], k, v)
    return out


def reference_gradients(q: Tensor, k: Tensor, v: Tensor, grad: Tensor, chunk: int | None = None):
    """fp32 (out, dq, dk, dv) for upstream gradient ``grad``: each query chunk's forward and backward in turn, exact
    because the loss sum(out·grad) is a sum over queries (dk, dv accumulate over the chunks)."""
    q, grad = q.detach().float(), grad.float()
    k, v = (t.detach().float().requires_grad_() for t in (k, v))
    chunk = chunk or _chunk(q, REFERENCE_BYTES // 4)  # the backward holds a few blocks of that size
    out, dq = torch.empty_like(q), torch.empty_like(q)
    with sdpa_kernel([SDPBackend.MATH]):
        for i in range(0, q.shape[2], chunk):
            qc = q[:, :, i:i + chunk].clone().requires_grad_()
            oc = F.scaled_dot_product_attention(qc, k, v)
            oc.backward(grad[:, :, i:i + chunk])
            out[:, :, i:i + chunk], dq[:, :, i:i + chunk] = oc.detach(), qc.grad
    return out, dq, k.grad, v.grad


def relative_error(x: Tensor, ref: Tensor) -> float:
    """‖x − ref‖ / ‖ref‖ in fp32 (NaN if x holds any NaN)."""
    return float(f"{((x.float() - ref).norm() / ref.norm()).item():.4g}")


@dataclass
class Inputs:
    q: Tensor  # [B, H, N, D] bf16, strided views of one [B, N, 3, H, D] tensor (requires grad)
    k: Tensor
    v: Tensor
    grad: Tensor  # [B, H, N, D] bf16: the upstream gradient of backward rows


def make_inputs(shape: tuple[int, int, int, int], seed: int, device: str, qk_std: float) -> Inputs:
    b, h, n, d = shape
    gen = torch.Generator(device).manual_seed(seed)
    qkv = torch.randn((b, n, 3, h, d), generator=gen, device=device)
    qkv[:, :, :2] *= qk_std
    qkv = qkv.to(torch.bfloat16).requires_grad_()
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    grad = torch.randn(shape, generator=gen, device=device).to(torch.bfloat16)
    return Inputs(q, k, v, grad)


def median_ms(call, sets: int, device: str, warmup: int, repeats: int) -> float:
    """Median ms of one ``call(i)``; each sample runs it on every input set i in turn."""
    def sample() -> float:
        if device != "cuda":
            t0 = time.perf_counter()
            for i in range(sets):
                call(i)
            return 1000 * (time.perf_counter() - t0)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(sets):
            call(i)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)

    for _ in range(warmup):
        sample()
    return statistics.median(sample() for _ in range(repeats)) / sets


def sdpa_call(backend: SDPBackend, backward: bool):
    """x -> (out,) or (out, dq, dk, dv); autograd.grad gives fresh gradients (no accumulation kernel)."""
    def call(x: Inputs) -> tuple[Tensor, ...]:
        if not backward:
            with torch.no_grad(), sdpa_kernel([backend]):
                return (F.scaled_dot_product_attention(x.q, x.k, x.v),)
        with sdpa_kernel([backend]):
            out = F.scaled_dot_product_attention(x.q, x.k, x.v)
        return (out.detach(), *torch.autograd.grad(out, (x.q, x.k, x.v), x.grad))
    return call


def errors(outputs, refs) -> dict[str, float]:
    return {name: relative_error(x, r) for name, x, r in zip(("out", "dq", "dk", "dv"), outputs, refs)}


def bench_sdpa(name: str, sets: list[Inputs], refs, backward: bool, args) -> dict:
    call = sdpa_call(SDPA[name], backward)
    row = {"rel_err": errors(call(sets[0]), refs)}
    row["ms"] = median_ms(lambda i: call(sets[i]), len(sets), args.device, args.warmup, args.repeats)
    return row


def build_fp8(cudnn, shape, training: bool, p_scale: float) -> tuple[CudnnFp8Attention, dict]:
    """The FP8 attention with the first output dtype cuDNN builds (bf16, fp16, e4m3), and the errors of the others."""
    refused = {}
    for dtype in (torch.bfloat16, torch.float16, torch.float8_e4m3fn):
        try:
            return CudnnFp8Attention(cudnn, shape, dtype, training, p_scale), refused
        except Exception as err:  # noqa: BLE001 - cudnnGraphNotSupportedError, the backend's RuntimeError, ...
            refused[str(dtype)] = _first_line(err)
    raise RuntimeError(f"cuDNN built no FP8 attention graph: {refused}")


def bench_fp8(attn: CudnnFp8Attention, sets: list[Inputs], refs, backward: bool, quantize: bool, args) -> dict:
    buf = attn.buf
    pre = [_quantized(x, attn.training) for x in sets]  # e4m3 q, k, v (dO) and descales of each set

    def call(i: int) -> None:
        buf.update(_quantized(sets[i], backward) if quantize else pre[i])
        attn.forward()
        if backward:
            attn.backward()

    buf.update(pre[0])
    amax = attn.calibrate()
    for name in ("o", "dQ", "dK", "dV") if backward else ("o",):
        poison(buf[name])
    call(0)
    names = ("o", "dQ", "dK", "dV") if backward else ("o",)
    row = {"rel_err": errors([attn.dequantized(n) for n in names], refs), "amax": _sig_dict(amax)}
    if not backward and not quantize:  # P's scale is a runtime input: O's error at other scales costs one call each
        row["out_rel_err_by_p_scale"] = {args.p_scale: row["rel_err"]["out"]}
        for p_scale in args.p_scales_extra:
            buf["scale_s"].fill_(p_scale)
            buf["descale_s"].fill_(1.0 / p_scale)
            call(0)
            row["out_rel_err_by_p_scale"][p_scale] = relative_error(attn.dequantized("o"), refs[0])
        buf["scale_s"].fill_(args.p_scale)
        buf["descale_s"].fill_(1.0 / args.p_scale)
    row["ms"] = median_ms(call, len(sets), args.device, args.warmup, args.repeats)
    return row


def _quantized(x: Inputs, with_grad: bool) -> dict[str, Tensor]:
    out = {}
    for name, t in (("q", x.q), ("k", x.k), ("v", x.v)) + ((("dO", x.grad),) if with_grad else ()):
        out[name], out[f"descale_{name}"] = quantize_e4m3(t.detach())
    return out


def bench_shape(shape_name: str, shape, cudnn, args, save) -> list[dict]:
    """Every row of one shape; the FP8 graphs are built after the SDPA rows ran, and ``save`` runs after each row, so
    a crash inside cuDNN still leaves the rows before it on disk."""
    sets = [make_inputs(shape, seed, args.device, args.qk_std) for seed in range(args.sets)]
    training = shape_name == "training"
    rows, fp8 = [], {}  # fp8: the built attention under "attn", or the reason there is none under "error"
    for backward in (False, True) if training else (False,):
        x = sets[0]
        refs = reference_gradients(x.q, x.k, x.v, x.grad) if backward else (reference_attention(x.q, x.k, x.v),)
        flops = attention_flops(*shape, backward=backward)
        for name in (*SDPA, "fp8", "fp8+quant"):
            row = {"shape": shape_name, "pass": "forward+backward" if backward else "forward", "variant": name}
            try:
                if name in SDPA:
                    row |= bench_sdpa(name, sets, refs, backward, args)
                else:
                    fp8 = fp8 or _fp8_attention(cudnn, shape, training, args)
                    row |= {"p_scale": args.p_scale} | {k: v for k, v in fp8.items() if k != "attn"}
                    if backward and "backward_error" in fp8:
                        row["error"] = fp8["backward_error"]
                    elif "attn" in fp8:
                        row |= bench_fp8(fp8["attn"], sets, refs, backward, name == "fp8+quant", args)
            except Exception as err:  # noqa: BLE001 - a kernel that cannot run (no cuDNN here, OOM) is a row
                row["error"] = _first_line(err)
            if "ms" in row:
                row["tflops"] = float(f"{flops / row['ms'] / 1e9:.4g}")
                row["ms"] = round(row["ms"], 3)
            rows.append(row)
            _print_row(row)
            save(rows)
        del refs
    return rows


def _fp8_attention(cudnn, shape, training: bool, args) -> dict:
    if isinstance(cudnn, str):
        return {"error": cudnn}
    if args.device != "cuda":
        return {"error": "cuDNN's FP8 attention needs a CUDA device"}
    info = {}
    for with_backward in (True, False) if training else (False,):  # no backward graph: the forward rows still run
        try:
            attn, refused = build_fp8(cudnn, shape, with_backward, args.p_scale)
            return info | {"attn": attn, "out_dtype": str(attn.out_dtype), "engines": attn.engines(),
                           "refused_out_dtypes": refused}
        except Exception as err:  # noqa: BLE001 - recorded in the FP8 rows; the SDPA rows stand without them
            info["backward_error" if with_backward else "error"] = _first_line(err)
    return info


def projections(rows: list[dict], baselines: dict[str, float]) -> dict:
    """Projected ms per variant (module docstring): forward rows for reconstruction, forward+backward for training."""
    out = {"note": "projection, not a measurement: baseline - 24 * t(sdpa-cudnn) + 24 * t(variant), per call",
           "baseline_ms": baselines}
    for shape, pass_ in (("reconstruction", "forward"), ("training", "forward+backward")):
        timed = {r["variant"]: r["ms"] for r in rows if r["shape"] == shape and r["pass"] == pass_ and "ms" in r}
        if "sdpa-cudnn" in timed:
            base = baselines[shape] - LAYERS * timed["sdpa-cudnn"]
            out[shape] = {v: round(base + LAYERS * ms, 1) for v, ms in timed.items()}
    return out


def load_cudnn_frontend():
    """cudnn-frontend's module, or the reason it cannot be used (a string)."""
    try:
        import cudnn

        return cudnn
    except Exception as err:  # noqa: BLE001 - ImportError, or a missing libcudnn / symbol
        return _first_line(err)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:400] if text else ''}"


def _sig_dict(d: dict[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.4g}") for k, v in d.items()}


def _print_row(row: dict) -> None:
    head = f"{row['shape']:>14} {row['pass']:>16} {row['variant']:>10}"
    if "ms" in row:
        err = " ".join(f"{k} {v:.2e}" for k, v in row["rel_err"].items())
        print(f"{head}: {row['ms']:8.3f} ms {row['tflops']:7.1f} TFLOP/s  rel err {err}", flush=True)
    else:
        print(f"{head}: {row.get('error') or row.get('skipped')}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--shapes", default="reconstruction,training", help="comma-separated: reconstruction, training")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (the default on a CPU)")
    parser.add_argument("--sets", type=int, default=3, help="input sets each timing sample rotates through")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--qk-std", type=float, default=1.0, help="std of q and k (scores have std qk_std²)")
    parser.add_argument("--p-scale", type=float, default=448.0,
                        help="FP8 scale of the softmax probabilities P (max 448 maps P <= 1 onto e4m3's range)")
    parser.add_argument("--p-scales-extra", default="256,32", type=lambda t: [float(x) for x in t.split(",") if x],
                        help="other P scales whose O error the 'fp8' forward rows also record")
    parser.add_argument("--recon-tokens", type=int, default=SHAPES["reconstruction"][2],
                        help="N of the reconstruction shape (24578 = 6·64² patches + 2 learned tokens)")
    parser.add_argument("--train-tokens", type=int, default=SHAPES["training"][2], help="N of the training shape")
    parser.add_argument("--baseline-recon-ms", type=float, default=BASELINE_MS["reconstruction"])
    parser.add_argument("--baseline-train-ms", type=float, default=BASELINE_MS["training"])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference in full fp32 (bf16/fp8 kernels unaffected)
    shapes = TINY_SHAPES if args.tiny or args.device == "cpu" else {
        name: (b, h, args.recon_tokens if name == "reconstruction" else args.train_tokens, d)
        for name, (b, h, _, d) in SHAPES.items()}
    cudnn = load_cudnn_frontend()
    t0, done = time.perf_counter(), []
    names = args.shapes.split(",")
    result = {"versions": _versions(cudnn, args.device), "args": {k: str(v) for k, v in vars(args).items()},
              "shapes": {k: shapes[k] for k in names}}

    def save(rows: list[dict]) -> None:
        result["rows"] = done + rows
        result["projection"] = projections(result["rows"], {"reconstruction": args.baseline_recon_ms,
                                                            "training": args.baseline_train_ms})
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))

    for name in names:
        done += bench_shape(name, shapes[name], cudnn, args, save)
    save([])
    _print_table(result)
    return 0


def _versions(cudnn, device: str) -> dict:
    cuda = device == "cuda"
    versions = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.version.cuda,
                "cudnn_torch": torch.backends.cudnn.version() if cuda else None,
                "gpu": torch.cuda.get_device_name() if cuda else None}
    if isinstance(cudnn, str):
        return versions | {"cudnn_frontend": None, "cudnn_frontend_error": cudnn}
    backend = cudnn.backend_version() if cuda else None  # needs libcudnn, which a CPU box may lack
    return versions | {"cudnn_frontend": cudnn.__version__, "cudnn_frontend_backend": backend}


def _print_table(result: dict) -> None:
    print(f"\n{'shape':>14} {'pass':>16} {'variant':>10} {'ms':>8} {'TFLOP/s':>8}  rel err (out dq dk dv)")
    for r in result["rows"]:
        if "ms" in r:
            err = " ".join(f"{v:.1e}" for v in r["rel_err"].values())
            print(f"{r['shape']:>14} {r['pass']:>16} {r['variant']:>10} {r['ms']:8.3f} {r['tflops']:8.1f}  {err}")
        else:
            print(f"{r['shape']:>14} {r['pass']:>16} {r['variant']:>10}  -- {r.get('error') or r.get('skipped')}")
    proj = result["projection"]
    for shape in ("reconstruction", "training"):
        if shape in proj:
            cells = ", ".join(f"{v} {ms} ms" for v, ms in proj[shape].items())
            print(f"projected {shape} (24 layers, baseline {proj['baseline_ms'][shape]} ms): {cells}")
    print(f"({proj['note']}; wall {result['wall_s']} s)")


if __name__ == "__main__":
    sys.exit(main())
