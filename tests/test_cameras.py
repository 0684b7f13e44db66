"""`facelift.cameras`: rays, GS-LRM's ray channels, projection and intrinsics edits against hand-computed values."""

import math

import pytest
import torch

from facelift.cameras import Cameras, look_at, rigid_inverse

F64 = torch.float64


def front_camera(fx=1.0, fy=1.0, cx=1.5, cy=1.5, width=3, height=3) -> Cameras:
    """A camera at (0, -2, 0) looking at the origin, up +Z: right = +X, down = -Z, forward = +Y."""
    c2w = look_at(torch.tensor([0.0, -2.0, 0.0], dtype=F64), torch.zeros(3, dtype=F64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    return Cameras(c2w, torch.tensor([fx, fy, cx, cy], dtype=F64), width, height)


def test_look_at_builds_opencv_axes():
    expected = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, -2.0], [0.0, -1.0, 0.0, 0.0], [0, 0, 0, 1]],
                            dtype=F64)
    cam = front_camera()
    torch.testing.assert_close(cam.c2w, expected)
    torch.testing.assert_close(cam.up, torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    torch.testing.assert_close(cam.forward, torch.tensor([0.0, 1.0, 0.0], dtype=F64))


def test_w2c_and_c2w_are_inverse():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(5, 3, 3, generator=gen, dtype=F64))
    c2w = torch.eye(4, dtype=F64).repeat(5, 1, 1)
    c2w[:, :3, :3], c2w[:, :3, 3] = q, torch.randn(5, 3, generator=gen, dtype=F64)
    cams = Cameras(c2w, torch.ones(5, 4, dtype=F64), 4, 4)
    torch.testing.assert_close(cams.w2c @ c2w, torch.eye(4, dtype=F64).expand(5, 4, 4))
    torch.testing.assert_close(torch.linalg.inv(c2w), rigid_inverse(c2w))
    torch.testing.assert_close(Cameras.from_w2c(cams.w2c, cams.intrinsics, 4, 4).c2w, c2w)


def test_rays_pass_through_pixel_centres():
    cam = Cameras(torch.eye(4, dtype=F64), torch.tensor([2.0, 4.0, 1.5, 1.0], dtype=F64), 3, 2)
    origins, dirs = cam.rays()
    assert dirs.shape == (2, 3, 3) and origins.shape == (2, 3, 3)
    # pixel (u=0, v=0): centre (0.5, 0.5) -> ((0.5 - 1.5) / 2, (0.5 - 1) / 4, 1)
    torch.testing.assert_close(dirs[0, 0], torch.nn.functional.normalize(torch.tensor([-0.5, -0.125, 1.0], dtype=F64),
                                                                         dim=0))
    # pixel (u=2, v=1): centre (2.5, 1.5) -> (0.5, 0.125, 1)
    torch.testing.assert_close(dirs[1, 2], torch.nn.functional.normalize(torch.tensor([0.5, 0.125, 1.0], dtype=F64),
                                                                         dim=0))
    torch.testing.assert_close(origins, torch.zeros_like(origins))


def test_ray_features_are_direction_then_nearest_point_to_origin():
    feats = front_camera().ray_features()  # [6, H, W]
    assert feats.shape == (6, 3, 3)
    s = 1 / math.sqrt(2)
    # centre pixel (1, 1): straight along +Y, passes through the origin
    torch.testing.assert_close(feats[:, 1, 1], torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=F64))
    # pixel (u=2, v=1): camera direction (1, 0, 1) -> world (1, 1, 0)/sqrt2; nearest point to the origin (1, -1, 0)
    torch.testing.assert_close(feats[:, 1, 2], torch.tensor([s, s, 0.0, 1.0, -1.0, 0.0], dtype=F64))
    # pixel (u=1, v=0): camera direction (0, -1, 1) -> world (0, 1, 1)/sqrt2 (up and forward); nearest (0, -1, 1)
    torch.testing.assert_close(feats[:, 0, 1], torch.tensor([0.0, s, s, 0.0, -1.0, 1.0], dtype=F64))


def test_project_hand_computed_and_consistent_with_rays():
    cam = front_camera()
    uv, depth = cam.project(torch.tensor([[1.0, 0.0, 0.0]], dtype=F64))
    # camera coordinates (1, 0, 2) -> (fx * 1/2 + cx, fy * 0/2 + cy)
    torch.testing.assert_close(uv, torch.tensor([[2.0, 1.5]], dtype=F64))
    torch.testing.assert_close(depth, torch.tensor([2.0], dtype=F64))

    tilted = Cameras(cam.c2w, torch.tensor([3.0, 2.5, 1.2, 1.7], dtype=F64), 4, 3)
    origins, dirs = tilted.rays()
    points = (origins + 3.0 * dirs).reshape(-1, 3)
    uv, _ = tilted.project(points)
    v, u = torch.meshgrid(torch.arange(3, dtype=F64), torch.arange(4, dtype=F64), indexing="ij")
    torch.testing.assert_close(uv, torch.stack([u + 0.5, v + 0.5], -1).reshape(-1, 2))


def test_intrinsics_follow_resize_pad_and_crop_per_axis():
    cam = Cameras(torch.eye(4, dtype=F64), torch.tensor([400.0, 410.0, 144.0, 128.0], dtype=F64), 288, 256)
    stretched = cam.resized(512, 512)
    torch.testing.assert_close(stretched.intrinsics,
                               torch.tensor([400 * 512 / 288, 410 * 2.0, 256.0, 256.0], dtype=F64))
    padded = cam.padded(0, 16, 0, 16)
    assert (padded.width, padded.height) == (288, 288)
    torch.testing.assert_close(padded.intrinsics, torch.tensor([400.0, 410.0, 144.0, 144.0], dtype=F64))
    square = padded.resized(512, 512)
    torch.testing.assert_close(square.intrinsics, torch.tensor([400 * 512 / 288, 410 * 512 / 288, 256.0, 256.0],
                                                               dtype=F64))
    cropped = cam.cropped(48, 64, 100, 50)
    assert (cropped.width, cropped.height) == (100, 50)
    torch.testing.assert_close(cropped.intrinsics, torch.tensor([400.0, 410.0, 96.0, 64.0], dtype=F64))


def test_pad_then_resize_keeps_a_3d_point_on_its_pixel():
    """A 288 x 256 camera padded to 288² then resized to 512²: every projected point moves with the image."""
    c2w = look_at(torch.tensor([2.0, -1.5, 0.8], dtype=F64), torch.zeros(3, dtype=F64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    cam = Cameras(c2w, torch.tensor([408.0, 410.0, 144.0, 128.0], dtype=F64), 288, 256)
    points = torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=F64) * 0.3
    uv, _ = cam.project(points)
    uv_square, _ = cam.padded(0, 16, 0, 16).resized(512, 512).project(points)
    torch.testing.assert_close(uv_square, (uv + torch.tensor([0.0, 16.0], dtype=F64)) * 512 / 288)
    uv_stretch, _ = cam.resized(512, 512).project(points)
    torch.testing.assert_close(uv_stretch, uv * torch.tensor([512 / 288, 512 / 256], dtype=F64))


def test_K_batching_and_size_checks():
    cam = front_camera(fx=5.0, fy=6.0, cx=1.0, cy=2.0)
    K = cam.K
    torch.testing.assert_close(K, torch.tensor([[5.0, 0, 1], [0, 6, 2], [0, 0, 1]], dtype=F64))
    torch.testing.assert_close(Cameras.from_K(cam.c2w, K, 3, 3).intrinsics, cam.intrinsics)
    batch = Cameras.stack([Cameras.stack([cam, cam]), Cameras.stack([cam, cam])])
    assert tuple(batch.batch_shape) == (2, 2) and tuple(batch[:, 1].batch_shape) == (2,)
    assert tuple(batch.ray_features().shape) == (2, 2, 6, 3, 3)
    with pytest.raises(ValueError, match="different image sizes"):
        Cameras.stack([cam, front_camera(width=4)])
    with pytest.raises(ValueError):
        Cameras(torch.eye(4), torch.ones(2, 4), 3, 3)
