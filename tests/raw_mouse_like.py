"""A raw mouse-like dataset built from the public FaceLift sample (test helper, not a test module).

Six of the 32 views, zoomed and cropped to 288 x 256 (fx ~ 412, cx = 144, cy = 128 like the lab's cameras), each
sample's rig moved by its own similarity: up tilted a few degrees off Z, a turn about it, the origin ~0.7 away from
the subject and a scale, so camera distances from the raw origin spread over ~1.9 - 3.4.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from conftest import SAMPLE
from facelift.cameras import Cameras
from facelift.data.camera_json import read_camera_file
from facelift.data.image_ops import resize
from facelift.data.sample_folder import read_views, write_sample
from facelift.image_io import composite

HUMAN = SAMPLE / "gslrm" / "sample_000"
VIEWS = (0, 5, 11, 16, 21, 27)  # uneven azimuths around the ring
WIDTH, HEIGHT = 288, 256


def rotation(axis, angle: float) -> torch.Tensor:  # [3, 3] float64, Rodrigues
    a = torch.nn.functional.normalize(torch.as_tensor(axis, dtype=torch.float64), dim=0)
    k = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def similarity(gen: torch.Generator, tilt_deg: tuple[float, float] = (3, 8)
               ) -> tuple[torch.Tensor, float, torch.Tensor]:
    """A random (rotation [3, 3], scale, translation [3]) that tilts Z by ``tilt_deg`` and turns about it."""
    u = torch.rand(5, generator=gen, dtype=torch.float64)
    tilt = math.radians(tilt_deg[0] + (tilt_deg[1] - tilt_deg[0]) * float(u[0]))
    axis = [math.cos(6.283 * float(u[1])), math.sin(6.283 * float(u[1])), 0.0]
    rot = rotation(axis, tilt) @ rotation([0, 0, 1], 6.283 * float(u[2]))
    direction = torch.nn.functional.normalize(torch.randn(3, generator=gen, dtype=torch.float64), dim=0)
    return rot, 0.8 + 0.4 * float(u[3]), direction * (0.6 + 0.2 * float(u[4]))


def move_rig(cameras: Cameras, rot: torch.Tensor, scale: float, shift: torch.Tensor) -> Cameras:
    """Apply x -> scale * rot @ x + shift to a float64 rig (images stay valid: a similarity)."""
    c2w = cameras.c2w.double().clone()
    c2w[..., :3, :3] = rot @ c2w[..., :3, :3]
    c2w[..., :3, 3] = scale * c2w[..., :3, 3] @ rot.T + shift
    return Cameras(c2w, cameras.intrinsics.double(), cameras.width, cameras.height)


def human_views(views=VIEWS) -> tuple[torch.Tensor, Cameras]:
    """The chosen views of the public sample: RGBA [V, 4, 512, 512] and float64 cameras [V]."""
    cam_file = read_camera_file(HUMAN / "opencv_cameras.json")
    return read_views(cam_file, views), cam_file.cameras[list(views)]


def mouse_like_views(views=VIEWS) -> tuple[torch.Tensor, Cameras]:
    """Those views zoomed to 384² and cropped to 288 x 256: RGBA [V, 4, 256, 288], cameras [V] (subject frame)."""
    images, cameras = human_views(views)
    premultiplied = torch.cat([images[:, :3] * images[:, 3:], images[:, 3:]], 1)
    small = resize(premultiplied, 384, 384)[:, :, 64:64 + HEIGHT, 48:48 + WIDTH]
    alpha = small[:, 3:]
    rgb = torch.where(alpha > 0, small[:, :3] / alpha.clamp_min(1e-6), torch.zeros_like(small[:, :3]))
    return torch.cat([rgb.clamp(0, 1), alpha], 1), cameras.resized(384, 384).cropped(48, 64, WIDTH, HEIGHT)


def write_raw_dataset(root: Path, num_samples: int = 3, seed: int = 0, rgb_samples: tuple[int, ...] = (1,)
                      ) -> dict[str, tuple[torch.Tensor, float, torch.Tensor]]:
    """``root/sample_00i`` raw folders; samples in ``rgb_samples`` are RGB on white (no alpha). Returns each
    sample's similarity (rotation, scale, translation) from the subject frame to its raw frame."""
    images, cameras = mouse_like_views()
    gen = torch.Generator().manual_seed(seed)
    moves = {}
    for i in range(num_samples):
        name = f"sample_{i:03d}"
        moves[name] = similarity(gen)
        pixels = composite(images, 1.0) if i in rgb_samples else images
        write_sample(root / name, pixels, move_rig(cameras, *moves[name]), [{"view_id": v} for v in VIEWS])
    return moves
