"""``renders.png``: one sample's inputs, targets, renders, the data's alpha, the rendered alpha and the error over the
animal, every view labelled.

Rows, top to bottom (`ROWS`): the model's inputs; the targets (ground truth); the renders into the target cameras;
the targets' masks (the data's alpha, grey); the rendered alpha (grey); the error over the animal (grey: the mean
over RGB of |render - target| where the data's mask > 0.5, black elsewhere, white at `ERROR_WHITE`). Each row has a
title line, and each view two label lines above it: camera id and role (input / novel / held-out), then its scores
(PSNR and psnr_fg under the render, the foreground fraction under the mask, IoU under the rendered alpha, the mean
error over the animal under the error). Labels sit in strips of their
own: every view's pixels are exactly the tensor's (8-bit), upscaled by a whole factor (nearest) to at least
`MIN_SIDE` px so a 32 px model's renders stay readable. `FigureLayout` says where each view lies, so the scores can
be recomputed from the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from facelift.evaluation.report import ViewRecord
from facelift.image_io import label_image
from facelift.render import Renders
from facelift.views import Views

MIN_SIDE = 128  # px: each view is upscaled (nearest, a whole factor) to at least this height
LINE = 14  # px per text line
FONT = 10  # px: text size in a line
GAP = 2  # px of white between the views of a row
ERROR_WHITE = 0.5  # mean |render - target| over RGB drawn white in the error row (the scale of the grey)
ROWS = ("inputs (given to the model)", "targets (ground truth)", "renders into the target cameras",
        "target masks (the data's alpha)", "rendered alpha",
        f"error over the animal: |render - target| where mask > 0.5 (white: {ERROR_WHITE} off)")
ROLE_NAMES = {"input": "input", "novel": "novel", "holdout": "held-out"}


@dataclass(frozen=True)
class FigureLayout:
    """Where things are in the figure: row ``r``'s title line, two label lines per view, then the views."""

    scale: int  # upscale factor of every view
    cell_h: int  # px of one upscaled view
    cell_w: int
    columns: int  # views in the widest row

    @staticmethod
    def for_views(height: int, width: int, columns: int) -> "FigureLayout":
        scale = max(1, math.ceil(MIN_SIDE / height))
        return FigureLayout(scale, height * scale, width * scale, columns)

    @property
    def head(self) -> int:  # px above the views of a row: its title line and two label lines
        return 3 * LINE

    @property
    def size(self) -> tuple[int, int]:  # (height, width) of the whole figure
        return len(ROWS) * (self.head + self.cell_h), self.columns * (self.cell_w + GAP) - GAP

    def origin(self, row: int, column: int) -> tuple[int, int]:
        """(y, x) of the top-left pixel of view ``column`` of row ``row``."""
        return row * (self.head + self.cell_h) + self.head, column * (self.cell_w + GAP)

    def view(self, figure: Tensor, row: int, column: int) -> Tensor:
        """The view at (row, column) of a figure ``[C, H, W]``, back at its own size (every ``scale``-th pixel)."""
        y, x = self.origin(row, column)
        return figure[:, y:y + self.cell_h:self.scale, x:x + self.cell_w:self.scale]


def renders_figure(inputs: Views, targets: Views, renders: Renders, b: int, records: list[ViewRecord]) -> Tensor:
    """The figure ``[3, H, W]`` (CPU, float in [0, 1]) of sample ``b`` of a batch; ``records``: its targets' scores,
    in target order."""
    h, w = targets.images.shape[-2:]
    n_in, n_t = inputs.num_views, targets.num_views
    layout = FigureLayout.for_views(h, w, max(n_in, n_t))
    figure = torch.ones(3, *layout.size)
    grey = lambda x: x.expand(-1, 3, -1, -1)  # noqa: E731  [V, 1, H, W] -> [V, 3, H, W]
    animal = (targets.masks[b] > 0.5).float()  # [V, 1, H, W]
    error = (renders.rgb[b] - targets.images[b]).abs().mean(1, keepdim=True) * animal  # [V, 1, H, W]
    rows = (inputs.images[b], targets.images[b], renders.rgb[b], grey(targets.masks[b]), grey(renders.alpha[b]),
            grey(error / ERROR_WHITE))
    mean_error = (error.sum((1, 2, 3)) / animal.sum((1, 2, 3))).tolist()  # [V]: NaN where the mask is empty
    input_ids = inputs.index[b, :, 0].tolist()
    for r, (title, views) in enumerate(zip(ROWS, rows)):
        y = r * (layout.head + layout.cell_h)
        figure[:, y:y + LINE] = label_image(figure[:, y:y + LINE], title, height=FONT)
        for c, image in enumerate(views.detach().float().clamp(0, 1).cpu()):
            top, left = layout.origin(r, c)
            first, second = (f"cam {input_ids[c]} input", "") if r == 0 else _labels(r, records[c], mean_error[c])
            for k, text in enumerate((first, second)):
                if text:
                    strip = figure[:, top - (2 - k) * LINE:top - (1 - k) * LINE, left:left + layout.cell_w]
                    strip.copy_(label_image(strip, text, height=FONT))
            figure[:, top:top + layout.cell_h, left:left + layout.cell_w] = \
                image.repeat_interleave(layout.scale, -2).repeat_interleave(layout.scale, -1)
    return figure


def _labels(row: int, record: ViewRecord, mean_error: float) -> tuple[str, str]:
    """The two label lines of a target view in row ``row`` (1: targets ... 5: error over the animal)."""
    s = record.scores
    fmt = lambda k, spec: "-" if k not in s or math.isnan(s[k]) else format(s[k], spec)  # noqa: E731
    first = f"cam {record.view} {ROLE_NAMES[record.role]}"
    second = {1: "", 2: f"PSNR {fmt('psnr', '.2f')} fg {fmt('psnr_fg', '.2f')}",
              3: f"fg {100 * s['fg_fraction']:.1f}% of frame" if "fg_fraction" in s else "",
              4: f"IoU {fmt('iou', '.3f')}",
              5: "no animal" if math.isnan(mean_error) else f"mean error {mean_error:.3f}"}[row]
    return first, second
