"""Training curves of one or more runs from their ``csv/metrics.csv`` (the csv logger): loss, validation PSNR over
the foreground and over the whole image, LR.

One figure, four panels sharing the step axis, one colour per run, so study rows can be compared at a glance:
``python scripts/plot_run.py outputs/mouse_gslrm_scratch/<run> [more runs] --out curves.png``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from facelift.errors import InputError  # noqa: E402
from facelift.image_io import write_figure  # noqa: E402

# per PSNR panel, its keys: all scored views (inputs included when supervised), novel ones, held-out cameras
VAL_KEYS = {m: (f"val/{m}", f"val/{m}_novel", f"val/{m}_holdout") for m in ("psnr_fg", "psnr")}
STYLES = ("--", "-", ":")  # line style of each key of a panel
NOT_TERMS = ("train/loss", "train/grad_norm")  # train/ keys that are not a loss term (nor are train/skipped_*)


def read_series(metrics_csv: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every logged key -> (steps, values), skipping the blank cells of rows that logged other keys."""
    path = Path(metrics_csv)
    if not path.is_file():
        raise InputError(path, "no metrics.csv here (was the run logged with logger=csv, the default?)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if not row.get("step"):
            continue
        for key, value in row.items():
            if key not in ("step", "epoch") and value not in ("", None):
                series.setdefault(key, []).append((float(row["step"]), float(value)))
    return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v])) for k, v in series.items()}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (the first points average what exists): noisy per-step losses."""
    if window <= 1 or values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    return (sums[idx] - sums[np.maximum(idx - window, 0)]) / np.minimum(idx, window)


def plot_curves(runs: dict[str, str | Path], path: str | Path, title: str = "") -> Path:
    """``runs``: label -> metrics.csv. Panels: train loss (log scale, smoothed), validation PSNR over the foreground
    and over the whole image (solid: novel views, dashed: all views, dotted: held-out cameras), learning rate (log
    scale: a planted spike stays readable). One legend of runs, outside. A run that logged no foreground PSNR (older runs) leaves that panel."""
    fig, (loss_ax, fg_ax, psnr_ax, lr_ax) = plt.subplots(1, 4, figsize=(20, 4.2))
    psnr_axes = {"psnr_fg": fg_ax, "psnr": psnr_ax}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(runs) > len(colours):  # more runs than the default cycle has colours: one of 20 each, then repeat
        colours = list(plt.get_cmap("tab20").colors)
    colours = colours * (len(runs) // len(colours) + 1)
    terms: set[str] = set()  # the loss terms the runs logged (train/<term>: unweighted values)
    for k, (colour, (label, metrics_csv)) in enumerate(zip(colours, runs.items())):
        series = read_series(metrics_csv)
        terms |= {key.removeprefix("train/") for key in series if key.startswith("train/") and key not in NOT_TERMS
                  and not key.startswith("train/skipped_")}
        if "train/loss" in series:
            steps, loss = series["train/loss"]
            loss_ax.plot(steps, smooth(loss, max(1, loss.size // 50)), color=colour)
        for metric, keys in VAL_KEYS.items():
            for key, style in zip(keys, STYLES):
                if key in series:
                    psnr_axes[metric].plot(*series[key], style, marker=".", color=colour)
        lr_key = next((k for k in series if k.startswith("lr-")), None)
        if lr_key:
            lr_ax.plot(*series[lr_key], color=colour)
        fig.legend(handles=[plt.Line2D([], [], color=colour, label=label)], loc="upper left", fontsize=8,
                   bbox_to_anchor=(0.89, 0.9 - 0.055 * k), frameon=False)
    psnr_ax.legend(handles=[plt.Line2D([], [], ls=style, color="k", label=label) for style, label in
                            zip(STYLES, ("all views", "novel views", "held-out cameras"))], fontsize=8,
                   loc="lower right")
    loss_name = f"train/loss: weighted sum of {', '.join(sorted(terms))}" if terms else "train/loss"
    for ax, name, y_name, log in ((loss_ax, f"training loss (smoothed)\n{loss_name}", "loss", True),
                                  (fg_ax, "validation PSNR over the foreground", "PSNR over the foreground (dB)", False),
                                  (psnr_ax, "validation whole-image PSNR", "whole-image PSNR (dB)", False),
                                  (lr_ax, "learning rate", "learning rate", True)):
        log = log and ax.has_data()
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{y_name} (log scale)" if log else y_name)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.89, 1))
    return write_figure(fig, path, dpi=100, format="png")
