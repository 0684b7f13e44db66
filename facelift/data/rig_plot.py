"""``rig_report.png``: the camera rigs before and after normalization, as 3D frusta (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (also on headless machines)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from facelift.cameras import Cameras  # noqa: E402
from facelift.data.rig import AXES, RigNormalization, RigReport  # noqa: E402
from facelift.image_io import write_figure  # noqa: E402

MAX_SAMPLES = 8  # more rigs than this make the plot unreadable; the JSON report has them all


def frustum_lines(cameras: Cameras, depth: float) -> list[np.ndarray]:
    """Polylines ``[N, 3]`` drawing each camera [V] as a pyramid ``depth`` deep, with a tick on its top edge."""
    lines = []
    w, h = cameras.width, cameras.height
    for c2w, (fx, fy, cx, cy) in zip(cameras.c2w.double().numpy(), cameras.intrinsics.double().numpy()):
        pix = np.array([[0, 0], [w, 0], [w, h], [0, h], [w / 2, -0.15 * h]], dtype=np.float64)
        cam = np.stack([(pix[:, 0] - cx) / fx, (pix[:, 1] - cy) / fy, np.ones(len(pix))], -1) * depth  # [5, 3]
        world = cam @ c2w[:3, :3].T + c2w[:3, 3]
        apex = c2w[:3, 3]
        tl, tr, br, bl, tick = world
        lines += [np.stack([tl, tr, br, bl, tl]), np.stack([tl, tick, tr])]
        lines += [np.stack([apex, corner]) for corner in (tl, tr, br, bl)]
    return lines


def plot_rigs(path: Path, rigs: list[tuple[str, Cameras, Cameras, RigReport]], config: RigNormalization) -> Path:
    """Left: raw rigs with their estimated centre and up; right: normalized rigs. Written atomically."""
    shown = rigs[:MAX_SAMPLES]
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    fig = plt.figure(figsize=(13, 6.5))
    panels = [fig.add_subplot(1, 2, i + 1, projection="3d") for i in range(2)]
    for i, (name, before, after, report) in enumerate(shown):
        colour = colours[i % 10]
        for ax, cams, dist in ((panels[0], before, report.distances_before),
                               (panels[1], after, report.distances_after)):
            for line in frustum_lines(cams, 0.2 * float(np.mean(dist))):
                ax.plot(*line.T, color=colour, linewidth=0.8)
            ax.scatter(*cams.centers.double().numpy().T, color=colour, s=8)
        centre, up = np.array(report.centre), np.array(report.up)
        length = 0.5 * float(np.mean(report.distances_before))
        panels[0].scatter(*centre, color=colour, marker="x", s=40, label=f"{name} (up: {report.up_source})")
        panels[0].quiver(*centre, *(up * length), color=colour, linewidth=1.5)
    target = np.array(AXES[config.up_axis]) * config.target_camera_distance * 0.5
    panels[1].scatter(0, 0, 0, color="k", marker="x", s=40)
    panels[1].quiver(0, 0, 0, *target, color="k", linewidth=1.5)
    more = f" ({len(shown)} of {len(rigs)} samples)" if len(rigs) > len(shown) else ""
    panels[0].set_title(f"raw{more}: x centre, arrow estimated up")
    panels[1].set_title(f"normalized: centre at origin, up +{config.up_axis.lstrip('-')}, "
                        f"{config.distance_mode} distance {config.target_camera_distance}")
    panels[0].legend(loc="upper left", fontsize=7)
    for ax in panels:
        _equal_axes(ax)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_zlabel("z")
    fig.subplots_adjust(left=0.0, right=0.97, top=0.93, bottom=0.03, wspace=0.05)
    return write_figure(fig, path, dpi=110)


def _equal_axes(ax) -> None:
    """Same scale on x, y and z, so angles and distances look like they are."""
    limits = np.array([ax.get_xlim3d(), ax.get_ylim3d(), ax.get_zlim3d()])
    middle, half = limits.mean(1), (limits[:, 1] - limits[:, 0]).max() / 2
    ax.set_xlim3d(middle[0] - half, middle[0] + half)
    ax.set_ylim3d(middle[1] - half, middle[1] + half)
    ax.set_zlim3d(middle[2] - half, middle[2] + half)
    ax.set_box_aspect((1, 1, 1))
