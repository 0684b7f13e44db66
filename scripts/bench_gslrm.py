"""GS-LRM speed: reconstruction latency and training-step throughput / MFU, written as JSON.

    python scripts/bench_gslrm.py --out bench_gslrm.json                  # CUDA, full size (an H200 or H100)
    python scripts/bench_gslrm.py --device cpu --tiny --size 16 --out b.json  # the same code paths on a CPU

Reconstruction: one sample of 6 views at 512² through the full-size network (random weights: speed does not depend
on them), in eval mode, for each attention backend and two precisions: ``autocast`` (fp32 weights, bf16 autocast,
as training runs) and ``bf16`` (bf16 weights).
Training step: batch 2, 4 input views -> Gaussians -> rendered into 8 other views (gsplat on CUDA) -> L2 -> backward
-> grad-norm clip -> fused AdamW, bf16 autocast, for each way of checkpointing the blocks (``keep``: recompute all
but the attention; ``recompute``: everything; ``off``). The render's cost follows the Gaussians' footprint, so each
row names its load: ``pixel`` shifts the random model's log-scales (a constant: gradients unchanged) to a pixel's
width at the head's distance, the size a trained model predicts; ``init`` renders them as random init makes them,
e^-2.3 = 0.1 wide (~20 px), the load of training from scratch. Compare rows of the same load only.

FaceLift's own GS-LRM code, measured at equal loads beside this one on one H200 in the same call (issue 12):
training step 940-956 ms (pixel) and 2396-2413 ms (init); reconstruction 183 ms. Targets: training step at pixel
load <= 470 ms (2x FaceLift), no crash at init load; reconstruction <= 120 ms. Figures of this code: README "Speed".

Timings are medians over ``--repeats`` runs after ``--warmup`` runs (CUDA events on CUDA). FLOPs are counted
analytically for the network only (matmuls + attention; rendering and elementwise work are not counted): forward F;
training "model" FLOPs 3F (backward = 2x forward, the usual convention, so MFU is comparable across papers) and
"hardware" FLOPs adding the recomputation that checkpointing does. MFU is against Hopper's dense bf16 peak
(989 TFLOP/s) and against the 790 TFLOP/s a large bf16 matmul reaches on an H100 or H200.
"""

from __future__ import annotations

import argparse
import itertools
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
from facelift.gaussians import Gaussians
from facelift.models.gslrm import GSLRM, GSLRMConfig
from facelift.models.gslrm.heads import SCALE_OFFSET, params_per_gaussian
from facelift.models.gslrm.transformer import attention_kernels
from facelift.render import render
from facelift.render.chunking import plan_chunks
from facelift.render.gsplat_backend import count_intersections
from facelift.render.turntable import orbit_cameras
from facelift.views import Views

PEAK_TFLOPS = 989.0  # H100 / H200 SXM dense bf16
MATMUL_TFLOPS = 790.0  # a large bf16 matmul measured on an H100 and an H200 here (cuBLAS, torch 2.11)
TARGETS = {"reconstruction_ms": 120.0, "train_step_ms_pixel": 470.0}
# FaceLift's code at the same loads, same H200, same call (medians of its runs; ranges in the docstring)
FACELIFT_ORIGINAL = {"reconstruction_ms": 183.0, "train_step_ms_pixel": 948.0, "train_step_ms_init": 2405.0}
CHECKPOINTING = {"keep": (True, True), "recompute": (True, False), "off": (False, False)}  # (checkpoint, keep attn)
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


def bench_training(cfg: GSLRMConfig, checkpointing: str, load: str, compiled: bool, args) -> dict:
    device, size, batch = args.device, args.size, 2
    data = ring_views(batch, 12, size, device, 270.0, seed=1)
    inputs, targets = data.select(slice(0, 4)), data.select(slice(4, 12))
    recompute_blocks, keep_attention = CHECKPOINTING[checkpointing]
    net = build(replace(cfg, gradient_checkpointing=recompute_blocks, checkpoint_keeps_attention=keep_attention),
                device).train()
    model = torch.compile(net) if compiled else net
    optimizer = torch.optim.AdamW(net.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.05,
                                  fused=device == "cuda")

    # "pixel": shift the log-scales (a constant, so gradients are unchanged) from random init's 0.1 to a pixel's
    # width at the head's distance; "init": leave them as random init makes them (see the docstring)
    pixel_width = 2.7 / targets.cameras.intrinsics[0, 0, 0].item()
    shift = 0.0 if load == "init" else math.log(pixel_width) + SCALE_OFFSET
    last: list[Gaussians] = []

    def step():
        with torch.autocast(device, dtype=torch.bfloat16):
            gaussians = model(inputs)
        gaussians = replace(gaussians, log_scales=gaussians.log_scales + shift)
        rgb = render(gaussians, targets.cameras, 1.0, backend=args.render_backend).rgb  # fp32
        loss = F.mse_loss(rgb, targets.images)
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {loss.item()}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last[:] = [gaussians.detach()]

    _reset_memory(device)
    ms = median_ms(step, device, args.warmup + (2 if compiled else 0), args.repeats)
    fwd = forward_flops(cfg, batch, 4, size)
    model_flops = 3 * sum(fwd.values())
    recompute = (sum(fwd.values()) - (fwd["attention"] if keep_attention else 0.0)) if recompute_blocks else 0.0
    hardware_flops = model_flops + recompute
    row = {"ms": round(ms, 1), "steps": args.warmup + args.repeats, "log_scale_shift": round(shift, 3),
           "steps_per_s": round(1000 / ms, 3), "samples_per_s": round(batch * 1000 / ms, 2),
           "model_tflop": _sig(model_flops / 1e12), "hardware_tflop": _sig(hardware_flops / 1e12),
           "model_tflops_per_s": _sig(model_flops / ms / 1e9),
           f"mfu_vs_{PEAK_TFLOPS:.0f}": _sig(model_flops / ms / 1e9 / PEAK_TFLOPS),
           f"mfu_vs_{MATMUL_TFLOPS:.0f}": _sig(model_flops / ms / 1e9 / MATMUL_TFLOPS),
           f"hfu_vs_{PEAK_TFLOPS:.0f}": _sig(hardware_flops / ms / 1e9 / PEAK_TFLOPS),
           "peak_mem_gib": _peak_gib(device), "gaussians_per_sample": 2 + 4 * size * size}
    row["render_ms"] = round(render_ms(last[0], targets, device, args), 1)
    row["attention_ms"] = round(attention_ms(net.transformer.blocks[0].attn, batch, cfg.n_gaussians + 4 * size**2
                                             // cfg.patch_size**2, device, args) * cfg.n_layer, 1)
    if args.render_backend == "gsplat":  # the last step's load on the rasterizer and how it was split
        counts = count_intersections(last[0], targets.cameras, 0.01, 100.0)  # [B, V]
        row |= {"intersections": int(counts.sum()), "rasterizer_calls": len(plan_chunks(counts))}
    if not args.tiny and device == "cuda" and load == "pixel":
        row["meets_target"] = ms <= TARGETS["train_step_ms_pixel"]
    del net, model, optimizer
    return row


def render_ms(gaussians: Gaussians, targets: Views, device: str, args) -> float:
    """The render + L2 + its backward alone, on one step's Gaussians: the share of the step that is not the network."""
    leaves = Gaussians(*(t.detach().requires_grad_(True) for t in (gaussians.means, gaussians.quats,
                                                                    gaussians.log_scales, gaussians.opacity_logits,
                                                                    gaussians.sh)))

    def step():
        rgb = render(leaves, targets.cameras, 1.0, backend=args.render_backend).rgb
        F.mse_loss(rgb, targets.images).backward()

    return median_ms(step, device, 1, max(3, args.repeats // 5))


def attention_ms(attn, batch: int, tokens: int, device: str, args) -> float:
    """One block's attention kernel alone, forward + backward, in bf16 as autocast runs it (x n_layer by the caller)."""
    shape = (batch, attn.heads, tokens, attn.d_head)
    q, k, v = (torch.randn(shape, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    grad = torch.randn(shape, device=device, dtype=torch.bfloat16)

    def step():
        with attention_kernels(attn.backend):
            F.scaled_dot_product_attention(q, k, v).backward(grad)

    return median_ms(step, device, 1, max(3, args.repeats // 2))


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
    parser.add_argument("--loads", default="pixel,init",
                        help="Gaussian sizes of the training step: pixel (a trained model's) and/or init (random init's)")
    parser.add_argument("--checkpointing", default="keep,recompute",
                        help="block checkpointing of the training step: keep (all but attention), recompute, off")
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
        for backend, load, mode in itertools.product(args.train_backends.split(","), args.loads.split(","),
                                                     args.checkpointing.split(",")):
            row = {"load": load, "attention_backend": backend, "checkpointing": mode, "compiled": compiled}
            train.append(_guarded(row, lambda: bench_training(replace(cfg, attention_backend=backend), mode, load,
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
    keys = [k for k in ("load", "precision", "attention_backend", "checkpointing", "compiled") if k in row]
    label = " ".join(f"{k}={row[k]}" for k in keys)
    if "skipped" in row:
        print(f"{kind:>14} {label}: skipped ({row['skipped']})", flush=True)
        return
    extra = {k: v for k, v in row.items() if k not in keys}
    print(f"{kind:>14} {label}: " + ", ".join(f"{k} {v}" for k, v in extra.items()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
