"""Study-scale training and eval speed: today's path against the fast path, same config and seed, in one call.

    python scripts/bench_study.py --out bench_study.json --data data/mouse_study/prepared [--steps 1500]
    python scripts/bench_study.py --out b.json --experiment none --data /tmp/tiny --steps 3 --fast model.compile=false

Each way trains the same experiment (default ``mouse_gslrm_scratch`` at its sizes) from the same seed for
``--steps`` steps, without validation or checkpoints (both would be the same cost either way), then the test split is
evaluated both ways with today's checkpoint (``renders=0``: scoring only, no turntables or PLYs):
  today  the configs as they are: PNGs decoded per item by DataLoader workers, eager network and loss, the host
         step rule, the progress bar read every step;
  fast   ``FAST_TRAIN`` below (decode-once images on the GPU, torch.compile, fused AdamW, the step rule on the
         device, the bar read at logging steps only) and ``FAST_EVAL``; ``--fast KEY=VALUE`` changes or adds keys.
Reported per way (``OUT``, and ``OUT`` with ``.png``: both loss curves): steady steps/s and samples/s (between
step ``warm`` and the profile window, the device synchronized at both ends), wall seconds of the whole fit
(start-up, cache warm-up and compilation included), GPU utilisation (nvidia-smi sampled every 200 ms over the steady
steps), peak GPU memory, the loss curve, MFU (model FLOPs 3x the network's forward, counted analytically as
``bench_gslrm.py`` does; rendering not counted; against ``--peak-tflops``), eval samples/s; for the fast way a
torch.profiler table of ``--profile-steps`` steps (top kernels and their share of the device's time).

The prepared mouse set, then this benchmark, on one H100 in ~6 minutes (the set ~2 of them):
    python scripts/make_mouse_set.py --out /tmp/mice/raw --num-animals 2000 --device cuda --workers 14
    python scripts/prepare_mouse_data.py --src /tmp/mice/raw --dst /tmp/mice/prepared --size 128 --no-normalize \\
        --workers 14
    python scripts/bench_study.py --out bench_study.json --data /tmp/mice/prepared --steps 1500
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger

from bench_gslrm import PEAK_TFLOPS, forward_flops  # the analytic FLOP count of the network (scripts/)
from facelift.evaluation.curves import read_series
from facelift.evaluation.evaluator import evaluate
from facelift.resolvers import register_resolvers
from facelift.run import instantiate_list

REPO = Path(__file__).resolve().parents[1]
COMMON = ["++trainer.max_time=null", "++trainer.limit_val_batches=0", "++trainer.num_sanity_val_steps=0",
          "++trainer.enable_checkpointing=false", "~callbacks.model_checkpoint"]  # the same for both ways
FAST_TRAIN = ["data.cache=device", "model.compile=true", "model.optim.fused=true", "model.step_rule.on_device=true",
              "callbacks.progress_bar.refresh_rate=${trainer.log_every_n_steps}"]
FAST_EVAL = ["data.cache=device", "batch_size=32", "precision=bf16"]  # eval reads each sample once: no decode saved
EVAL_COMMON = ["split=test", "renders=0"]


# ------------------------------------------------------------------------------------------ measuring callbacks
class Timeline(L.Callback):
    """Host time at the end of each step; the device is synchronized at steps ``warm`` and ``stop`` so the window
    between them times the device's work; nvidia-smi samples utilisation inside it."""

    def __init__(self, warm: int, stop: int):
        self.warm, self.stop, self.times, self.samples = warm, stop, {}, 0
        self.utilisation = Utilisation()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # steps done
        if step in (self.warm, self.stop):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times[step] = time.perf_counter()
            (self.utilisation.start if step == self.warm else self.utilisation.stop)()
        if self.warm < step <= self.stop:
            self.samples += batch.images.shape[0]

    def rates(self) -> dict:
        seconds = self.times[self.stop] - self.times[self.warm]
        steps = self.stop - self.warm
        return {"steps_per_s": steps / seconds, "samples_per_s": self.samples / seconds, "timed_steps": steps,
                "timed_seconds": seconds, "gpu_utilisation_pct": self.utilisation.mean()}


class Utilisation:
    """GPU utilisation (%) from ``nvidia-smi -lms 200`` in a reader thread; None without a GPU or nvidia-smi."""

    def __init__(self):
        self.values: list[float] = []
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if not torch.cuda.is_available():
            return
        index = str(torch.cuda.current_device())
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu",
                                          "--format=csv,noheader,nounits", "-lms", "200"],
                                         stdout=subprocess.PIPE, text=True)
        except OSError:
            return
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.strip().isdigit():
                self.values.append(float(line))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None


class ProfileWindow(L.Callback):
    """torch.profiler over the steps after ``start``: the top kernels (or CPU ops without CUDA) by self time."""

    def __init__(self, start: int, steps: int, top: int = 15):
        self.start, self.steps, self.top = start, steps, top
        self.prof, self.result = None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.start and self.prof is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()
            self.began = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.prof is None or self.result is not None or trainer.global_step < self.start + self.steps:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall_us = (time.perf_counter() - self.began) * 1e6
        self.prof.__exit__(None, None, None)
        self.result = summarize_profile(self.prof, wall_us, self.steps, self.top)


def summarize_profile(prof, wall_us: float, steps: int, top: int) -> dict:
    cuda = torch.cuda.is_available()
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    own = [(e.key, getattr(e, sort, 0.0), e.count) for e in events]
    total = sum(t for _, t, _ in own) or 1.0
    rows = sorted(own, key=lambda r: -r[1])[:top]
    return {"steps": steps, "sorted_by": sort, "busy_share_of_wall": total / wall_us if cuda else None,
            "device_ms_per_step" if cuda else "cpu_ms_per_step": total / steps / 1e3,
            "top": [{"name": k, "ms_per_step": t / steps / 1e3, "share": t / total, "calls_per_step": c / steps}
                    for k, t, c in rows],
            "table": events.table(sort_by=sort, row_limit=top, max_name_column_width=60)}


# ------------------------------------------------------------------------------------------ the two ways
def compose_cfg(name: str, overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides)


def train_way(way: str, args, overrides: list[str], out: Path) -> tuple[dict, Path]:
    run = out / way
    experiment = [] if args.experiment == "none" else [f"experiment={args.experiment}"]
    cfg = compose_cfg("train", [*experiment, f"paths.root_dir={REPO}", f"paths.output_dir={run}",
                                f"data.data_dir={args.data}", f"trainer.max_steps={args.steps}", f"seed={args.seed}",
                                *COMMON, *args.override, *overrides])
    warm = min(args.warm, max(1, args.steps // 3))
    profile = min(args.profile_steps, max(1, args.steps // 3)) if way == "fast" else 0
    stop = args.steps - profile
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    system = hydra.utils.instantiate(cfg.model)
    timeline = Timeline(warm, stop)
    window = ProfileWindow(stop, profile) if profile else None
    callbacks = instantiate_list(cfg.callbacks) + [timeline] + ([window] if window else [])
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks,
                                      logger=CSVLogger(run, name="csv", version=""))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.fit(system, datamodule=datamodule)
    wall = time.perf_counter() - start
    ckpt = run / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    logged = run / "csv" / "metrics.csv"  # absent when no step reached log_every_n_steps
    series = read_series(logged) if logged.is_file() else {}
    steps, loss = series.get("train/loss", ((), ()))
    net, batch = system.net.config, cfg.data.batch_size_per_gpu
    flops = 3 * sum(forward_flops(net, batch, cfg.data.num_input_views, cfg.data.image_size).values())
    rates = timeline.rates()
    system.step_rule.flush()  # the on-device rule's last counts
    result = {"overrides": [*args.override, *overrides], **rates, "fit_wall_s": wall,
              "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
              "model_tflop_per_step": flops / 1e12,
              "mfu": flops * rates["steps_per_s"] / (args.peak_tflops * 1e12) if torch.cuda.is_available() else None,
              "loss_curve": {"step": [int(s) for s in steps], "loss": [float(v) for v in loss]},
              "skipped_updates": dict(system.step_rule.skipped),
              "profile": window.result if window else None}
    del trainer, system, datamodule
    return result, ckpt


def eval_way(way: str, args, ckpt: Path, overrides: list[str], out: Path) -> dict:
    limit = [f"limit_samples={args.eval_samples}"] if args.eval_samples else []
    cfg = compose_cfg("eval", [f"paths.root_dir={REPO}", f"paths.output_dir={out / f'eval_{way}'}", f"ckpt={ckpt}",
                               *EVAL_COMMON, *limit, *args.eval_override, *overrides])
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = evaluate(cfg)
    wall = time.perf_counter() - start
    return {"overrides": [*args.eval_override, *overrides], "samples": result["num_samples"],
            "loop_seconds": result["seconds"], "wall_seconds": wall,
            "samples_per_s": result["num_samples"] / result["seconds"], "mean_novel": result["mean"]["novel"]}


def plot_losses(path: Path, ways: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for way, r in ways.items():
        ax.plot(r["loss_curve"]["step"], r["loss_curve"]["loss"], label=f"{way} ({r['steps_per_s']:.1f} steps/s)")
    ax.set(xlabel="step", ylabel="train/loss", yscale="log", title="same config and seed, two data/step paths")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
            "cpus": len(__import__("os").sched_getaffinity(0))}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the JSON (runs go beside it, in OUT without .json)")
    parser.add_argument("--data", type=Path, required=True, help="a prepared set (its data_train / data_test lists)")
    parser.add_argument("--experiment", default="mouse_gslrm_scratch", help="conf/experiment name; none: the default job")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each way")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm", type=int, default=100, help="steps before the timed window (compilation, warm-up)")
    parser.add_argument("--profile-steps", type=int, default=10, help="fast way's profiled steps, after the window")
    parser.add_argument("--eval-samples", type=int, default=None, help="evaluate this many test samples (all)")
    parser.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS, help="MFU's peak (H100/H200 dense bf16)")
    parser.add_argument("--override", nargs="*", default=[], help="train config changes for both ways")
    parser.add_argument("--fast", nargs="*", default=[], help="train config changes of the fast way (after FAST_TRAIN)")
    parser.add_argument("--eval-override", nargs="*", default=[], help="eval config changes for both ways")
    parser.add_argument("--eval-fast", nargs="*", default=[], help="eval changes of the fast way (after FAST_EVAL)")
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error("--steps must be >= 3 (warm-up, timed window, profile)")
    runs = args.out.with_suffix("")
    report = {"experiment": args.experiment, "data": str(args.data), "steps": args.steps, "seed": args.seed,
              "machine": machine(), "train": {}, "eval": {}}
    ckpts = {}
    for way, overrides in (("today", []), ("fast", [*FAST_TRAIN, *args.fast])):
        print(f"[bench_study] training {way}: {overrides}", flush=True)
        report["train"][way], ckpts[way] = train_way(way, args, overrides, runs)
    for way, overrides in (("today", []), ("fast", [*FAST_EVAL, *args.eval_fast])):
        print(f"[bench_study] evaluating today's checkpoint, {way}: {overrides}", flush=True)
        report["eval"][way] = eval_way(way, args, ckpts["today"], overrides, runs)
    t, e = report["train"], report["eval"]
    report["speedup"] = {"train_steps_per_s": t["fast"]["steps_per_s"] / t["today"]["steps_per_s"],
                         "train_fit_wall": t["today"]["fit_wall_s"] / t["fast"]["fit_wall_s"],
                         "eval_samples_per_s": e["fast"]["samples_per_s"] / e["today"]["samples_per_s"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    plot_losses(args.out.with_suffix(".png"), t)
    for way in ("today", "fast"):
        r = t[way]
        print(f"[bench_study] {way}: {r['steps_per_s']:.2f} steps/s, {r['samples_per_s']:.1f} samples/s, "
              f"fit {r['fit_wall_s']:.0f} s, GPU {r['gpu_utilisation_pct']}, MFU {r['mfu']}; "
              f"eval {e[way]['samples_per_s']:.1f} samples/s", flush=True)
    if t["fast"]["profile"]:
        print(t["fast"]["profile"]["table"], flush=True)
    print(f"[bench_study] speed-up {report['speedup']}; wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    sys.exit(main())
