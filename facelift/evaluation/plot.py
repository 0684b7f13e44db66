"""``psnr.png``: eval.py's PSNR over the foreground and over the whole image, per camera and against the angle to
the nearest input (matplotlib, Agg): one row of two panels per metric."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (also on headless machines)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from facelift.evaluation.report import ANGLE_DEFINITION, ROLES, Aggregates, ViewRecord  # noqa: E402
from facelift.image_io import write_figure  # noqa: E402

COLOURS = {"novel": "tab:blue", "input": "tab:orange", "holdout": "tab:green"}
# the rows of the figure, top first: the subject (mask > 0.5 of the target), then the whole frame
PANELS = (("psnr_fg", "PSNR over the foreground (dB)"), ("psnr", "whole-image PSNR (dB)"))


def plot_psnr(path: Path, records: list[ViewRecord], agg: Aggregates, title: str) -> Path:
    """Per metric of `PANELS` that the records have, a row: left, its mean per camera (view id), novel, input and
    held-out views side by side (a camera has a marker per role it played); right, every view's value against its
    angle to the nearest input (inputs at 0) and the mean per angle bin of the novel ones. Views
    without foreground (NaN) are not drawn. Written atomically."""
    panels = [(k, label) for k, label in PANELS if k in agg.metric_names]
    fig, axes = plt.subplots(len(panels), 2, figsize=(12, 4.5 * len(panels)), squeeze=False)
    for (cams, angles), (metric, label) in zip(axes, panels):
        _per_camera(cams, agg, metric, label)
        _per_angle(angles, records, agg, metric, label)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.01, f"angle: {ANGLE_DEFINITION}", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return write_figure(fig, path, dpi=100, format="png")


def _per_camera(ax, agg: Aggregates, metric: str, label: str) -> None:
    cameras = sorted({cam for cam, _ in agg.per_camera})
    x = np.arange(len(cameras))
    for k, role in enumerate(ROLES):
        means = [agg.per_camera[(c, role)].means[metric] if (c, role) in agg.per_camera else np.nan for c in cameras]
        # markers, not bars: bars from 0 dB would flatten the few-dB differences between cameras
        if not np.isnan(means).all():
            ax.plot(x + (k - 1) * 0.2, means, "o", color=COLOURS[role], label=f"{role} views")
    ax.set_xticks(x, [str(c) for c in cameras])
    ax.grid(axis="y", alpha=0.3)
    ax.set_xlabel("camera (view id)")
    ax.set_ylabel(f"mean {label}")
    ax.set_title(f"{label} per camera", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)


def _per_angle(ax, records: list[ViewRecord], agg: Aggregates, metric: str, label: str) -> None:
    for role in ROLES:
        chosen = [r for r in records if r.role == role and not np.isnan(r.scores[metric])]
        if chosen:
            ax.scatter([r.angle_deg for r in chosen], [r.scores[metric] for r in chosen], s=10, alpha=0.5,
                       color=COLOURS[role], label=f"{role} views ({len(chosen)})")
    if agg.per_angle:
        centres = [(lo + hi) / 2 for lo, hi in agg.per_angle]
        ax.plot(centres, [g.means[metric] for g in agg.per_angle.values()], "o-", color="k",
                label=f"novel mean per {agg.bin_deg:g} deg bin")
    ax.grid(alpha=0.3)
    ax.set_xlabel("angle to the nearest input camera (deg)")
    ax.set_ylabel(label)
    ax.set_title(f"{label} vs angle from the nearest input", fontsize=10)
    ax.legend(loc="best", fontsize=8)
