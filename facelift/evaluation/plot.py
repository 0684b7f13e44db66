"""``psnr.png``: eval.py's PSNR per camera and PSNR against the angle to the nearest input (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (also on headless machines)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from facelift.atomic import atomic_path  # noqa: E402
from facelift.evaluation.report import ANGLE_DEFINITION, ROLES, Aggregates, ViewRecord  # noqa: E402

COLOURS = {"novel": "tab:blue", "input": "tab:orange"}


def plot_psnr(path: Path, records: list[ViewRecord], agg: Aggregates, title: str) -> Path:
    """Left: mean PSNR per camera (view id), novel and input views side by side (a camera that is never novel, or
    never an input, has one marker). Right: every view's PSNR against its angle to the nearest input (inputs at 0)
    and the mean per angle bin of the novel ones. Written atomically."""
    fig, (cams, angles) = plt.subplots(1, 2, figsize=(12, 4.5))
    cameras = sorted({cam for cam, _ in agg.per_camera})
    x = np.arange(len(cameras))
    for k, role in enumerate(ROLES):
        means = [agg.per_camera[(c, role)].means["psnr"] if (c, role) in agg.per_camera else np.nan for c in cameras]
        # markers, not bars: bars from 0 dB would flatten the few-dB differences between cameras
        cams.plot(x + (k - 0.5) * 0.2, means, "o", color=COLOURS[role], label=f"{role} views")
    cams.set_xticks(x, [str(c) for c in cameras])
    cams.grid(axis="y", alpha=0.3)
    cams.set_xlabel("camera (view id)")
    cams.set_ylabel("mean PSNR (dB)")
    cams.set_title("PSNR per camera")
    cams.legend(loc="lower right", fontsize=8)

    for role in ROLES:
        chosen = [r for r in records if r.input == (role == "input")]
        if chosen:
            angles.scatter([r.angle_deg for r in chosen], [r.scores["psnr"] for r in chosen], s=10, alpha=0.5,
                           color=COLOURS[role], label=f"{role} views ({len(chosen)})")
    if agg.per_angle:
        centres = [(lo + hi) / 2 for lo, hi in agg.per_angle]
        angles.plot(centres, [g.means["psnr"] for g in agg.per_angle.values()], "o-", color="k",
                    label=f"novel mean per {agg.bin_deg:g} deg bin")
    angles.grid(alpha=0.3)
    angles.set_xlabel("angle to the nearest input camera (deg)")
    angles.set_ylabel("PSNR (dB)")
    angles.set_title("PSNR vs angle from the nearest input", fontsize=10)
    angles.legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.01, f"angle: {ANGLE_DEFINITION}", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
