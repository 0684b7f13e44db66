"""Labels written into pictures (`label_image`) and turntable frames that carry their angle."""

import torch

from facelift.gaussians import Gaussians
from facelift.image_io import label_image
from facelift.render.turntable import angle_labels, orbit_cameras, render_turntable


def changed_box(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """(rows, columns) of the smallest top-left rectangle holding every pixel where ``a`` and ``b`` differ."""
    rows, cols = (a != b).any(0).nonzero(as_tuple=True)
    return int(rows.max()) + 1, int(cols.max()) + 1


def test_a_label_changes_only_its_corner_and_is_readable():
    image = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))  # [3, 64, 96]
    labelled = label_image(image, "90°")
    assert labelled.shape == image.shape and not torch.equal(labelled, image)
    rows, cols = changed_box(labelled, image)
    # text of the smallest size, 8 px (1/16 of 64 would be 4), a 2 px margin around it, glyph boxes at most
    # 1.25 em tall and 0.8 em wide
    assert rows <= 1.25 * 8 + 4 and cols <= 3 * 0.8 * 8 + 4
    assert torch.equal(labelled[:, rows:], image[:, rows:]) and torch.equal(labelled[:, :, cols:], image[:, :, cols:])
    box, ink = labelled[:, :rows, :cols], labelled[:, :rows, :cols].amin(0)
    assert ink.amax() > 0.75 and box.mean() < image[:, :rows, :cols].mean()  # white (antialiased) text on a darker box
    assert not torch.equal(label_image(image, "270°"), labelled)  # the text is drawn, not only a box
    white = torch.ones(3, 512, 512)
    rows, cols = changed_box(label_image(white, "315°"), white)
    assert 32 <= rows <= 1.25 * 32 + 16 and cols <= 4 * 0.8 * 32 + 16  # 32 px text, 8 px margins on a 512² frame


def test_turntable_frames_carry_their_angle_from_the_front():
    assert angle_labels(8) == ["0°", "45°", "90°", "135°", "180°", "225°", "270°", "315°"]  # 360 / 8 apart
    assert angle_labels(3) == ["0°", "120°", "240°"]
    g = Gaussians(torch.zeros(1, 1, 3), torch.tensor([[[1.0, 0, 0, 0]]]), torch.full((1, 1, 3), -1.5),
                  torch.full((1, 1), 3.0), torch.zeros(1, 1, 1, 3))
    cams = orbit_cameras(8, 64)
    plain = render_turntable(g, cams, backend="torch")  # [8, 3, 64, 64]
    labelled = render_turntable(g, cams, backend="torch", chunk=3, labels=angle_labels(8))
    for k in range(8):
        rows, cols = changed_box(labelled[k], plain[k])
        assert rows <= 1.25 * 8 + 4 and cols <= 4 * 0.8 * 8 + 4  # only the corner (see the test above)
        assert torch.equal(labelled[k], label_image(plain[k], angle_labels(8)[k]))  # its own angle, in order
