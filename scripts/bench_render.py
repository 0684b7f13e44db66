"""Time and peak memory of the render backends, at FaceLift scale and at test scale.

    python scripts/bench_render.py --out bench_render.json

Scales (Gaussians like GS-LRM's output: small, mostly translucent, in a shell; cameras on FaceLift's 20 deg ring):
  facelift  2 + 6 x 512^2 = 1,572,866 Gaussians into 8 views of 512^2 (what one training sample renders)
  mid       20,000 Gaussians into 4 views of 128^2
  test      2 + 4 x 64^2 = 16,386 Gaussians into 4 views of 64^2 (the tiny test configs)
On CUDA: gsplat (packed and unpacked) and the torch backend at every scale; on CPU (run in a child process limited
to ``--cpu-threads`` threads, 2 by default like the development machines): the torch backend at mid and test scale
(FaceLift scale on CPU is not a workload; ``--cpu-facelift`` forces it). Each figure is the median of ``--repeats``
runs after one warm-up: forward without autograd, and forward + backward of a sum over rgb and alpha. Peak memory is
the CUDA allocator's peak above the scene's own tensors, or on CPU the child process's peak RSS (VmHWM, reset after
building the scene) above its size then.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from facelift.data.synthetic.blob_scenes import random_cloud
from facelift.render.gsplat_backend import gsplat_extension, render_gsplat
from facelift.render.torch_rasterizer import render_torch
from facelift.render.turntable import orbit_cameras

SCALES = {"facelift": (2 + 6 * 512 * 512, 8, 512), "mid": (20_000, 4, 128), "test": (2 + 4 * 64 * 64, 4, 64)}
TORCH_GIVE_UP_S = 60.0  # a single torch-backend forward slower than this is not repeated


def scene(scale: str, device: str):
    n, views, size = SCALES[scale]
    cams = orbit_cameras(views, size)
    g = random_cloud(torch.Generator().manual_seed(0), n, pixel_size=2.7 / cams.intrinsics[0, 0].item())
    return g.to(device), cams[None].to(device)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure(scale: str, backend: str, device: str, repeats: int, packed: bool | None = None) -> dict:
    """One (scale, backend, device) figure: median forward and forward+backward seconds, peak memory in MiB."""
    name = backend if packed is None else f"{backend}{'-packed' if packed else '-unpacked'}"
    row = {"scale": scale, "backend": name, "device": device}
    try:
        return row | _measure(scale, backend, device, repeats, packed)
    except torch.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return row | {"skipped": f"out of memory: {str(err).splitlines()[0]}"}


def _measure(scale: str, backend: str, device: str, repeats: int, packed: bool | None) -> dict:
    g, cams = scene(scale, device)
    leaves = [t.requires_grad_(True) for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh)]
    bg = torch.ones(1, cams.batch_shape[1], 3, device=device)
    # the backends directly (render() adds only dtype/background handling), so packing can be forced for gsplat
    draw = (lambda: render_gsplat(g, cams, bg, 0.01, 100.0, packed)) if backend == "gsplat" else (
        lambda: render_torch(g, cams, bg, 0.01, 100.0))

    def forward():
        with torch.no_grad():
            draw()

    def forward_backward():
        rgb, alpha, _ = draw()
        (rgb.sum() + alpha.sum()).backward()
        for leaf in leaves:
            leaf.grad = None

    row = {"gaussians": g.num_gaussians, "views": cams.batch_shape[1], "size": cams.width}
    if device == "cuda":
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:  # restart the kernel's peak-RSS counter (VmHWM) from the current size
        base = _status_mib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
    first = timed(forward, device)  # warm-up (and, for gsplat, the kernels' first launch)
    if backend == "torch" and first > TORCH_GIVE_UP_S:
        return row | {"skipped": f"one forward took {first:.0f} s (> {TORCH_GIVE_UP_S:.0f} s)"}
    forward_backward()
    row["forward_ms"] = 1000 * statistics.median(timed(forward, device) for _ in range(repeats))
    row["forward_backward_ms"] = 1000 * statistics.median(timed(forward_backward, device) for _ in range(repeats))
    if device == "cuda":
        row["peak_mem_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        row["peak_mem_mib"] = _status_mib("VmHWM") - base
    return row


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _cpu_child(scale: str, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    return measure(scale, "torch", "cpu", repeats) | {"threads": threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="cuda,cpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scales", default="facelift,mid,test")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-threads", type=int, default=2)
    parser.add_argument("--cpu-facelift", action="store_true", help="also run FaceLift scale on the CPU (slow)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    devices, scales = args.devices.split(","), args.scales.split(",")

    rows = []
    if "cuda" in devices:
        if gsplat_extension() is None:
            print("error: gsplat's CUDA extension does not load on this machine", file=sys.stderr)
            return 2
        for scale in scales:
            rows.append(measure(scale, "gsplat", "cuda", args.repeats, packed=False))
            rows.append(measure(scale, "gsplat", "cuda", args.repeats, packed=True))
            rows.append(measure(scale, "torch", "cuda", args.repeats))
            _print(rows[-3:])
    if "cpu" in devices:
        context = multiprocessing.get_context("spawn")  # a fresh process per figure: its peak RSS is its own
        for scale in scales:
            if scale == "facelift" and not args.cpu_facelift:
                rows.append({"scale": scale, "backend": "torch", "device": "cpu",
                             "skipped": "FaceLift scale is a GPU workload (--cpu-facelift forces it)"})
            else:
                with context.Pool(1) as pool:
                    rows.append(pool.apply(_cpu_child, (scale, args.repeats, args.cpu_threads)))
            _print(rows[-1:])

    if args.out:
        versions = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.version.cuda,
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "cpu": platform.processor() or platform.machine(), "cpu_count": multiprocessing.cpu_count()}
        try:
            import gsplat
            versions["gsplat"] = gsplat.__version__
            if gsplat_extension() is not None:
                versions["gsplat_extension"] = getattr(gsplat_extension(), "__file__", None)
        except ImportError:
            pass
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"versions": versions, "args": vars(args) | {"out": str(args.out)},
                                        "results": rows}, indent=2))
    return 0


def _print(rows: list[dict]) -> None:
    for r in rows:
        if "skipped" in r:
            print(f"{r['scale']:>8} {r['backend']:>15} {r['device']:>4}  skipped: {r['skipped']}")
        else:
            print(f"{r['scale']:>8} {r['backend']:>15} {r['device']:>4}  {r['gaussians']:>9} G -> {r['views']} x "
                  f"{r['size']}^2: forward {r['forward_ms']:9.1f} ms, "
                  f"forward+backward {r['forward_backward_ms']:9.1f} ms, "
                  f"peak {r['peak_mem_mib']:8.1f} MiB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
