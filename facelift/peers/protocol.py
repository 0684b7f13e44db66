"""One protocol for comparing methods on a recorded rig: the same frames, the same held-out camera, the same truth,
the same metric functions, for this project's GS-LRM and for a peer (Pose Splatter) alike.

- **Frames**: every frame of an `import_recordings.py` set (RAW, its ``sample_<frame>`` folders), in time order.
  They are split as Pose Splatter splits its own (its split is fixed in its code): with n frames and a = n // 3,
  frames [0, a) train, [a, 2a) validate, [2a, n) test — the last third. `write_split_lists` writes that split as
  RAW's ``data_train.txt`` / ``data_val.txt`` / ``data_test.txt`` so prepare_mouse_data.py and train.py use it.
- **Held-out camera**: one camera index (``holdout``) that neither method reads in training (Pose Splatter's
  ``holdout_views``, GS-LRM's ``data.holdout_views``); scored beside the cameras that were inputs.
- **Truth**: each test frame's view as RAW holds it (undistorted, cut square around the animal, the rig's world
  camera moved with the crop), resized to ``size`` x ``size`` and composited over white; its alpha is the mask.
- **Renders**: a method's renders of those views, as a *render folder*: ``<folder>/sample_<frame>/cam_<k>.png``,
  RGBA at ``size`` x ``size`` for the truth's camera (`truth_camera`): RGB as drawn over white, A the rendered
  opacity (both methods draw over white); each method's adapter writes one.
- **Metrics**: this project's `ImageMetrics` (the foreground metrics psnr_fg, psnr_int, iou, coverage, precision and
  fg_fraction; whole-image PSNR and SSIM) plus whole-image L1 (mean |render - truth| over pixels and channels).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from facelift.atomic import write_json, write_text
from facelift.cameras import Cameras
from facelift.data.camera_json import CAMERA_FILE
from facelift.data.image_ops import resize
from facelift.data.sample_folder import TEST_LIST, TRAIN_LIST, VAL_LIST, read_sample, write_file_list
from facelift.errors import InputError
from facelift.evaluation.foreground import nan_mean
from facelift.image_io import composite, image_grid, label_image, read_image, write_image
from facelift.render import Renders
from facelift.systems.metrics import ImageMetrics
from facelift.views import Views

PROTOCOL_FILE = "protocol.json"
METRIC_KEYS = ("psnr_fg", "psnr_int", "iou", "coverage", "precision", "psnr", "ssim", "l1", "fg_fraction")
GROUPS = ("holdout", "input")  # the held-out camera; the cameras a method was given


@dataclass
class Protocol:
    raw: str  # the import_recordings.py folder that holds the truth
    frames: list[int]  # every frame of the set, time order (a sample_<frame> folder each)
    holdout: int  # camera index neither method trains on
    num_cameras: int  # cameras of the rig
    size: int  # side of the square views scored

    @property
    def cut(self) -> int:  # Pose Splatter's third: train [0, cut), val [cut, 2 cut), test [2 cut, n)
        return len(self.frames) // 3

    @property
    def train_frames(self) -> list[int]:
        return self.frames[:self.cut]

    @property
    def val_frames(self) -> list[int]:
        return self.frames[self.cut:2 * self.cut]

    @property
    def test_frames(self) -> list[int]:
        return self.frames[2 * self.cut:]

    @property
    def input_cameras(self) -> list[int]:
        return [k for k in range(self.num_cameras) if k != self.holdout]

    def views(self) -> list[tuple[int, int]]:
        """Every scored (frame, camera): the test frames x all cameras, the same list for every method."""
        return [(f, k) for f in self.test_frames for k in range(self.num_cameras)]


def sample_dir(raw: str | Path, frame: int) -> Path:
    return Path(raw) / f"sample_{frame:06d}"


def make_protocol(raw: str | Path, holdout: int, size: int) -> Protocol:
    """The protocol of a RAW set; refuses a set with too few frames, cameras of different counts or a holdout out of
    range (one line naming the file)."""
    raw = Path(raw)
    samples = sorted(p for p in raw.glob("sample_*") if (p / CAMERA_FILE).is_file()) if raw.is_dir() else []
    if len(samples) < 3:
        raise InputError(raw, f"holds {len(samples)} imported frames (sample_<frame>/{CAMERA_FILE}); the protocol "
                              "needs at least 3 (train, val and test thirds): run scripts/import_recordings.py")
    counts = {p: len(json.loads((p / CAMERA_FILE).read_text())["frames"]) for p in samples}
    first = counts[samples[0]]
    for p, n in counts.items():
        if n != first:
            raise InputError(p / CAMERA_FILE, f"has {n} cameras, {samples[0].name} has {first}")
    if not 0 <= holdout < first or first < 2:
        raise InputError(raw, f"held-out camera {holdout} is not one of the rig's {first} cameras (0-{first - 1})")
    if size < 8:
        raise InputError(None, f"--size must be >= 8, got {size}")
    return Protocol(str(raw.resolve()), [int(p.name.split("_")[1]) for p in samples], holdout, first, size)


def write_protocol(protocol: Protocol, path: str | Path) -> Path:
    return write_json(path, asdict(protocol))


def read_protocol(path: str | Path) -> Protocol:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "protocol file not found (scripts/peers/pose_splatter.py protocol writes it)")
    try:
        return Protocol(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise InputError(path, f"not a protocol file ({err})") from None


def write_split_lists(protocol: Protocol) -> None:
    """RAW's file lists set to the protocol's thirds (prepare_mouse_data.py keeps them)."""
    raw = Path(protocol.raw)
    for name, frames in ((TRAIN_LIST, protocol.train_frames), (VAL_LIST, protocol.val_frames),
                         (TEST_LIST, protocol.test_frames)):
        write_file_list(raw / name, [sample_dir(raw, f) for f in frames])


def truth_view(protocol: Protocol, frame: int) -> tuple[torch.Tensor, Cameras]:
    """One frame's views as scored: RGBA ``[V, 4, S, S]`` (RGB over white, alpha = mask) and cameras [V] float64."""
    images, cameras, _ = read_sample(sample_dir(protocol.raw, frame))
    if images.shape[1] != 4:
        raise InputError(sample_dir(protocol.raw, frame), "views have no alpha (the mask): not an import set")
    rgba = resize(images, protocol.size, protocol.size).clamp(0, 1)
    rgba = torch.cat([composite(rgba, 1.0), rgba[:, 3:]], dim=1)
    return rgba, truth_camera(protocol, frame)


def truth_camera(protocol: Protocol, frame: int) -> Cameras:
    """The cameras [V] (float64, world units of the rig) of one frame's scored views."""
    doc = json.loads((sample_dir(protocol.raw, frame) / CAMERA_FILE).read_text())
    w2c = torch.tensor([f["w2c"] for f in doc["frames"]], dtype=torch.float64)
    intr = torch.tensor([[f["fx"], f["fy"], f["cx"], f["cy"]] for f in doc["frames"]], dtype=torch.float64)
    w, h = doc["frames"][0]["w"], doc["frames"][0]["h"]
    return Cameras.from_w2c(w2c, intr, w, h).resized(protocol.size, protocol.size)


def render_path(folder: str | Path, frame: int, camera: int) -> Path:
    return Path(folder) / f"sample_{frame:06d}" / f"cam_{camera:03d}.png"


def score_folder(protocol: Protocol, folder: str | Path, method: str) -> list[dict]:
    """One record per (test frame, camera) of `Protocol.views`: method, frame, camera, group, then `METRIC_KEYS`."""
    metrics = ImageMetrics()
    records = []
    for frame in protocol.test_frames:
        truth, cams = truth_view(protocol, frame)
        renders = []
        for k in range(protocol.num_cameras):
            path = render_path(folder, frame, k)
            image = read_image(path)
            if image.shape != (4, protocol.size, protocol.size):
                raise InputError(path, f"render is {tuple(image.shape)}, the protocol scores RGBA "
                                       f"{protocol.size}x{protocol.size}")
            renders.append(image)
        pred = torch.stack(renders)  # [V, 4, S, S]
        rgb = pred[:, :3]  # already over white
        v = protocol.num_cameras
        scores = metrics(Renders(rgb[None], pred[None, :, 3:], torch.zeros_like(pred[None, :, 3:])),
                         Views(truth[None, :, :3], truth[None, :, 3:], cams.to(torch.float32).reshape(1, v),
                               torch.zeros(1, v, 2, dtype=torch.long)))
        l1 = (rgb - truth[:, :3]).abs().mean(dim=(1, 2, 3))  # [V]
        for k in range(v):
            row = {"method": method, "frame": frame, "camera": k,
                   "group": "holdout" if k == protocol.holdout else "input"}
            row.update({key: float(scores[key][0, k]) for key in METRIC_KEYS if key != "l1"})
            row["l1"] = float(l1[k])
            records.append(row)
    return records


def summarize(records: list[dict]) -> list[dict]:
    """Means per (method, group) of every metric, NaNs left out (counted in ``<metric>_left_out``)."""
    rows = []
    for method in dict.fromkeys(r["method"] for r in records):
        for group in GROUPS:
            mine = [r for r in records if r["method"] == method and r["group"] == group]
            row = {"method": method, "group": group, "views": len(mine)}
            for key in METRIC_KEYS:
                mean, left_out = nan_mean([r[key] for r in mine])
                row[key] = mean
                if left_out:
                    row[f"{key}_left_out"] = left_out
            rows.append(row)
    return rows


def write_tables(records: list[dict], out: str | Path, extra: dict | None = None) -> dict:
    """``per_view.csv`` (every record), ``comparison.md`` and ``comparison.json`` (the means, and ``extra``: the
    methods' own notes such as Pose Splatter's self-reported metrics) under ``out``; returns the JSON content."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fields = ["method", "frame", "camera", "group", *METRIC_KEYS]
    with open(out / "per_view.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    summary = summarize(records)
    lines = ["| method | cameras | views | " + " | ".join(METRIC_KEYS) + " |",
             "|---|---|---|" + "---|" * len(METRIC_KEYS)]
    for row in summary:
        cells = [_cell(row[k]) for k in METRIC_KEYS]
        lines.append(f"| {row['method']} | {row['group']} | {row['views']} | " + " | ".join(cells) + " |")
    write_text(out / "comparison.md", "\n".join(lines) + "\n")
    content = {"summary": summary, **(extra or {})}
    write_json(out / "comparison.json", content)
    return content


def _cell(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def comparison_figure(protocol: Protocol, folders: dict[str, str | Path], out: str | Path, frame: int | None = None,
                      min_side: int = 256) -> Path:
    """One test frame (default: the first), every camera a column, the held-out one first: rows truth | each
    method's render, labelled, upscaled (nearest) to at least ``min_side`` pixels a view; written as PNG."""
    frame = protocol.test_frames[0] if frame is None else frame
    order = [protocol.holdout, *protocol.input_cameras]
    truth, _ = truth_view(protocol, frame)
    scale = max(1, -(-min_side // protocol.size))

    def row(images: torch.Tensor, name: str) -> torch.Tensor:  # [V, 3, S, S] -> labelled, upscaled
        big = torch.nn.functional.interpolate(images[order], scale_factor=scale, mode="nearest")
        return torch.stack([label_image(v, f"{name} cam {k}{' held out' if k == protocol.holdout else ''}")
                            for v, k in zip(big, order)])

    rows = [row(truth[:, :3], "truth")]
    for name, folder in folders.items():
        rows.append(row(torch.stack([read_image(render_path(folder, frame, k))[:3]
                                     for k in range(protocol.num_cameras)]), name))
    return write_image(Path(out), image_grid(*rows))
