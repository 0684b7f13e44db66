"""Inference speed stage by stage, at full size with RANDOM weights (no download), through infer.py's own code
(`facelift.pipeline.InferenceRunner.image`): photo -> preprocess -> MVDiffusion (6 views x 50 DDIM steps with CFG
at 512²) -> GS-LRM -> filter -> output.png renders -> PLY -> turntable render (150 frames at 512²) -> mp4 encode.
Target on an H100: <= 3 s for the whole photo -> gaussians.ply + turntable.mp4.

    PYTHONPATH=. python scripts/bench_infer.py --out bench_infer.json                 # CUDA, fp16 and bf16
    PYTHONPATH=. python scripts/bench_infer.py --device cpu --tiny --out /tmp/b.json  # every path on a CPU

Per precision: one warm-up photo (gsplat's JIT build, cuDNN autotuning, torch.compile with --compile), then
``--repeats`` photos; every stage's median seconds (the pipeline synchronises CUDA around each stage) and the
median wall time of the whole call (stages + PNG and JSON writes).
What the random weights change, and how this script keeps the timing representative:
- GS-LRM's random Gaussians are ~20 px wide at 512², which makes rendering far slower than for a trained model:
  their log-scales are shifted to a pixel's size as bench_gslrm.py's ``pixel`` load (``--init-scales`` keeps them);
- random fp16 weights may decode non-finite pixels: those become grey before GS-LRM (counted in the report).
Preprocessing is timed as installed: the MTCNN face crop when facenet-pytorch imports (else ``auto_crop=false``),
background by the near-white threshold (rembg needs its u2net.onnx). The mp4 is encoded by imageio-ffmpeg's ffmpeg
while the turntable renders: ``turntable_render`` includes handing the frames over, ``mp4`` the encoder's finish.
Files written on helper threads are in ``writes_s``; ``ended_at_s`` is the timeline (seconds from the photo's start).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from facelift.image_io import write_image
from facelift.models.gslrm.heads import SCALE_OFFSET
from facelift.models.mvdiffusion import architecture

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "fixtures" / "facelift_sample" / "examples" / "000.png"
TARGET_S = 3.0  # whole photo -> ply + turntable on an H100


def infer_config(args, precision: str, out: Path):
    overrides = [f"paths.root_dir={REPO}", f"output_dir={out}", "input=unused", f"device={args.device}",
                 f"precision={precision}", f"steps={args.steps}", f"turntable.frames={args.frames}",
                 f"turntable.size={args.turntable_size}", f"image_size={args.size}", "background=threshold",
                 f"auto_crop={importlib.util.find_spec('facenet_pytorch') is not None}", "allow_random_init=true",
                 f"mvdiffusion.compile={args.compile}"]
    if args.tiny:
        overrides += ["model/pipeline@mvdiffusion.random=random_tiny", "gslrm.random={d:64,d_head:16,n_layer:2}"]
    else:
        overrides += ["gslrm.random={}"]  # GSLRMConfig's defaults: FaceLift's full size
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("infer", overrides=overrides)
    if not args.tiny:  # full-size random MVDiffusion, as bench_mvdiffusion.py builds it
        with open_dict(cfg):
            cfg.mvdiffusion.random = OmegaConf.create({
                "_target_": "facelift.models.mvdiffusion.build_random_pipeline", "allow_random_init": True,
                "unet": architecture.UNET, "vae": architecture.VAE, "image_encoder": architecture.IMAGE_ENCODER})
    return cfg


def bench_precision(args, precision: str, photo: Path, work: Path) -> dict:
    from facelift.pipeline import InferenceRunner

    runner = InferenceRunner(infer_config(args, precision, work))
    reconstruct, nonfinite = runner.reconstruct, []
    shift = 0.0 if args.init_scales else math.log(2.7 / (runner.size / 2 / math.tan(math.radians(25)))) + SCALE_OFFSET

    def representative(views):
        nonfinite.append(int((~torch.isfinite(views.images)).sum()))
        gaussians = reconstruct(replace(views, images=torch.nan_to_num(views.images, 0.5, 0.5, 0.5)))
        return replace(gaussians, log_scales=gaussians.log_scales + shift)

    runner.reconstruct = representative
    start = time.perf_counter()
    runner.image(photo, work / "warmup")
    warmup_s = time.perf_counter() - start
    stages, writes, ends, walls = [], [], [], []
    for i in range(args.repeats):
        start = time.perf_counter()
        summary = runner.image(photo, work / f"run{i}")
        walls.append(time.perf_counter() - start)
        stages.append(summary["timings_s"])
        writes.append(summary["writes_s"])
        ends.append(summary["ended_at_s"])
    median = {k: round(statistics.median(s[k] for s in stages), 4) for k in stages[0]}
    # wall time in no stage (the files written on helper threads overlap the stages; see writes_s)
    median["outside_stages"] = round(statistics.median(
        s["total"] - sum(v for k, v in s.items() if k != "total") for s in stages), 4)
    row = {"precision": precision, "stages_s": median,
           "writes_s": {k: round(statistics.median(w[k] for w in writes), 4) for k in writes[0]},
           "ended_at_s": {k: round(statistics.median(e[k] for e in ends), 4) for k in ends[0]}, "wall_s_median": round(statistics.median(walls), 4),
           "wall_s_all": [round(w, 4) for w in walls], "warmup_s": round(warmup_s, 2),
           "gaussians": {k: v for k, v in summary["gaussians"].items() if k != "filter"}, "preprocess": summary["preprocess"]["crop"],
           "nonfinite_view_pixels": nonfinite, "load_s": summary["model_load_s"],
           "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None}
    if args.device == "cuda" and not args.tiny:
        row["meets_target"] = row["wall_s_median"] <= TARGET_S
    del runner
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON report path")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="tiny random models at 64 px (CPU check of the script)")
    parser.add_argument("--precisions", default="fp16,bf16", help="comma list of fp16 | bf16 | fp32")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (FaceLift: 50)")
    parser.add_argument("--frames", type=int, default=150, help="turntable frames (FaceLift: 150)")
    parser.add_argument("--size", type=int, help="image side (default 512, tiny 64)")
    parser.add_argument("--turntable-size", type=int, help="turntable frame side (default 512, tiny 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed photos per precision (after a warm-up)")
    parser.add_argument("--compile", action="store_true", help="torch.compile MVDiffusion's UNet and VAE decoder")
    parser.add_argument("--init-scales", action="store_true", help="render GS-LRM's random Gaussians at their size")
    parser.add_argument("--photo", type=Path, default=PHOTO, help="input photo (default: the fixture face)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu --tiny", file=sys.stderr)
        return 2
    args.size = args.size or (64 if args.tiny else 512)
    args.turntable_size = args.turntable_size or (32 if args.tiny else 512)
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        print("error: the turntable needs imageio-ffmpeg (pip install 'imageio[ffmpeg]')", file=sys.stderr)
        return 2
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    report = {"versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                           "cpu": platform.processor() or platform.machine(),
                           "imageio_ffmpeg": metadata.version("imageio-ffmpeg")},
              "setup": {k: str(v) for k, v in vars(args).items()}, "target_s": TARGET_S, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        photo = args.photo
        if not photo.is_file():  # a face-sized grey disc on white, when the fixture is not beside the checkout
            yy, xx = torch.meshgrid(torch.arange(512.0), torch.arange(512.0), indexing="ij")
            disc = ((xx - 256) ** 2 + (yy - 280) ** 2 < 120**2).float()
            photo = write_image(Path(tmp) / "photo.png", (1 - 0.6 * disc).expand(3, -1, -1))
        for precision in [p for p in args.precisions.split(",") if p]:
            row = bench_precision(args, precision, photo, Path(tmp) / precision)
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))  # partial results survive a later failure
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
