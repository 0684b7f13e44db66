"""Animal crops: the window follows the mask, and a known 3D shape projects onto the cropped content."""

import math

import torch

from facelift.cameras import Cameras, look_at
from facelift.rigs.crop import SquareBox, animal_box, crop_square


def test_box_is_the_masks_longer_side_grown_by_the_margin_and_centred():
    mask = torch.zeros(100, 120)
    mask[20:40, 50:90] = 1.0  # 20 rows x 40 columns, centre (row 30, column 70) in pixel-edge coordinates
    box = animal_box(mask, margin=0.25)
    assert box.side == 60  # 40 * (1 + 2 * 0.25)
    assert (box.x0, box.y0) == (70 - 30, 30 - 30)
    assert animal_box(torch.zeros(10, 10)) is None


def _disc_view(cam: Cameras, centre: torch.Tensor, radius: float, h: int, w: int) -> torch.Tensor:
    """Mask [H, W] of the pixels whose ray passes within ``radius`` of ``centre`` (a sphere's silhouette)."""
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    fx, fy, cx, cy = cam.intrinsics.tolist()
    d = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], -1)  # camera-space ray directions
    d = d @ cam.c2w[:3, :3].T
    d = d / d.norm(dim=-1, keepdim=True)
    o = cam.c2w[:3, 3]
    t = ((centre - o) * d).sum(-1, keepdim=True)
    dist = (o + t * d - centre).norm(dim=-1)
    return (dist < radius).float()


def test_a_sphere_projects_onto_its_cropped_silhouette():
    h, w = 120, 160
    eye = torch.tensor([2.0, -1.0, 0.8])
    centre = torch.tensor([0.3, 0.2, 0.1])  # off the optical axis: the animal is not in the middle of the frame
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cam = Cameras(c2w, torch.tensor([150.0, 152.0, 77.0, 63.0]), w, h)
    mask = _disc_view(cam, centre, 0.12, h, w)
    box = animal_box(mask, margin=0.15)
    cropped, cam2 = crop_square(mask[None], cam, box, 64)
    truth = _disc_view(cam2, centre, 0.12, 64, 64)  # the same sphere seen by the cropped camera
    iou = ((cropped[0] > 0.5) & (truth > 0.5)).sum() / ((cropped[0] > 0.5) | (truth > 0.5)).sum()
    assert iou > 0.95
    uv, _ = cam2.project(centre[None])
    assert abs(float(uv[0, 0]) - 32) < 4 and abs(float(uv[0, 1]) - 32) < 4  # the animal is now centred
    frac = float((truth > 0.5).float().mean())
    assert 0.25 < frac < 0.7, frac  # and fills a good part of the view (a disc in a 1.3x square: pi/4/1.3^2)
    assert math.isclose(float(cam2.intrinsics[0]) / float(cam.intrinsics[0]), 64 / box.side, rel_tol=1e-6)


def test_window_leaving_the_frame_is_padded_and_the_camera_still_matches():
    img = torch.arange(4 * 6, dtype=torch.float32).reshape(1, 4, 6)
    cam = Cameras(torch.eye(4), torch.tensor([10.0, 10.0, 3.0, 2.0]), 6, 4)
    out, cam2 = crop_square(img, cam, SquareBox(x0=-2, y0=-1, side=4), 4, pad_value=-1.0)
    assert out[0, 0].tolist() == [-1.0] * 4  # row above the frame
    assert out[0, 1].tolist() == [-1.0, -1.0, 0.0, 1.0]  # two padded columns, then the frame's first pixels
    assert cam2.intrinsics.tolist() == [10.0, 10.0, 5.0, 3.0]  # principal point moved by the window's corner
