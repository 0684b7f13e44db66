"""The mouse study, end to end: generate -> prepare -> train from scratch -> evaluate on unseen animals -> ablations.

    python scripts/mouse_study.py --out studies/mice2k --num-animals 2000 --minutes 120 --device cuda --workers 14
    python scripts/mouse_study.py --out studies/mice2k --rows scratch,norm_seed_recipe --dry-run   (print commands)
    python scripts/mouse_study.py --out studies/mice2k --rows views_1_holdout5,views_2_holdout5,views_3_holdout5,\
views_4_holdout5,views_5_holdout5 --max-steps 10000 --minutes 75   (the view-count ablation: equal steps)

Every step is one command of this project, run in its own process and logged to OUT/logs/<step>.log; all of them
are also written to OUT/commands.sh, so any row can be rerun by hand:
  1. scripts/make_mouse_set.py -> OUT/raw (distinct animals, 6-camera rigs, split by animal; skipped if there)
  2. scripts/prepare_mouse_data.py --no-normalize -> OUT/prepared (square views; rigs normalized by each run), and
     OUT/prepared_crop (--crop animal: views centred on the animal) when a chosen row trains on it
  3. per row: train.py experiment=mouse_gslrm_scratch (or _finetune) + the row's overrides -> OUT/runs/<row>,
     then eval.py split=test (the held-out animals) -> OUT/eval/<row>/metrics.json
  4. OUT/summary.json and OUT/summary.md: per row its overrides, steps, skipped updates and test scores, led by
     the foreground ones (psnr_fg, IoU; whole-image PSNR / SSIM / LPIPS after) on the novel and the held-out
     cameras, the test views' foreground fraction, and a table of the view-count ablation (camera 5 held out);
     OUT/curves.png: every row's training loss, validation PSNR (foreground and whole image) and learning rate.
--minutes is the training time of all rows together, shared equally (trainer.max_time of each run). A row whose
eval metrics exist is not run again. One without them whose run has a checkpoint resumes from
OUT/runs/<row>/checkpoints/last.ckpt (a run killed by a command's time limit, or one whose OUT/eval/<row> was deleted
to train it further): max_time then counts the time of every call, so a long row runs in chunks with a growing
budget, e.g. --rows best_long --minutes 9, then rm -r OUT/eval/best_long and --minutes 18, then 25 (each chunk is
evaluated); its earlier metrics.csv is kept as csv/metrics_until_<time>.csv. Delete OUT/runs/<row> too to start it
afresh. Rows that need a weight file that is absent (LPIPS's VGG16 for the LPIPS rows, VGG19 too for the perceptual
row) or a human checkpoint (--human-ckpt, the finetune rows) are skipped and say so; nothing is downloaded. A failed
row is recorded and the next one runs; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from facelift.errors import SetupError
from facelift.evaluation.curves import plot_curves, read_series
from facelift.stages import resolve_device

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    name: str
    what: str  # one line for the summary
    overrides: tuple[str, ...] = ()
    experiment: str = "mouse_gslrm_scratch"
    needs: tuple[str, ...] = ()  # weight files it cannot run without (keys of Study.weights(): vgg19, lpips)
    needs_human: bool = False  # --human-ckpt
    prepared: str = "prepared"  # the prepared set it trains and is scored on: a key of PREPARED (OUT/<that>)
    eval_overrides: tuple[str, ...] = ()  # eval.py overrides of its own (e.g. score a random-background row on white)


# the prepared sets under OUT, each a prepare_mouse_data.py run on OUT/raw with these arguments
PREPARED = {"prepared": (), "prepared_crop": ("--crop", "animal", "--margin", "0.15")}


def spike(at: int, factor: float, steps: int) -> str:
    return f"model.optim.lr_spike={{at_step:{at},factor:{factor},steps:{steps}}}"


def silhouette_rows() -> list[Row]:
    """Issue 27: the animal, not the background. Every row states the silhouette, foreground-weight and background
    keys, so a row means the same whatever the experiment's defaults; all rows run the experiment's steps."""
    off = ("loss.alpha_loss_weight=0", "loss.foreground_weight=null", "data.background_color=white")
    sil = ("loss.alpha_loss_weight=1.0", "loss.alpha_loss=l1")
    white, random_bg = ("data.background_color=white",), ("data.background_color=random",)
    on_white = ("data.background_color=white",)  # eval.py: scored on white, like every other row
    fgw = sil + ("loss.foreground_weight=0.5",)
    crop = "prepared_crop"
    best = Row("silhouette_fgw_crop_random_bg", "all of it: silhouette, foreground 0.5, animal crops, random "
               "backgrounds", fgw + random_bg, prepared=crop, eval_overrides=on_white)
    return [
        Row("before_silhouette", "the recipe before issue 27: L2 + 0.5 SSIM on white, no silhouette (an opaque shell)",
            off),
        Row("silhouette", "+ L1 between rendered alpha and mask, weight 1", sil + ("loss.foreground_weight=null",)
            + white),
        Row("silhouette_fgw", "+ foreground weighting: the mask's pixels carry half of L2 and SSIM", fgw + white),
        Row("silhouette_fgw_crop", "+ animal-centred views (prepare --crop animal, margin 0.15; scored on the crops)",
            fgw + white, prepared=crop),
        Row("silhouette_fgw_random_bg", "+ a random background colour per sample (scored on white)", fgw + random_bg,
            eval_overrides=on_white),
        best,
        Row("best_long", f"{best.name} trained 3x longer (30000 steps; run it alone: --rows best_long --minutes 25, "
            "resumed across calls)", best.overrides + ("trainer.max_steps=30000",), prepared=crop,
            eval_overrides=on_white),
    ]


def study_rows(spike_at: int = 1000, spike_factor: float = 100.0, spike_steps: int = 20) -> list[Row]:
    """Each row is the baseline plus overrides: one command per row."""
    norm = "data.normalize_cameras."
    planted = spike(spike_at, spike_factor, spike_steps)
    return [
        Row("scratch", "baseline: from scratch, rigs normalized globally (one similarity per rig), L2 + SSIM, "
            "silhouette, foreground 0.5"),
        Row("norm_per_camera", "rigs: each camera to 2.7, fx fy rescaled", (f"{norm}distance_mode=per_camera",)),
        Row("norm_off", "rigs: as recorded (tilted up, origin off the animal)", (f"{norm}enabled=false",)),
        Row("norm_seed_recipe", "rigs: the seed recipe (Y up, each camera to 2.7 from the raw origin, images kept)",
            (f"{norm}up_axis=y", f"{norm}distance_mode=per_camera", f"{norm}rescale_focal=false",
             f"{norm}recentre=false")),
        Row("loss_l2_only", "loss: L2 only", ("loss.ssim_loss_weight=0",)),
        Row("loss_lpips", "loss: L2 + SSIM + LPIPS at 1.0 (mouse_gslrm_v2's LPIPS weight)",
            ("loss.lpips_loss_weight=1.0",), needs=("lpips",)),
        Row("loss_lpips_warmup", "the LPIPS row after FaceLift's 500 L2-only steps (LPIPS from the start stalls)",
            ("loss.lpips_loss_weight=1.0", "loss.l2_warmup_steps=500"), needs=("lpips",)),
        Row("loss_perceptual", "loss: L2 + perceptual + LPIPS + SSIM (mouse_gslrm_v2's weights)",
            ("loss=mouse",), needs=("vgg19", "lpips")),
        Row("spike_rule_on", f"LR x{spike_factor:g} for {spike_steps} steps at {spike_at}, grad-norm skip on",
            (planted,)),
        Row("spike_rule_off", "the same spike, grad-norm skip off (clipping only)",
            (planted, "model.step_rule.allowed_gradnorm_factor=inf")),
        Row("finetune", "mouse_gslrm_v2's recipe from a human checkpoint at the reduced size, 3 inputs",
            ("data.num_input_views=3",), "mouse_gslrm_finetune", needs_human=True),
        Row("finetune_scratch_recipe", "the baseline's recipe (LR 4e-4, batch 8, L2 + SSIM) from the human checkpoint",
            needs_human=True),
        *silhouette_rows(),
        *view_rows(),
    ]


HELD_OUT = 5  # the camera the view-count ablation never trains on (the peer's protocol: one camera held out)
# the view-count ablation: row name -> its input cameras (the first k of cameras 0-4)
VIEW_ROWS = {f"views_{k}_holdout{HELD_OUT}": tuple(range(k)) for k in range(1, 6)}


def view_rows() -> list[Row]:
    """Camera 5 held out (never read in training), 1 to 5 of cameras 0-4 as the inputs, the other cameras of 0-4
    supervised with the inputs; all rows train the same steps (run them with --max-steps, and --minutes enough for
    all: the summary flags unequal steps). Scored on the held-out camera and on the novel cameras of 0-4."""
    return [Row(name, f"inputs: cameras {', '.join(map(str, cams))}; camera {HELD_OUT} held out",
                (f"data.holdout_views=[{HELD_OUT}]", f"data.num_views={HELD_OUT}", f"data.num_input_views={len(cams)}",
                 f"data.input_views=[{','.join(map(str, cams))}]", "data.target_has_input=true"))
            for name, cams in VIEW_ROWS.items()]


@dataclass
class Study:
    args: argparse.Namespace

    @property
    def out(self) -> Path:
        return self.args.out

    def run(self, name: str, argv: list[str]) -> int:
        """Run one project command from the repository root, logged; returns its exit status."""
        line = shlex.join(argv)
        record = self.out / "commands.sh"  # appended line by line: rows run as parallel studies share it
        header = "" if record.is_file() and record.stat().st_size else "#!/bin/sh\n# every command of the study, in order\n"
        with open(record, "a") as fh:
            fh.write(header + line + "\n")
        print(f"[{name}] {line}", flush=True)
        if self.args.dry_run:
            return 0
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        start = time.perf_counter()
        log = self.out / "logs" / f"{name}.log"
        with open(log, "w") as fh:
            rc = subprocess.run(argv, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
        print(f"[{name}] exit {rc} after {time.perf_counter() - start:.0f} s (log: {log})", flush=True)
        return rc

    def weights(self) -> dict[str, Path]:
        w = self.args.weights_dir
        return {"vgg19": w / "vgg19" / "imagenet-vgg-verydeep-19.mat", "lpips": w / "lpips" / "vgg16-397923af.pth"}

    def missing(self, row: Row) -> str | None:
        """Why ``row`` cannot run here, or None."""
        if row.needs_human and not self.args.human_ckpt:
            return "no --human-ckpt (a human GS-LRM checkpoint at the reduced size, e.g. experiment=human_gslrm_sample)"
        absent = [str(p) for name, p in self.weights().items() if name in row.needs and not p.is_file()]
        if absent:
            return "missing weight file(s): " + ", ".join(absent)
        return None

    def train_and_eval(self, row: Row, seconds: int) -> dict:
        a = self.args
        run_dir, eval_dir = self.out / "runs" / row.name, self.out / "eval" / row.name
        overrides = list(row.overrides)
        if row.needs_human:
            overrides.append(f"model.init_ckpt={Path(a.human_ckpt).resolve()}")
            terms = {"vgg19": "loss.perceptual_loss_weight=0", "lpips": "loss.lpips_loss_weight=0"}
            overrides += [terms[name] for name, p in self.weights().items() if not p.is_file()]  # v2's feature
            # losses whose weight file is absent are dropped (and listed in the row's overrides), the rest kept
        days, rest = divmod(max(1, seconds), 86400)
        last, log = run_dir / "checkpoints" / "last.ckpt", run_dir / "csv" / "metrics.csv"
        if last.is_file():  # stopped before its evaluation (a command limit, a crash): go on from there; the
            overrides.append(f"ckpt_path={last}")  # restored timer makes max_time this row's budget over all calls
            if log.is_file() and not a.dry_run:  # Lightning's CSV logger starts metrics.csv afresh: keep the
                # earlier part beside it
                log.rename(log.with_name(f"metrics_until_{time.strftime('%Y%m%d-%H%M%S')}.csv"))
        train = [sys.executable, "train.py", f"experiment={row.experiment}", *overrides,
                 f"data.data_dir={self.out / row.prepared}", f"paths.weights_dir={a.weights_dir}",
                 f"hydra.run.dir={run_dir}", f"trainer.max_time={days:02d}:{time.strftime('%H:%M:%S', time.gmtime(rest))}",
                 f"data.image_size={a.image_size}", f"data.num_workers={a.workers}"]
        if a.max_steps:
            train.append(f"trainer.max_steps={a.max_steps}")
        if a.device == "cpu":
            train.append("trainer=cpu")
        train += a.train_override
        result = {"row": row.name, "what": row.what, "experiment": row.experiment, "overrides": overrides}
        rc = self.run(f"train_{row.name}", train)
        if rc != 0:
            return {**result, "status": f"failed: train.py exit {rc}"}
        lpips = self.weights()["lpips"].is_file()
        evaluate = [sys.executable, "eval.py", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "split=test",
                    f"hydra.run.dir={eval_dir}", f"paths.weights_dir={a.weights_dir}", "turntable.frames=0",
                    f"metrics.lpips={str(lpips).lower()}", f"limit_samples={a.eval_samples}",
                    f"device={'cpu' if a.device == 'cpu' else 'auto'}", *row.eval_overrides, *a.eval_override]
        rc = self.run(f"eval_{row.name}", evaluate)
        if rc != 0:
            return {**result, "status": f"failed: eval.py exit {rc}"}
        return {**result, "status": "dry run" if a.dry_run else "ok"}


def read_results(study: Study, row: Row, result: dict) -> dict:
    """Add what the run and its evaluation wrote: steps, skipped updates, last validation, test means per group."""
    result["prepared"] = row.prepared  # the set it was scored on (the summary's foreground fraction is per set)
    metrics_csv = study.out / "runs" / row.name / "csv" / "metrics.csv"
    if metrics_csv.is_file():
        series = read_series(metrics_csv)
        last = lambda key: float(series[key][1][-1]) if key in series else None  # noqa: E731
        # logged before the update: the last logged step is the count minus one
        step = max((float(steps[-1]) for steps, _ in series.values()), default=None)
        result.update(steps=None if step is None else step + 1, skipped_gradnorm=last("train/skipped_gradnorm"),
                      skipped_nonfinite=last("train/skipped_nonfinite_loss"), val_psnr=last("val/psnr"),
                      val_psnr_fg=last("val/psnr_fg"), val_psnr_fg_holdout=last("val/psnr_fg_holdout"),
                      max_lr=max((float(v.max()) for k, (_, v) in series.items() if k.startswith("lr-")), default=None))
    metrics_json = study.out / "eval" / row.name / "metrics.json"
    if metrics_json.is_file():
        doc = json.loads(metrics_json.read_text())
        result.update(test_samples=doc["num_samples"], test_novel=doc["mean"]["novel"], test_all=doc["mean"]["all"])
        # the aggregates have a group only where it has views: no "novel" when every camera not held out is an input
        agg = doc.get("aggregate", {})
        result["test_groups"] = {g: agg[g] for g in ("novel", "input", "holdout", "all") if g in agg}
    return result


# the summary's score columns: (group, metric, title); the foreground first, whole-image scores labelled as such
SCORE_COLUMNS = (("novel", "psnr_fg", "novel psnr_fg (dB)"), ("novel", "iou", "novel IoU"),
                 ("holdout", "psnr_fg", "held-out psnr_fg (dB)"), ("holdout", "iou", "held-out IoU"),
                 ("novel", "psnr", "novel PSNR whole image (dB)"), ("novel", "ssim", "novel SSIM whole image"),
                 ("novel", "lpips", "novel LPIPS whole image"))
VIEW_COLUMNS = (("holdout", "psnr_fg", "held-out psnr_fg (dB)"), ("holdout", "iou", "held-out IoU"),
                ("novel", "psnr_fg", "novel psnr_fg (dB)"), ("novel", "iou", "novel IoU"),
                ("holdout", "psnr", "held-out PSNR whole image (dB)"), ("novel", "psnr", "novel PSNR whole image (dB)"))
SCORES_NOTE = ("psnr_fg: PSNR over the pixels whose true mask > 0.5; IoU: of that mask and the rendered alpha > 0.5; "
               "novel: cameras that were no input; held-out: cameras never read in training (data.holdout_views); "
               "whole-image PSNR mostly scores the white background. '-': no such views (or no foreground).")


def _score(r: dict, group: str, metric: str) -> str:
    value = r.get("test_groups", {}).get(group, {}).get(metric)
    if value is None and group == "novel" and "test_groups" not in r:  # an evaluation from before the aggregates
        value = r.get("test_novel", {}).get(metric)
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}" if metric.startswith("psnr") else f"{value:.3f}"


def _fg_fraction(results: list[dict]) -> str:
    """The mean share of the frame the animal covers over every scored test view, per prepared set (full frames
    and animal crops differ several-fold: one mean over both would describe neither)."""
    views: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        g = r.get("test_groups", {}).get("all", {})
        if "fg_fraction" in g:
            views.setdefault(r.get("prepared", "prepared"), []).append((g["count"], g["fg_fraction"]))
    if not views:
        return "foreground fraction of the test views: not measured (no evaluation with foreground metrics yet)"
    parts = []
    for name, counts in sorted(views.items()):
        count = sum(n for n, _ in counts)
        mean = sum(n * f for n, f in counts) / count
        parts.append(f"{100 * mean:.2f} % of the frame in {name} ({count} scored views over {len(counts)} rows)")
    return f"foreground fraction of the test views: {'; '.join(parts)}; fg_fraction = mask > 0.5 pixels / pixels"


def _table(results: list[dict], columns, lead: list[tuple[str, callable]]) -> list[str]:
    titles = [t for t, _ in lead] + [t for _, _, t in columns] + ["what"]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for r in results:
        cells = [get(r) for _, get in lead] + [_score(r, g, m) for g, m, _ in columns] + [r["what"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_summary(out: Path, results: list[dict], header: dict) -> None:
    (out / "summary.json").write_text(json.dumps({**header, "rows": results}, indent=2))
    steps = lambda r: f"{r['steps']:.0f}" if r.get("steps") is not None else "-"  # noqa: E731
    skipped = lambda r: f"{r['skipped_gradnorm']:.0f}" if r.get("skipped_gradnorm") is not None else "-"  # noqa: E731
    budget = "rows gathered from their runs" if header.get("minutes") is None else \
        f"{header['minutes']} min of training"
    lines = [f"# Mouse study: {header.get('num_animals')} animals, {budget}", "",
             _fg_fraction(results), "", SCORES_NOTE, "",
             *_table(results, SCORE_COLUMNS, [("row", lambda r: r["row"]), ("status", lambda r: r["status"]),
                                              ("steps", steps), ("skipped", skipped)])]
    views = [r for r in results if r["row"] in VIEW_ROWS]
    if views:
        counts = {steps(r) for r in views if r.get("steps") is not None}
        equal = ("not run yet" if not counts else "equal steps" if len(counts) == 1 else
                 f"UNEQUAL steps ({', '.join(sorted(counts))}): rerun with --max-steps and enough --minutes")
        lines += ["", f"## View-count ablation: camera {HELD_OUT} held out, 1-5 of cameras 0-4 as inputs ({equal})",
                  "", *_table(views, VIEW_COLUMNS, [("row", lambda r: r["row"]), ("inputs", lambda r: str(
                      len(VIEW_ROWS[r["row"]]))), ("steps", steps)])]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="study folder (created; reruns resume)")
    p.add_argument("--num-animals", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=120, help="training time of all rows together")
    p.add_argument("--rows", default="all", help="comma-separated row names (see --dry-run), or all")
    p.add_argument("--device", default="cuda", help="cuda (generation and training on the GPU) or cpu")
    p.add_argument("--workers", type=int, default=8, help="processes for generation, preparation and loading")
    p.add_argument("--gen-width", type=int, default=288, help="raw image width (the lab's 288 x 256)")
    p.add_argument("--gaussians", type=int, default=20000, help="Gaussians per generated animal")
    p.add_argument("--calib-noise-px", type=float, default=0.0, help="calibration error written into the set")
    p.add_argument("--image-size", type=int, default=128, help="side of the prepared views and of training")
    p.add_argument("--max-steps", type=int, help="trainer.max_steps of every run (default: the experiment's)")
    p.add_argument("--eval-samples", type=int, default=100, help="test animals evaluated per row (eval writes a PLY each)")
    p.add_argument("--spike", type=float, nargs=3, default=(1000, 100.0, 20), metavar=("AT", "FACTOR", "STEPS"),
                   help="the planted LR spike of the spike rows")
    p.add_argument("--human-ckpt", help="human GS-LRM checkpoint at the reduced size, for the finetune row")
    p.add_argument("--weights-dir", type=Path, default=REPO / "weights", help="local weight files (paths.weights_dir)")
    p.add_argument("--train-override", action="append", default=[], help="extra train.py override (repeatable)")
    p.add_argument("--eval-override", action="append", default=[], help="extra eval.py override (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="write and print the commands, run nothing")
    p.add_argument("--summary-only", action="store_true",
                   help="run nothing: summary and curves of the rows already there (rows run as parallel studies)")
    args = p.parse_args(argv)
    args.out, args.weights_dir = args.out.resolve(), args.weights_dir.resolve()  # the steps run from the repository
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = study_rows(int(args.spike[0]), args.spike[1], int(args.spike[2]))
    chosen = [r.name for r in rows] if args.rows == "all" else [n.strip() for n in args.rows.split(",")]
    unknown = sorted(set(chosen) - {r.name for r in rows})
    if unknown:
        sys.exit(f"error: unknown row(s) {unknown}; rows are {[r.name for r in rows]}")
    try:  # --device cuda on a machine without one: one line here, not the generator's traceback in its log
        if not (args.dry_run or args.summary_only):  # these run nothing: any machine may write or read them
            resolve_device(args.device)
    except SetupError as err:
        sys.exit(f"error: --{err}")
    study = Study(args)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    raw = args.out / "raw"
    if (raw / "generation.json").is_file():  # resuming: the set there must be the one asked for
        made = json.loads((raw / "generation.json").read_text())["num_animals"]
        if made != args.num_animals:
            sys.exit(f"error: {raw} holds {made} animals, not --num-animals {args.num_animals}; use another --out")
    elif not args.summary_only:
        if study.run("generate", [sys.executable, "scripts/make_mouse_set.py", "--out", str(raw), "--num-animals",
                                  str(args.num_animals), "--device", args.device, "--workers", str(args.workers),
                                  "--width", str(args.gen_width), "--gaussians", str(args.gaussians),
                                  "--calib-noise-px", str(args.calib_noise_px)]):
            return 1
    for variant in sorted({"prepared"} | {r.prepared for r in rows if r.name in chosen}):
        prepared = args.out / variant
        if not (prepared / "data_train.txt").is_file() and not args.summary_only:
            if study.run(variant.replace("prepared", "prepare"), [
                    sys.executable, "scripts/prepare_mouse_data.py", "--src", str(raw), "--dst", str(prepared),
                    "--size", str(args.image_size), "--no-normalize", "--workers", str(args.workers),
                    *PREPARED[variant]]):
                return 1

    selected = [r for r in rows if r.name in chosen]
    runnable = [r for r in selected if study.missing(r) is None]
    seconds = int(args.minutes * 60 / max(1, len(runnable)))
    if not args.summary_only:
        print(f"{len(runnable)} of {len(selected)} rows can run here, {seconds} s of training each", flush=True)
    results = []
    for row in selected:
        why = study.missing(row)
        if why:
            result = {"row": row.name, "what": row.what, "status": f"skipped: {why}"}
            print(f"[{row.name}] skipped: {why}", flush=True)
        elif (args.out / "eval" / row.name / "metrics.json").is_file():
            result = {"row": row.name, "what": row.what, "status": "ok (earlier run)", "overrides": list(row.overrides)}
        elif args.summary_only:
            result = {"row": row.name, "what": row.what, "status": "not run (no evaluation there)"}
        else:
            result = study.train_and_eval(row, seconds)
        results.append(read_results(study, row, result))
        # --summary-only trains nothing: its --minutes says nothing of the rows (their steps column does)
        write_summary(args.out, results, {"num_animals": args.num_animals,
                                          "minutes": None if args.summary_only else args.minutes})
    logs = {r.name: args.out / "runs" / r.name / "csv" / "metrics.csv" for r in selected}
    logs = {name: path for name, path in logs.items() if path.is_file()}
    if logs:  # every row's loss, validation PSNR and LR in one picture
        plot_curves(logs, args.out / "curves.png", f"mouse study: {', '.join(logs)}")
    print(f"study done in {time.perf_counter() - started:.0f} s: {args.out / 'summary.md'}", flush=True)
    return 1 if any(r["status"].startswith("failed") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
