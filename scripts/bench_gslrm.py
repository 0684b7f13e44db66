"""GS-LRM speed: reconstruction latency and training-step throughput / MFU, written as JSON.

    python scripts/bench_gslrm.py --out bench_gslrm.json                  # CUDA, full size (an H100 is the target)
    python scripts/bench_gslrm.py --device cpu --tiny --size 16 --out b.json  # the same code paths on a CPU

Reconstruction: one sample of 6 views at 512² through the full-size network (random weights: speed does not depend
on them), in eval mode, for each attention backend and two precisions: ``autocast`` (fp32 weights, bf16 autocast,
as training runs) and ``bf16`` (bf16 weights). Target on an H100: <= 120 ms (FaceLift's code: 203 ms).
Training step: batch 2, 4 input views -> Gaussians -> rendered into 8 other views (gsplat on CUDA) -> L2 -> backward
-> grad-norm clip -> fused AdamW, bf16 autocast, gradient checkpointing on, with and without keeping the attention
outputs. The Gaussians are rendered at a trained model's size (about a pixel), see ``--init-scales``.
Target on an H100: <= 800 ms (FaceLift's code: 2.56 s, 16.3 GB).

Measured on one H100 (torch 2.11 + CUDA 13, cuDNN 9.19): reconstruction 186 ms (autocast) / 180 ms (bf16 weights)
with cuDNN attention (flash 233, efficient 480; torch.compile 178). Attention is 80 % of the 74 TFLOP and cuDNN runs
it at ~420 TFLOP/s at head size 64 (142 ms alone), so 120 ms is out of reach of PyTorch's attention kernels.
Training step 694 ms, 11.3 GiB, MFU 0.32 of 989 (827 ms when the attention is recomputed).

Timings are medians over ``--repeats`` runs after ``--warmup`` runs (CUDA events on CUDA). FLOPs are counted
analytically for the network only (matmuls + attention; rendering and elementwise work are not counted): forward F;
training "model" FLOPs 3F (backward = 2x forward, the usual convention, so MFU is comparable across papers) and
"hardware" FLOPs adding the recomputation that checkpointing does. MFU is against the H100's dense bf16 peak
(989 TFLOP/s) and against the 790 TFLOP/s a large bf16 matmul reaches on it.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from facelift.cameras import Cameras
from facelift.models.gslrm import GSLRM, GSLRMConfig
from facelift.models.gslrm.heads import SCALE_OFFSET, params_per_gaussian
from facelift.render import render
from facelift.render.turntable import orbit_cameras
from facelift.views import Views

PEAK_TFLOPS = 989.0  # H100 SXM dense bf16
MATMUL_TFLOPS = 790.0  # a large bf16 matmul measured on the same H100 (cuBLAS, torch 2.11)
TARGETS = {"reconstruction_ms": 120.0, "train_step_ms": 800.0}
FACELIFT_ORIGINAL = {"reconstruction_ms": 203.0, "train_step_ms": 2560.0, "train_peak_gb": 16.3}  # same H100
TINY = GSLRMConfig(d=64, d_head=16, n_layer=2)


def forward_flops(cfg: GSLRMConfig, batch: int, views: int, size: int) -> dict[str, float]:
    """Multiply-adds x 2 of one forward pass, split into the Linear layers and attention (QK^T and PV)."""
    pixels = views * size * size
    n = cfg.n_gaussians + pixels // cfg.patch_size**2  # tokens per sample
    linear = cfg.n_layer * 24 * n * cfg.d**2  # qkv 3d², out d², mlp 8d² -> 12 d² multiply-adds per token
    linear += 2 * pixels * 9 * cfg.d  # tokenizer: 9·p² inputs per token
    linear += 2 * (cfg.n_gaussians + pixels) * cfg.d * params_per_gaussian(cfg.sh_degree)  # heads: 1 per Gaussian
    attention = cfg.n_layer * 4 * n * n * cfg.d
    return {"linear": batch * float(linear), "attention": batch * float(attention)}


def ring_views(batch: int, views: int, size: int, device: str, start_deg: float, seed: int) -> Views:
    """Random images seen from cameras on FaceLift's ring (radius 2.7, 20 deg elevation), ``start_deg`` rotating it."""
    cams = orbit_cameras(views, size, start_azimuth_deg=start_deg)
    cams = Cameras(cams.c2w.expand(batch, -1, -1, -1), cams.intrinsics.expand(batch, -1, -1), size, size)
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, views, 3, size, size, generator=gen)
    index = torch.stack(torch.meshgrid(torch.arange(views), torch.arange(batch), indexing="xy"), -1)
    return Views(images, torch.ones(batch, views, 1, size, size), cams, index).to(device)


def median_ms(fn, device: str, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def _reset_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def _guarded(row: dict, fn) -> dict:
    """Run one measurement; a backend that cannot run or memory that runs out becomes a 'skipped' row."""
    try:
        return row | fn()
    except (RuntimeError, torch.OutOfMemoryError) as err:  # "No available kernel", OOM, compile failures
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return row | {"skipped": f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"}


def build(cfg: GSLRMConfig, device: str) -> GSLRM:
    torch.manual_seed(0)  # the same random weights for every variant, so their outputs can be compared
    with torch.device(device):  # initialised where it runs: 303 M parameters are slow to initialise on a CPU
        return GSLRM(cfg)


def bench_reconstruction(cfg: GSLRMConfig, precision: str, compiled: bool, args, first: dict[str, Tensor]) -> dict:
    """``first``: precision -> the Gaussian positions of the first variant measured, to check variants agree."""
    device, size = args.device, args.size
    views = ring_views(1, 6, size, device, 270.0, seed=0)
    net = build(replace(cfg, gradient_checkpointing=False), device).eval()
    if precision == "bf16":
        net = net.to(torch.bfloat16)
    model = torch.compile(net) if compiled else net

    @torch.inference_mode()
    def reconstruct():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "autocast"):
            return model(views)

    _reset_memory(device)
    ms = median_ms(reconstruct, device, args.warmup + (2 if compiled else 0), args.repeats)
    flops = forward_flops(cfg, 1, 6, size)
    total = sum(flops.values())
    row = {"ms": round(ms, 2), "tflop": _sig(total / 1e12), "attention_share": round(flops["attention"] / total, 3),
           "achieved_tflops": _sig(total / ms / 1e9), "peak_mem_gib": _peak_gib(device),
           "gaussians": 2 + 6 * size * size}
    if not args.tiny and device == "cuda":
        row["meets_target"] = ms <= TARGETS["reconstruction_ms"]
    means = reconstruct().means.float().cpu()  # [1, N, 3]
    row["means_max_diff_vs_first_variant"] = _sig((means - first.setdefault(precision, means)).abs().max().item())
    del net, model
    return row


def bench_training(cfg: GSLRMConfig, keep_attention: bool, compiled: bool, args) -> dict:
    device, size, batch = args.device, args.size, 2
    data = ring_views(batch, 12, size, device, 270.0, seed=1)
    inputs, targets = data.select(slice(0, 4)), data.select(slice(4, 12))
    net = build(replace(cfg, gradient_checkpointing=True, checkpoint_keeps_attention=keep_attention), device).train()
    model = torch.compile(net) if compiled else net
    optimizer = torch.optim.AdamW(net.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.05,
                                  fused=device == "cuda")

    # Random weights make every Gaussian e^-2.3 = 0.1 wide (~20 px at 512²); a trained GS-LRM's are about a pixel,
    # and the rasterizer's cost follows their footprint. Unless --init-scales, shift the log-scales (a constant, so
    # gradients are unchanged) to a pixel's width at the head's distance, to time the load a real run renders.
    pixel_width = 2.7 / targets.cameras.intrinsics[0, 0, 0].item()
    shift = 0.0 if args.init_scales else math.log(pixel_width) + SCALE_OFFSET

    def step():
        with torch.autocast(device, dtype=torch.bfloat16):
            gaussians = model(inputs)
        gaussians = replace(gaussians, log_scales=gaussians.log_scales + shift)
        rgb = render(gaussians, targets.cameras, 1.0, backend=args.render_backend).rgb  # fp32
        loss = F.mse_loss(rgb, targets.images)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    _reset_memory(device)
    ms = median_ms(step, device, args.warmup + (2 if compiled else 0), args.repeats)
    fwd = forward_flops(cfg, batch, 4, size)
    model_flops = 3 * sum(fwd.values())
    recompute = sum(fwd.values()) - (fwd["attention"] if keep_attention else 0.0)
    hardware_flops = model_flops + recompute
    row = {"ms": round(ms, 1), "log_scale_shift": round(shift, 3), "steps_per_s": round(1000 / ms, 3), "samples_per_s": round(batch * 1000 / ms, 2),
           "model_tflop": _sig(model_flops / 1e12), "hardware_tflop": _sig(hardware_flops / 1e12),
           "model_tflops_per_s": _sig(model_flops / ms / 1e9),
           f"mfu_vs_{PEAK_TFLOPS:.0f}": _sig(model_flops / ms / 1e9 / PEAK_TFLOPS),
           f"mfu_vs_{MATMUL_TFLOPS:.0f}": _sig(model_flops / ms / 1e9 / MATMUL_TFLOPS),
           f"hfu_vs_{PEAK_TFLOPS:.0f}": _sig(hardware_flops / ms / 1e9 / PEAK_TFLOPS),
           "peak_mem_gib": _peak_gib(device), "gaussians_per_sample": 2 + 4 * size * size}
    if not args.tiny and device == "cuda":
        row["meets_target"] = ms <= TARGETS["train_step_ms"]
    del net, model, optimizer
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="the tiny test model instead of FaceLift's")
    parser.add_argument("--size", type=int, help="image side (default 512, or 64 with --tiny)")
    parser.add_argument("--backends", default="auto,cudnn,flash,efficient",
                        help="attention backends for reconstruction (comma-separated)")
    parser.add_argument("--train-backends", default="auto", help="attention backends for the training step")
    parser.add_argument("--precisions", default="autocast,bf16", help="reconstruction precisions")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd variants")
    parser.add_argument("--skip-reconstruction", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--render-backend", choices=["gsplat", "torch"],
                        help="renderer of the training step (default: gsplat on CUDA, torch on CPU)")
    parser.add_argument("--init-scales", action="store_true",
                        help="render the random model's Gaussians at their own (large) size, not a pixel's")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu --tiny", file=sys.stderr)
        return 2
    args.size = args.size or (64 if args.tiny else 512)
    args.render_backend = args.render_backend or ("gsplat" if args.device == "cuda" else "torch")
    cfg = TINY if args.tiny else GSLRMConfig()
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as FaceLift trains; bf16 matmuls are unaffected
        torch.backends.cudnn.allow_tf32 = True

    recon, train, first_means = [], [], {}
    for compiled in (False, True) if args.compile else (False,):
        for precision in [] if args.skip_reconstruction else args.precisions.split(","):
            for backend in args.backends.split(","):
                row = {"precision": precision, "attention_backend": backend, "compiled": compiled}
                recon.append(_guarded(row, lambda: bench_reconstruction(replace(cfg, attention_backend=backend),
                                                                         precision, compiled, args, first_means)))
                _print("reconstruction", recon[-1])
        if args.skip_train:
            continue
        for backend in args.train_backends.split(","):
            for keep in (True, False):
                row = {"attention_backend": backend, "checkpoint_keeps_attention": keep, "compiled": compiled}
                train.append(_guarded(row, lambda: bench_training(replace(cfg, attention_backend=backend), keep,
                                                                  compiled, args)))
                _print("training step", train[-1])

    if args.out:
        versions = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.version.cuda,
                    "cudnn": torch.backends.cudnn.version() if args.device == "cuda" else None,
                    "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                    "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
        result = {"versions": versions, "args": {k: str(v) for k, v in vars(args).items()},
                  "config": asdict(cfg), "targets": TARGETS, "facelift_original": FACELIFT_ORIGINAL,
                  "reconstruction": {"batch": 1, "views": 6, "size": args.size, "rows": recon},
                  "training": {"batch": 2, "input_views": 4, "supervised_views": 8, "size": args.size,
                               "rows": train}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


def _print(kind: str, row: dict) -> None:
    keys = [k for k in ("precision", "attention_backend", "checkpoint_keeps_attention", "compiled") if k in row]
    label = " ".join(f"{k}={row[k]}" for k in keys)
    if "skipped" in row:
        print(f"{kind:>14} {label}: skipped ({row['skipped']})", flush=True)
        return
    extra = {k: v for k, v in row.items() if k not in keys}
    print(f"{kind:>14} {label}: " + ", ".join(f"{k} {v}" for k, v in extra.items()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
