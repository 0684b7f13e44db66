"""What eval.py reports beyond the per-sample files: one record per scored view and the tables made from them.

Every scored view becomes a `ViewRecord` (sample, view id, its role, angle to the nearest input, metrics). A role
is ``input`` (the model saw the view), ``holdout`` (a camera held out of training: ``data.holdout_views``) or
``novel`` (any other target). From the records: ``per_view.csv`` (one row each), the aggregates (means over the
novel, input, held-out and all views, per camera, per angle bin) as ``aggregate.json`` and ``aggregate.md``; the
plot lives in `facelift.evaluation.plot`.
A foreground metric that is NaN for a view (no foreground in its mask: `facelift.evaluation.foreground`) is left
out of that metric's means, and every group says how many it left out.

The angle of a view to the nearest input is the angle between the two camera centres as seen from the world
origin, the subject's centre once a rig is normalized (FaceLift's ring is centred there already). It is the
measure ``view_overlap_angle`` uses to pick targets near inputs, so both speak of the same degrees.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from facelift.atomic import atomic_path, write_json, write_text
from facelift.cameras import Cameras
from facelift.evaluation.foreground import FOREGROUND_METRICS, nan_mean

# said in every table, so that a reader of aggregate.md alone knows what the angle means
ANGLE_DEFINITION = "angle between camera centres seen from the world origin (the subject's centre), degrees"
ROLES = ("novel", "input", "holdout")  # a target not shown / shown to the model / of a camera held out of training
# the order of the metrics in every table: what the subject looks like first, whole-image scores after
REPORT_ORDER = ("psnr_fg", "iou", "psnr_int", "coverage", "precision", "psnr", "ssim", "lpips", "fg_fraction")


@dataclass
class ViewRecord:
    """One scored view of one sample."""

    index: int  # the sample's position in the split's file list
    sample: str  # the sample folder's name
    view: int  # view id in the sample's camera file: the camera index on a fixed rig
    input: bool  # the view was one of the model's inputs
    angle_deg: float  # to the nearest input camera (0 for an input); see ANGLE_DEFINITION
    scores: dict[str, float]  # psnr, ssim (and lpips when on), the foreground metrics (NaN where undefined)
    holdout: bool = False  # its camera is one of data.holdout_views: never read in training

    @property
    def role(self) -> str:
        return "input" if self.input else "holdout" if self.holdout else "novel"


@dataclass
class GroupMean:
    """The mean of every metric over a group of views."""

    count: int  # views in the group
    means: dict[str, float]  # metric -> mean over the views where it is defined (NaN if none)
    left_out: dict[str, int] = field(default_factory=dict)  # foreground metric -> views left out (NaN there)


@dataclass
class Aggregates:
    roles: dict[str, GroupMean]  # "novel", "input", "holdout", "all" (a group with no view is left out)
    per_camera: dict[tuple[int, str], GroupMean]  # (view id, role) -> its views, sorted by view id then role
    per_angle: dict[tuple[float, float], GroupMean]  # [lo, hi) degrees -> the novel views in that bin, sorted
    bin_deg: float  # width of the angle bins
    metric_names: list[str] = field(default_factory=list)  # column order of every table


def angles_to_nearest_input(targets: Cameras, inputs: Cameras) -> Tensor:
    """``[B, V_t]`` degrees from each target camera to the nearest input camera of the same sample (inputs
    ``[B, V_in]``), between the camera centres seen from the world origin. An input scored as a target gets exactly
    0: atan2(|a x b|, a . b) vanishes for identical vectors, where acos of a rounded cosine would not."""
    t = targets.centers.double()[:, :, None]  # [B, V_t, 1, 3]
    i = inputs.centers.double()[:, None]  # [B, 1, V_in, 3]
    cross = torch.linalg.cross(t.expand(-1, -1, i.shape[2], -1), i.expand(-1, t.shape[1], -1, -1)).norm(dim=-1)
    angle = torch.atan2(cross, (t * i).sum(-1))  # [B, V_t, V_in] radians in [0, pi]
    return torch.rad2deg(angle.amin(dim=-1)).float()


def role_masks(target_ids: Tensor, input_ids: Tensor, holdout_ids=()) -> dict[str, Tensor]:
    """Which targets ``[B, V_t]`` (view ids) are of each of `ROLES` given the input view ids ``[B, V_in]`` and
    the held-out camera ids: a bool ``[B, V_t]`` per role."""
    is_input = (target_ids[:, :, None] == input_ids[:, None, :]).any(-1)
    held = torch.isin(target_ids, torch.as_tensor(list(holdout_ids), dtype=target_ids.dtype,
                                                  device=target_ids.device)) & ~is_input
    return {"novel": ~is_input & ~held, "input": is_input, "holdout": held}


def batch_records(names: list[str], indices: list[int], targets: Cameras, inputs: Cameras, target_ids: Tensor,
                  input_ids: Tensor, scores: dict[str, Tensor], holdout_ids=()) -> list[ViewRecord]:
    """Records of a batch: per sample ``names[b]`` (file-list position ``indices[b]``), target view ids
    ``target_ids`` [B, V_t] and input view ids ``input_ids`` [B, V_in], metric scores [B, V_t] each; targets
    whose id is in ``holdout_ids`` are flagged held out."""
    angles = angles_to_nearest_input(targets, inputs).tolist()
    roles = role_masks(target_ids, input_ids, holdout_ids)
    is_input, held = roles["input"].tolist(), roles["holdout"].tolist()  # [B, V_t]
    values = {k: v.tolist() for k, v in scores.items()}  # one device sync per metric and batch
    return [ViewRecord(indices[b], names[b], int(view), bool(is_input[b][j]), float(angles[b][j]),
                       {k: float(v[b][j]) for k, v in values.items()}, bool(held[b][j]))
            for b in range(len(names)) for j, view in enumerate(target_ids[b].tolist())]


def group_mean(records: list[ViewRecord]) -> GroupMean:
    means, left_out = {}, {}
    for k in records[0].scores:
        means[k], missing = nan_mean([r.scores[k] for r in records])
        if k in FOREGROUND_METRICS:
            left_out[k] = missing
    return GroupMean(len(records), means, left_out)


def metric_order(names) -> list[str]:
    """``names`` in `REPORT_ORDER` (others after, as given)."""
    return sorted(names, key=lambda k: REPORT_ORDER.index(k) if k in REPORT_ORDER else len(REPORT_ORDER))


def aggregate(records: list[ViewRecord], bin_deg: float) -> Aggregates:
    """Means over the novel, input, held-out and all views, per (camera, role), and per ``bin_deg``-wide angle bin
    of the novel views (inputs sit at 0 by definition: binning them would only dilute the first bin; held-out
    cameras have their own rows per camera)."""
    if not records:
        raise ValueError("no scored view to aggregate")
    if bin_deg <= 0:
        raise ValueError(f"report.angle_bin_deg must be > 0, got {bin_deg}")
    roles = {role: [r for r in records if r.role == role] for role in ROLES}
    groups: dict = {}
    for r in records:
        groups.setdefault((r.view, r.role), []).append(r)
    bins: dict = {}
    for r in roles["novel"]:
        lo = math.floor(r.angle_deg / bin_deg) * bin_deg
        bins.setdefault((lo, lo + bin_deg), []).append(r)
    return Aggregates(
        roles={name: group_mean(rs) for name, rs in (*roles.items(), ("all", records)) if rs},
        per_camera={key: group_mean(groups[key]) for key in sorted(groups, key=lambda k: (k[0], ROLES.index(k[1])))},
        per_angle={key: group_mean(bins[key]) for key in sorted(bins)},
        bin_deg=bin_deg, metric_names=metric_order(records[0].scores))


def aggregates_json(agg: Aggregates) -> dict:
    """The aggregates as plain JSON: lists of rows, each with its key, ``count`` and one mean per metric."""
    def entry(g: GroupMean) -> dict:
        return {"count": g.count, **g.means, "left_out": g.left_out}

    return {
        **{role: entry(g) for role, g in agg.roles.items()},
        "per_camera": [{"camera": cam, "role": role, **entry(g)} for (cam, role), g in agg.per_camera.items()],
        "per_angle": [{"angle_min_deg": lo, "angle_max_deg": hi, **entry(g)}
                      for (lo, hi), g in agg.per_angle.items()],
        "angle": ANGLE_DEFINITION, "angle_bin_deg": agg.bin_deg}


# how each metric is shown in aggregate.md: PSNR in dB to 0.01, the rest to 0.0001
_FORMATS = {"psnr_fg": ("PSNR fg (dB)", "{:.2f}"), "psnr_int": ("PSNR fg∩render (dB)", "{:.2f}"),
            "iou": ("IoU", "{:.4f}"), "coverage": ("coverage", "{:.4f}"), "precision": ("precision", "{:.4f}"),
            "psnr": ("PSNR whole image (dB)", "{:.2f}"), "ssim": ("SSIM", "{:.4f}"), "lpips": ("LPIPS", "{:.4f}"),
            "fg_fraction": ("fg fraction", "{:.4f}")}
# said under every table: what the foreground columns mean and why some views are not in their means
FOREGROUND_NOTE = ("fg: pixels whose target mask > 0.5; render: rendered alpha > metrics.alpha_threshold; IoU, "
                   "coverage, precision compare the two; fg fraction: share of the frame in fg. *left out*: views "
                   "where a foreground metric is undefined (empty mask, nothing rendered), not in its mean.")


def left_out_cell(g: GroupMean) -> str:
    """``psnr_fg 2, precision 3``: the views a group left out of each foreground mean (``0``: none)."""
    return ", ".join(f"{k} {n}" for k, n in g.left_out.items() if n) or "0"


def _table(head: list[str], rows: list[tuple[list, GroupMean]], metrics: list[str]) -> list[str]:
    fg = any(m in FOREGROUND_METRICS for m in metrics)
    titles = head + ["views"] + [_FORMATS.get(m, (m, ""))[0] for m in metrics] + (["left out"] if fg else [])
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for keys, g in rows:
        cells = [str(k) for k in keys] + [str(g.count)] + [_FORMATS.get(m, ("", "{:.4g}"))[1].format(g.means[m])
                                                             for m in metrics]
        lines.append("| " + " | ".join(cells + ([left_out_cell(g)] if fg else [])) + " |")
    return lines


def aggregates_markdown(agg: Aggregates, title: str) -> str:
    m = agg.metric_names
    note = [FOREGROUND_NOTE, ""] if any(k in FOREGROUND_METRICS for k in m) else []
    lines = [f"# {title}", "", *note,
             *_table(["group"], [([f"{role} views"], g) for role, g in agg.roles.items()], m), "",
             "## Per camera (view id)", "",
             *_table(["camera", "role"], [([cam, role], g) for (cam, role), g in agg.per_camera.items()], m), "",
             f"## Novel views by angle to the nearest input ({ANGLE_DEFINITION})", "",
             *_table(["angle"], [([f"{lo:g}-{hi:g}"], g) for (lo, hi), g in agg.per_angle.items()], m)]
    return "\n".join(lines) + "\n"


def write_records_csv(path, records: list[ViewRecord]) -> None:
    """One row per scored view; floats at full precision (str of a float round-trips) so means can be re-checked."""
    metrics = metric_order(records[0].scores) if records else []
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "sample", "view", "input", "holdout", "angle_deg", *metrics])
        for r in records:
            writer.writerow([r.index, r.sample, r.view, int(r.input), int(r.holdout), r.angle_deg,
                             *(r.scores[k] for k in metrics)])


def write_aggregates(folder, agg: Aggregates, title: str) -> dict:
    """``aggregate.json`` and ``aggregate.md`` in ``folder``; returns the JSON content."""
    content = aggregates_json(agg)
    write_json(folder / "aggregate.json", content)
    write_text(folder / "aggregate.md", aggregates_markdown(agg, title))
    return content


def record_json(r: ViewRecord) -> dict:
    """A record as metrics.json lists it under its sample (the sample itself is the parent entry)."""
    row = asdict(r)
    return {"view": row["view"], "input": row["input"], "holdout": row["holdout"], "angle_deg": row["angle_deg"],
            **row["scores"]}
