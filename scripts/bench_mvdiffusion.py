"""Benchmark FaceLift's MVDiffusion at full size with RANDOM weights (no download): sampling and training speed.

(a) Sampling: one input image -> 6 views x ``--steps`` DDIM steps with classifier-free guidance (both branches in one
    UNet call of 12 entries), ``--size``² pixels, per variant: weights dtype (fp16 / bf16), SDPA attention everywhere,
    channels-last, optionally torch.compile of the UNet and VAE decoder (``--compile-mode``).
(b) Training: one optimizer step (forward, backward, clip, AdamW, EMA) of MVDiffusionSystem at ``--train-batch``
    OBJECTS per step, each 6 views (so 6 x batch UNet entries; FaceLift's "batch 8" is 8 objects = 48 entries per
    GPU and micro-step), bf16 autocast, gradient checkpointing.

GPU:  python scripts/bench_mvdiffusion.py --out bench_mvdiffusion.json
CPU check of every path:  python scripts/bench_mvdiffusion.py --device cpu --tiny --out /tmp/bench.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import diffusers
import torch
import transformers
from omegaconf import OmegaConf

from facelift.data.mvdiffusion_data import MVDiffusionBatch
from facelift.models.mvdiffusion import MVDiffusionPipeline, architecture, build_random_pipeline
from facelift.systems.mvdiffusion_system import MVDiffusionSystem

REPO = Path(__file__).resolve().parents[1]


def architectures(tiny: bool) -> dict:
    if tiny:  # the test configuration: 64 px images, 8x8 latents
        cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/pipeline/random_tiny.yaml"))
        return {k: cfg[k] for k in ("unet", "vae", "image_encoder")}
    return {"unet": architecture.UNET, "vae": architecture.VAE, "image_encoder": architecture.IMAGE_ENCODER}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def bench_sampling(args, device: torch.device, master: MVDiffusionPipeline, variant: str) -> dict:
    dtype_name, *options = variant.split("-")
    unknown = set(options) - {"compile", "cl"}
    if unknown:
        raise SystemExit(f"variant {variant!r}: unknown options {sorted(unknown)} (DTYPE[-compile][-cl])")
    compiled, channels_last = "compile" in options, "cl" in options
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    pipe = copy.deepcopy(master).to(device, dtype)  # a fresh, uncompiled copy per variant
    pipe.speed_up(compile_mode=args.compile_mode if compiled else None, channels_last=channels_last)
    image = torch.rand(3, args.size, args.size, device=device)

    def sample():
        return pipe(image, num_inference_steps=args.steps, guidance_scale=args.guidance, eta=1.0, seed=4)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    views = sample()  # warm-up (and compilation)
    sync(device)
    first = time.perf_counter() - t0
    if compiled:
        sample()  # a compiled model settles (autotuning caches, lazy graphs) over its first calls
    times = timed(sample, device, args.repeats)
    # The UNet alone, one CFG call of 2 x 6 entries, to split UNet time from the rest (CLIP, VAE, scheduler).
    latent = args.size // 8
    n = 2 * pipe.num_views
    x = torch.randn(n, pipe.unet.config.in_channels, latent, latent, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    prompts = pipe.prompt_embeds.to(device, dtype).repeat(2, 1, 1)
    labels = torch.randn(n, pipe.unet.config.projection_class_embeddings_input_dim, device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        unet_times = timed(lambda: pipe.unet(x, t, encoder_hidden_states=prompts, class_labels=labels), device,
                           args.unet_repeats)
    return {"variant": variant, "dtype": dtype_name, "compile_mode": args.compile_mode if compiled else None,
            "channels_last": channels_last,
            "seconds_median": statistics.median(times), "seconds_min": min(times), "seconds_all": times,
            "first_call_seconds": first, "unet_cfg_call_ms_median": 1e3 * statistics.median(unet_times),
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "output_shape": list(views.shape), "output_finite": bool(torch.isfinite(views).all())}


def bench_training(args, device: torch.device, objects: int) -> dict:
    pipeline_cfg = {"_target_": "facelift.models.mvdiffusion.build_random_pipeline", "allow_random_init": True,
                    **architectures(args.tiny)}
    system = MVDiffusionSystem(
        pipeline=OmegaConf.create(pipeline_cfg),
        optim=OmegaConf.load(REPO / "conf/model/mvdiffusion.yaml").optim,
        gradient_checkpointing=True, frozen_dtype="bfloat16" if device.type == "cuda" else "float32",
        ema=OmegaConf.create({"enabled": True, "decay": 0.9999}), export_unet=False).to(device)
    optimizer = system.configure_optimizers()["optimizer"]  # piecewise-constant: no trainer needed
    v, s = system.num_views, args.size
    batch = MVDiffusionBatch(cond=torch.rand(objects, 3, s, s, device=device),
                             views=torch.rand(objects, v, 3, s, s, device=device),
                             masks=torch.ones(objects, v, 1, s, s, device=device),
                             background=torch.ones(objects, 3, device=device),
                             index=torch.arange(objects, device=device))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with autocast:
            loss = system.diffusion_loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(system.unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        system.update_ema()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        step()  # warm-up
        times = timed(step, device, args.train_repeats)
    except torch.OutOfMemoryError as err:
        return {"objects": objects, "unet_entries": objects * v, "error": f"out of memory: {str(err).splitlines()[0]}"}
    return {"objects": objects, "unet_entries": objects * v, "precision": "bf16 autocast, fp32 weights" if device.type == "cuda" else "fp32",
            "gradient_checkpointing": True, "seconds_per_step_median": statistics.median(times),
            "seconds_all": times,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON report path")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny test architecture (CPU check of the script)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 512, tiny 64)")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (FaceLift: 50)")
    parser.add_argument("--guidance", type=float, default=3.0, help="CFG scale (FaceLift: 3.0)")
    parser.add_argument("--variants", default="fp16,bf16,fp16-compile,bf16-compile",
                        help="comma list of DTYPE[-compile][-cl]: DTYPE fp16 | bf16 | fp32, "
                        "-compile torch.compile, -cl channels-last memory")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode of -compile variants (reduce-overhead, max-autotune: CUDA graphs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed sampling calls per variant (after a warm-up)")
    parser.add_argument("--unet-repeats", type=int, default=20, help="timed single UNet calls per variant")
    parser.add_argument("--train-batch", default="8", help="comma list of objects per training step ('' skips)")
    parser.add_argument("--train-repeats", type=int, default=3, help="timed training steps per batch size")
    args = parser.parse_args()
    args.size = args.size or (64 if args.tiny else 512)
    device = torch.device(args.device)
    diffusers.utils.logging.set_verbosity_error()  # silence per-cast dtype advice
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "diffusers": diffusers.__version__,
                           "transformers": transformers.__version__, "python": platform.python_version()},
              "setup": {"size": args.size, "steps": args.steps, "guidance": args.guidance, "views": 6,
                        "architecture": "tiny" if args.tiny else "SD2.1-unclip UNet (8 in-ch, 6 views, sparse MV "
                        "attention) + SD VAE + CLIP ViT-H/14, random weights", "sampler": "DDIM eta 1"},
              "sampling": [], "training": []}
    out = Path(args.out)
    variants = [v for v in args.variants.split(",") if v]
    master = build_random_pipeline(**architectures(args.tiny), allow_random_init=True) if variants else None
    for variant in variants:
        result = bench_sampling(args, device, master, variant)
        report["sampling"].append(result)
        print(json.dumps(result), flush=True)
        out.write_text(json.dumps(report, indent=2))  # partial results survive a later failure
        torch.compiler.reset()
    del master
    for objects in [int(b) for b in args.train_batch.split(",") if b]:
        result = bench_training(args, device, objects)
        report["training"].append(result)
        print(json.dumps(result), flush=True)
        out.write_text(json.dumps(report, indent=2))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
