"""Does the pure-PyTorch renderer agree with gsplat? Random scenes, images, alpha and gradients.

On a CUDA machine (the acceptance check):
    python scripts/check_render_parity.py --out parity.json
compares the torch backend with gsplat on random batches (>= 20k Gaussians, 256^2, several views, SH degrees 0/3/1):
image PSNR >= 40 dB, alpha max error <= 1e-2, gradient cosine >= 0.99 for means, SH colours, opacity logits and
log-scales (quaternions are reported, not gated). It also checks the split of a render under gsplat's intersection
limit (facelift/render/chunking.py): the intersections counted before rasterizing equal gsplat's own count, and a
render split into several calls (a budget of a third of the batch's intersections) gives the images and gradients
of one call. Exits 1 if any check fails.
Without CUDA (``--device cpu``) the reference is the torch backend in float64, which exercises the script and
measures float32 round-off only.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from facelift.cameras import Cameras, look_at
from facelift.data.synthetic.blob_scenes import random_cloud
from facelift.gaussians import Gaussians
from facelift.render import render
from facelift.render.chunking import plan_chunks
from facelift.render.gsplat_backend import count_intersections, gsplat_extension, render_gsplat
from facelift.render.torch_rasterizer import render_torch

PARAMS = ("means", "quats", "log_scales", "opacity_logits", "sh")
GATED = ("means", "sh", "opacity_logits", "log_scales")
MIN_PSNR, MAX_ALPHA_ERR, MIN_COSINE = 40.0, 1e-2, 0.99


def random_cameras(gen: torch.Generator, batch: int, views: int, size: int) -> Cameras:
    """Cameras around the origin at random azimuth, elevation and distance, with jittered focal and principal point."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(batch, views, generator=gen)  # noqa: E731
    az, el, dist = u(0, 2 * math.pi), torch.deg2rad(u(-10, 40)), u(2.2, 3.2)
    eye = torch.stack([dist * el.cos() * az.cos(), dist * el.cos() * az.sin(), dist * el.sin()], -1)
    target = 0.05 * torch.randn(batch, views, 3, generator=gen)
    c2w = look_at(eye, target, torch.tensor([0.0, 0.0, 1.0]))
    f = size / 2 / math.tan(math.radians(25)) * u(0.9, 1.1)
    intrinsics = torch.stack([f, f * u(0.98, 1.02), size / 2 + u(-12, 12), size / 2 + u(-12, 12)], -1)
    return Cameras(c2w, intrinsics, size, size)


def render_with(backend: str, g: Gaussians, cams: Cameras, bg: torch.Tensor, weights: tuple[torch.Tensor, ...],
                budget: int | None = None):
    """Render with fresh leaf parameters, backpropagate a fixed random linear loss, return images and gradients."""
    dtype = torch.float64 if backend == "torch64" else torch.float32
    bg_views = bg.to(dtype)[:, None].expand(*cams.batch_shape, 3)  # render() does this expansion
    leaves = [getattr(g, name).detach().to(dtype).requires_grad_(True) for name in PARAMS]
    g = Gaussians(*leaves)
    sync()
    start = time.perf_counter()
    if backend == "torch64":
        rgb, alpha, depth = render_torch(g, cams.to(dtype), bg_views, 0.01, 100.0)
    elif backend == "gsplat-packed":  # packing is otherwise chosen by size: force it to cover both modes
        rgb, alpha, depth = render_gsplat(g, cams, bg_views, 0.01, 100.0, packed=True)
    elif backend == "gsplat-chunked":  # several rasterizer calls
        rgb, alpha, depth = render_gsplat(g, cams, bg_views, 0.01, 100.0, max_intersections=budget)
    else:
        out = render(g, cams, bg, backend=backend)
        rgb, alpha, depth = out.rgb, out.alpha, out.depth
    loss = (rgb * weights[0].to(dtype)).sum() + (alpha * weights[1].to(dtype)).sum()
    loss.backward()
    sync()
    seconds = time.perf_counter() - start
    grads = {name: leaf.grad.float() for name, leaf in zip(PARAMS, leaves)}
    return rgb.detach().float(), alpha.detach().float(), depth.detach().float(), grads, seconds


def check_chunking(g: Gaussians, cams: Cameras, bg: torch.Tensor, weights, whole) -> dict:
    """The pre-count against gsplat's own, and a render split into calls against ``whole`` (one call)."""
    from gsplat import rasterization

    counts = count_intersections(g, cams, 0.01, 100.0)  # [B, V]
    b, v = cams.batch_shape[:2]
    meta = rasterization(g.means, g.quats, g.scales, g.opacities, g.sh, cams.w2c, cams.K, cams.width, cams.height,
                         sh_degree=g.sh_degree, near_plane=0.01, far_plane=100.0)[2]
    budget = int(counts.sum()) // 3
    split = render_with("gsplat-chunked", g, cams, bg, weights, budget=budget)
    row = compare(whole, split)
    worst = min(row[f"cos_{n}"] for n in PARAMS)
    counted, actual = int(counts.sum()), int(meta["isect_ids"].numel())
    # The planner needs an estimate, not the exact count: its budget is a quarter of the int32 limit. Measured on an
    # H200 the two differ by 0.03-0.1 % in either direction (same projection kernel; the cause is not pinned down).
    rel_err = abs(counted - actual) / max(actual, 1)
    return {"intersections_counted": counted, "intersections_gsplat": actual, "count_rel_err": rel_err,
            "budget": budget, "calls": len(plan_chunks(counts, budget)), "psnr_db": row["psnr_db"],
            "alpha_max_err": row["alpha_max_err"], "worst_cosine": worst,
            "pass": (rel_err <= 0.01 and row["psnr_db"] >= 80 and row["alpha_max_err"] <= 1e-5
                     and worst >= 0.99999)}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def compare(reference, candidate) -> dict:
    rgb_r, alpha_r, depth_r, grads_r, t_r = reference
    rgb_c, alpha_c, depth_c, grads_c, t_c = candidate
    mse = ((rgb_r - rgb_c) ** 2).mean().item()
    solid = alpha_r > 0.5
    row = {"psnr_db": 10 * math.log10(1.0 / max(mse, 1e-20)),
           "alpha_max_err": (alpha_r - alpha_c).abs().max().item(),
           "depth_mean_abs_err_where_alpha_gt_0.5": (depth_r - depth_c).abs()[solid].mean().item(),
           "reference_s": t_r, "candidate_s": t_c}
    for name in PARAMS:
        a, b = grads_r[name].double().flatten(), grads_c[name].double().flatten()
        row[f"cos_{name}"] = torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-30).item()
    row["pass"] = (row["psnr_db"] >= MIN_PSNR and row["alpha_max_err"] <= MAX_ALPHA_ERR
                   and all(row[f"cos_{n}"] >= MIN_COSINE for n in GATED))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-gaussians", type=int, default=20_000, help="per sample")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--scenes", type=int, default=3, help="SH degrees cycle through 0, 3, 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and gsplat_extension() is None:
        print("error: gsplat's CUDA extension does not load on this machine", file=sys.stderr)
        return 2
    gen = torch.Generator().manual_seed(args.seed)
    rows, chunking = [], []
    for scene in range(args.scenes):
        degree = (0, 3, 1)[scene % 3]
        pixel = 2.7 * math.tan(math.radians(25)) / (args.size / 2)  # world size of a pixel at the subject
        clouds = [random_cloud(gen, args.num_gaussians, degree, pixel_size=2.5 * pixel) for _ in range(args.batch)]
        g = Gaussians.cat(clouds, dim=0).to(device)
        cams = random_cameras(gen, args.batch, args.views, args.size).to(device)
        bg = torch.rand(args.batch, 3, generator=gen).to(device)
        shape = (args.batch, args.views, 1, args.size, args.size)
        weights = (torch.rand(*shape[:2], 3, *shape[3:], generator=gen).to(device),
                   torch.rand(shape, generator=gen).to(device))
        reference = ("gsplat", "gsplat-packed")[scene % 2] if device.type == "cuda" else "torch64"
        ref = render_with(reference, g, cams, bg, weights)
        cand = render_with("torch", g, cams, bg, weights)
        row = {"scene": scene, "sh_degree": degree, "reference": reference, **compare(ref, cand)}
        rows.append(row)
        if device.type == "cuda":
            chunking.append(check_chunking(g, cams, bg, weights, ref))

    if chunking:
        print("gsplat split into calls vs one call: " + "; ".join(
            f"{c['intersections_counted']:,} counted / {c['intersections_gsplat']:,} gsplat, {c['calls']} calls, "
            f"PSNR {c['psnr_db']:.1f} dB, worst grad cosine {c['worst_cosine']:.6f}" for c in chunking))

    header = (f"{'scene':>5} {'deg':>3} {'reference':>13} {'PSNR dB':>8} {'alpha err':>9} "
              + " ".join(f"{'cos ' + n:>17}" for n in PARAMS))
    print(f"torch backend vs {rows[0]['reference'].split('-')[0]}: {args.batch} x {args.num_gaussians} Gaussians, "
          f"{args.views} views of {args.size}^2 per scene, device {device}")
    print(header + f" {'ref s':>6} {'torch s':>7} pass")
    for r in rows:
        cos = " ".join(f"{r['cos_' + n]:>17.6f}" for n in PARAMS)
        print(f"{r['scene']:>5} {r['sh_degree']:>3} {r['reference']:>13} {r['psnr_db']:>8.2f} "
              f"{r['alpha_max_err']:>9.2e} {cos} "
              f"{r['reference_s']:>6.2f} {r['candidate_s']:>7.2f} {r['pass']}")
    ok = all(r["pass"] for r in rows) and all(c["pass"] for c in chunking)
    print(f"thresholds: PSNR >= {MIN_PSNR}, alpha max err <= {MAX_ALPHA_ERR}, cosine >= {MIN_COSINE} for "
          f"{', '.join(GATED)} -> {'PASS' if ok else 'FAIL'}")
    if args.out:
        versions = {"torch": torch.__version__, "python": platform.python_version(),
                    "cuda": torch.version.cuda, "device_name": torch.cuda.get_device_name() if device.type == "cuda"
                    else platform.processor() or platform.machine()}
        try:
            import gsplat
            versions["gsplat"] = gsplat.__version__
        except ImportError:
            pass
        result = {"candidate": "torch", "versions": versions, "args": vars(args) | {
            "out": str(args.out)}, "thresholds": {"psnr_db": MIN_PSNR, "alpha_max_err": MAX_ALPHA_ERR,
                                                  "cosine": MIN_COSINE, "gated": GATED}, "scenes": rows,
                  "chunking": chunking, "pass": ok}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
