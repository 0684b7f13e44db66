"""``rig_report.png``: an imported rig seen from above and from the side (matplotlib, Agg).

Each camera is a dot with its name and an arrow along its view direction; a cross marks the point the optical axes
pass closest to (where the animal should be); the world's up axis is drawn from the origin. "Up" is the world axis
nearest the mean camera up (a rig's cameras stand upright), so "above" looks down that axis.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (also on headless machines)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from facelift.image_io import write_figure  # noqa: E402
from facelift.rigs.rig import Rig  # noqa: E402

AXIS_NAMES = "xyz"


def up_axis(rig: Rig) -> tuple[int, float]:
    """(index, sign) of the world axis nearest the mean camera up."""
    mean_up = np.mean([f.up for f in rig.frames], axis=0)
    axis = int(np.argmax(np.abs(mean_up)))
    return axis, float(np.sign(mean_up[axis]) or 1.0)


def plot_rig(rig: Rig, path: str | Path, title: str = "") -> Path:
    """Top and side views of ``rig``; written atomically."""
    axis, sign = up_axis(rig)
    horizontal = [a for a in range(3) if a != axis]
    centres = np.stack([f.centre for f in rig.frames])  # [V, 3]
    forwards = np.stack([f.forward for f in rig.frames])  # [V, 3]
    meet = rig.axes_centre()
    reach = float(np.linalg.norm(centres - meet, axis=1).mean())
    fig, panels = plt.subplots(1, 2, figsize=(13, 6.2))
    views = ((panels[0], horizontal, f"from above ({'+-'[sign < 0]}{AXIS_NAMES[axis]} towards you)"),
             (panels[1], [horizontal[0], axis], f"from the side (looking along {AXIS_NAMES[horizontal[1]]})"))
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for ax, (a, b), label in views:
        for i, f in enumerate(rig.frames):
            c, d = centres[i], forwards[i] * 0.35 * reach
            ax.plot(*centres[i, [a, b]], "o", color=colours[i % 10])
            ax.annotate("", xy=(c[a] + d[a], c[b] + d[b]), xytext=(c[a], c[b]),
                        arrowprops=dict(arrowstyle="->", color=colours[i % 10], lw=1.6))
            ax.plot([c[a], meet[a]], [c[b], meet[b]], ":", color=colours[i % 10], lw=0.8)
            ax.annotate(f.name, (c[a], c[b]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.plot(meet[a], meet[b], "kx", ms=10, mew=2, label=f"axes meet {np.round(meet, 1).tolist()}")
        ax.plot(0, 0, "k+", ms=8, label="world origin")
        if b == axis:  # the side view shows the up axis itself
            ax.annotate("", xy=(0, sign * 0.4 * reach), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="-|>", color="k", lw=2))
            ax.annotate(f"up {'+-'[sign < 0]}{AXIS_NAMES[axis]}", (0, sign * 0.4 * reach), fontsize=9)
        else:
            ax.annotate(f"up {'+-'[sign < 0]}{AXIS_NAMES[axis]} (out of the page)" if sign > 0 else
                        f"up -{AXIS_NAMES[axis]} (into the page)", (0.02, 0.02), xycoords="axes fraction")
        ax.set_xlabel(f"{AXIS_NAMES[a]} ({rig.units})")
        ax.set_ylabel(f"{AXIS_NAMES[b]} ({rig.units})")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        ax.set_title(label)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{title or f'{len(rig.frames)} cameras'}: {reach:.0f} {rig.units} mean distance to where the axes meet")
    fig.tight_layout()
    return write_figure(fig, path, dpi=100)
