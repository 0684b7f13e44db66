"""renders.png: every view's pixels are the tensor's (upscaled by a whole factor, nearest), labels sit beside them."""

import math

import pytest
import torch

from facelift.cameras import Cameras
from facelift.evaluation.renders_figure import LINE, MIN_SIDE, ROWS, FigureLayout, renders_figure
from facelift.evaluation.report import ViewRecord
from facelift.image_io import to_uint8
from facelift.render import Renders
from facelift.views import Views


def views(images, ids) -> Views:
    b, v, _, h, w = images.shape
    cams = Cameras(torch.eye(4).expand(b, v, 4, 4), torch.tensor([1.0, 1.0, w / 2, h / 2]).expand(b, v, 4), w, h)
    index = torch.stack([torch.tensor(ids).expand(b, v), torch.zeros(b, v, dtype=torch.long)], -1)
    return Views(images, (images[:, :, :1] > 0.5).float(), cams, index)


@pytest.mark.parametrize("size, scale", [(16, 8), (32, 4), (48, 3), (128, 1), (160, 1)])
def test_views_are_upscaled_to_at_least_min_side_by_a_whole_factor(size, scale):
    layout = FigureLayout.for_views(size, size, 3)
    assert layout.scale == scale and layout.cell_h >= MIN_SIDE and layout.cell_h == size * scale


def test_every_view_is_in_the_figure_unchanged_and_labelled_beside_it():
    torch.manual_seed(0)
    inputs = views(torch.rand(2, 2, 3, 16, 16), [0, 4])
    targets = views(torch.rand(2, 3, 3, 16, 16), [0, 2, 5])
    renders = Renders(torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 1, 16, 16), torch.zeros(2, 3, 1, 16, 16))
    records = [ViewRecord(1, "s", 0, True, 0.0, {"psnr": 30.0, "psnr_fg": 20.0, "iou": 0.5, "fg_fraction": 0.1}),
               ViewRecord(1, "s", 2, False, 40.0, {"psnr": 25.0, "psnr_fg": math.nan, "iou": math.nan,
                                                   "fg_fraction": 0.0}),
               ViewRecord(1, "s", 5, False, 80.0, {"psnr": 21.0, "psnr_fg": 11.0, "iou": 0.2, "fg_fraction": 0.2},
                          holdout=True)]
    figure = renders_figure(inputs, targets, renders, 1, records)
    layout = FigureLayout.for_views(16, 16, 3)
    assert tuple(figure.shape) == (3, *layout.size) == (3, 6 * (3 * LINE + 128), 3 * 128 + 2 * 2)
    pixels = torch.from_numpy(to_uint8(figure)).permute(2, 0, 1)  # as renders.png stores it
    expected = [inputs.images[1], targets.images[1], renders.rgb[1], targets.masks[1].expand(-1, 3, -1, -1),
                renders.alpha[1].expand(-1, 3, -1, -1)]
    # the error row by hand: per pixel, mean over RGB of |render - target| on the mask, 0.5 off drawn white
    by_hand = torch.zeros(3, 1, 16, 16)
    for v in range(3):
        for y in range(16):
            for x in range(16):
                if targets.masks[1, v, 0, y, x] > 0.5:
                    off = sum(abs(float(renders.rgb[1, v, k, y, x] - targets.images[1, v, k, y, x])) for k in range(3))
                    by_hand[v, 0, y, x] = min(1.0, off / 3 / 0.5)
    expected.append(by_hand.expand(-1, 3, -1, -1))
    for r, row in enumerate(expected):
        for c, image in enumerate(row):
            assert torch.equal(layout.view(pixels, r, c), torch.from_numpy(to_uint8(image)).permute(2, 0, 1))
            y, x = layout.origin(r, c)  # nearest upscale: each source pixel is a scale x scale block
            block = pixels[:, y:y + layout.scale, x:x + layout.scale]
            assert (block == block[:, :1, :1]).all()
    assert len(ROWS) == 6
    # labels: the two lines above each view are not white (text on a darkened box), the short input row's
    # third column is empty (white)
    y, x = layout.origin(1, 2)
    assert (pixels[:, y - 2 * LINE:y, x:x + 40] < 255).any()
    y, x = layout.origin(0, 2)
    assert (pixels[:, y - 2 * LINE:y + layout.cell_h, x:x + layout.cell_w] == 255).all()
