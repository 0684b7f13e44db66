"""prepare_mouse_data.py --crop animal: each view cut around its mask, and the written cameras still see the scene
exactly where the written pixels show it (a Gaussian scene rendered before the crop, and again by the new cameras)."""

import json
import math
import sys

import pytest
import torch

from conftest import REPO
from facelift.cameras import Cameras, look_at
from facelift.data.prepare import PrepareConfig
from facelift.data.sample_folder import read_sample, write_sample
from facelift.data.synthetic.blob_scenes import render_rgba as rgba
from facelift.gaussians import SH_C0, Gaussians
from facelift.image_io import composite

sys.path.insert(0, str(REPO / "scripts"))
import prepare_mouse_data  # noqa: E402  (the CLI, in-process)

W, H, SIZE = 160, 120, 48
BLOBS = [((0.25, 0.15, 0.10), (0.9, 0.2, 0.1)), ((0.40, 0.05, 0.12), (0.1, 0.8, 0.2)),
         ((0.32, 0.28, 0.05), (0.2, 0.3, 0.9))]  # (centre, colour): a small "animal" off the world origin


def scene() -> Gaussians:
    """Three clusters of 9 round Gaussians (sigma 0.03, ~2 px in the raw views: smooth at either resolution)."""
    g = torch.Generator().manual_seed(0)
    means, colours = [], []
    for centre, rgb in BLOBS:
        means.append(torch.tensor(centre) + 0.03 * torch.randn(9, 3, generator=g))
        colours.append(torch.tensor(rgb).expand(9, 3))
    means, colours = torch.cat(means), torch.cat(colours)
    n = len(means)
    return Gaussians(means[None], torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4), torch.full((1, n, 3), math.log(0.03)),
                     torch.full((1, n), 3.0), ((colours - 0.5) / SH_C0)[None, :, None])


def rig() -> Cameras:
    """Three cameras aimed at the origin (not at the animal), principal points off centre, unequal focal lengths."""
    eyes = torch.tensor([[2.2, -1.0, 0.9], [-1.5, -2.0, 1.2], [0.5, 2.4, 0.6]])
    c2w = look_at(eyes, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    intrinsics = torch.tensor([[150.0, 152.0, 77.0, 63.0], [170.0, 168.0, 84.0, 58.0], [140.0, 141.0, 80.0, 60.0]])
    return Cameras(c2w, intrinsics, W, H)


@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    root = tmp_path_factory.mktemp("crop")
    gaussians, cams = scene(), rig()
    images = rgba(gaussians, cams)
    empty = torch.zeros_like(images[:1])  # a fourth view that missed the animal: kept whole
    images, cams = torch.cat([images, empty]), Cameras.cat([cams, cams[:1]])
    write_sample(root / "raw" / "sample_000", images, cams)
    write_sample(root / "raw" / "sample_001", composite(images, 1.0), cams)  # RGB on white: the mask by threshold
    prepare_mouse_data.main(["--src", str(root / "raw"), "--dst", str(root / "out"), "--size", str(SIZE),
                             "--no-normalize", "--crop", "animal", "--margin", "0.15", "--split", "random"])
    return root / "out", gaussians, images


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a > 0.5) & (b > 0.5)).sum() / ((a > 0.5) | (b > 0.5)).sum())


def test_the_scene_projects_onto_its_cropped_pixels(cropped):
    out, gaussians, raw = cropped
    images, cameras, _ = read_sample(out / "sample_000")
    assert images.shape == (4, 4, SIZE, SIZE)
    again = rgba(gaussians, cameras[:3])  # the scene rendered directly by the written cameras
    for v in range(3):
        assert iou(images[v, 3], again[v, 3]) > 0.93
        fg = (images[v, 3] > 0.5) & (again[v, 3] > 0.5)
        error = (images[v, :3] - again[v, :3]).abs().amax(0)[fg]  # straight colour over the animal
        assert float(error.mean()) < 0.05
        # the crop made the animal bigger: a larger share of the view than in the raw frame
        assert float((images[v, 3] > 0.5).float().mean()) > 2 * float((raw[v, 3] > 0.5).float().mean())
    # a camera that was only resized (the intrinsics not moved with the window) misses the content
    wrong = Cameras(cameras.c2w[:3], rig().resized(SIZE, SIZE).intrinsics, SIZE, SIZE)
    assert max(iou(images[v, 3], rgba(gaussians, wrong)[v, 3]) for v in range(3)) < 0.5


def test_cluster_colours_land_where_the_cameras_project_them(cropped):
    out, gaussians, _ = cropped
    images, cameras, _ = read_sample(out / "sample_000")
    for v in range(3):
        uv, _ = cameras[v].project(torch.tensor([b[0] for b in BLOBS]))
        hits = 0
        for (u, w), (_, colour) in zip(uv.tolist(), BLOBS):
            seen = images[v, :3, int(w), int(u)]
            hits += int((seen - torch.tensor(colour)).abs().max() < 0.15)
        assert hits >= 2  # one cluster may hide behind another in a view, never two


def test_report_names_the_boxes_and_the_view_kept_whole(cropped):
    out, _, raw = cropped
    report = json.loads((out / "rig_report.json").read_text())
    crops = report["crops"]
    assert crops["sample_000"]["empty_mask_views"] == crops["sample_001"]["empty_mask_views"] == [3]
    assert crops["sample_000"]["boxes_x0_y0_side"][3] == [0, -20, 160]  # the whole frame padded square
    assert report["settings"]["crop"] == "animal" and report["settings"]["margin"] == 0.15
    # the box by hand: the mask's bounding box, its longer side x 1.3, centred on it
    mask = raw[0, 3] > 0.5
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    side = max(int(rows[-1]) + 1 - int(rows[0]), int(cols[-1]) + 1 - int(cols[0]))
    assert crops["sample_000"]["boxes_x0_y0_side"][0][2] == round(side * 1.3)
    # the RGB sample's mask (every pixel not near-white, faint edges included) holds alpha > 0.5: so do its windows
    for (x0, y0, side), (x1, y1, side1) in zip(crops["sample_000"]["boxes_x0_y0_side"],
                                              crops["sample_001"]["boxes_x0_y0_side"]):
        assert x1 <= x0 and y1 <= y0 and x1 + side1 >= x0 + side and y1 + side1 >= y0 + side
    whole, cams, _ = read_sample(out / "sample_000")
    assert float(whole[3, 3].max()) == 0.0 and cams[3].intrinsics.tolist() == pytest.approx(
        rig()[0].padded(0, 20, 0, 20).resized(SIZE, SIZE).intrinsics.tolist())


def test_bad_crop_settings_are_refused():
    with pytest.raises(ValueError, match="crop must be one of"):
        PrepareConfig(crop="face")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        PrepareConfig(crop="animal", margin=-0.1)
