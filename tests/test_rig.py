"""Rig normalization: recovers FaceLift's rig from any similarity of it, keeps the human sample, refuses bad rigs."""

import math

import pytest
import torch

from conftest import SAMPLE
from facelift.cameras import Cameras, look_at
from facelift.data.camera_json import read_camera_file
from facelift.data.rig import RigNormalization, normalize_rig
from facelift.errors import InputError

F64 = torch.float64
Z = torch.tensor([0.0, 0.0, 1.0], dtype=F64)


@pytest.fixture(scope="module")
def human() -> Cameras:  # the 32 public sample cameras, float64
    return read_camera_file(SAMPLE / "gslrm" / "sample_000" / "opencv_cameras.json").cameras


def random_similarity(seed: int) -> tuple[torch.Tensor, float, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=F64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    scale = 0.3 + 2.7 * float(torch.rand(1, generator=gen, dtype=F64))
    return q, scale, 2 * torch.randn(3, generator=gen, dtype=F64)


def move(c2w: torch.Tensor, rot, scale, shift) -> torch.Tensor:
    out = c2w.clone()
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = scale * c2w[:, :3, 3] @ rot.T + shift
    return out


def rotation_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=F64)


def align_about_z(moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """The rotation about Z that best maps points ``moving`` [N, 3] onto ``fixed`` (least squares)."""
    cross = (moving[:, 0] * fixed[:, 1] - moving[:, 1] * fixed[:, 0]).sum()
    dot = (moving[:, :2] * fixed[:, :2]).sum()
    return rotation_z(math.atan2(float(cross), float(dot)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_the_public_rig_from_a_random_similarity(human, seed):
    rot, scale, shift = random_similarity(seed)
    raw = move(human.c2w, rot, scale, shift)
    out = normalize_rig(raw, human.intrinsics, RigNormalization())
    spin = align_about_z(out.c2w[:, :3, 3], human.c2w[:, :3, 3])
    torch.testing.assert_close(out.c2w[:, :3, 3] @ spin.T, human.c2w[:, :3, 3], atol=1e-4, rtol=0)
    torch.testing.assert_close(spin @ out.c2w[:, :3, :3], human.c2w[:, :3, :3], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.intrinsics, human.intrinsics)
    report = out.report
    assert report.up_source == "pca" and report.planarity < 1e-6 and not report.warnings
    torch.testing.assert_close(torch.tensor(report.up, dtype=F64), rot @ Z, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(report.centre, dtype=F64), shift, atol=1e-5 * scale, rtol=0)
    assert report.position_scales == pytest.approx([1 / scale] * 32, rel=1e-6)
    assert report.scale == pytest.approx(1 / scale, rel=1e-6)
    assert report.distances_after == pytest.approx([2.7] * 32, abs=1e-5)
    # the reported similarity maps the raw centres onto the new ones
    t = torch.tensor(report.transform, dtype=F64)
    torch.testing.assert_close(raw[:, :3, 3] @ t[:3, :3].T + t[:3, 3], out.c2w[:, :3, 3])


def test_front_view_removes_the_turn_about_up(human):
    raw = move(human.c2w, *random_similarity(5))
    out = normalize_rig(raw, human.intrinsics, RigNormalization(front_view=24))  # view 24 sits on -Y in FaceLift
    torch.testing.assert_close(out.c2w, human.c2w, atol=1e-4, rtol=0)


def test_the_human_sample_is_left_as_it_is(human):
    out = normalize_rig(human.c2w, human.intrinsics, RigNormalization())
    torch.testing.assert_close(out.c2w, human.c2w, atol=1e-6, rtol=0)
    assert out.report.up == pytest.approx([0, 0, 1], abs=1e-6)
    assert out.report.centre == pytest.approx([0, 0, 0], abs=1e-6)


def test_up_goes_to_the_configured_axis(human):
    out = normalize_rig(move(human.c2w, *random_similarity(3)), human.intrinsics, RigNormalization(up_axis="y"))
    centres = out.c2w[:, :3, 3]
    assert centres[:, 1].std() < 1e-6 and centres[:, 1].mean() > 0.9  # the ring is now level in y, above it
    assert float((-out.c2w[:, :3, 1]).mean(0) @ torch.tensor([0.0, 1.0, 0.0], dtype=F64)) > 0.9


def uneven_rig(human: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """The public cameras slid along their lines to the origin, to distances 1.9 - 3.4 (images would change)."""
    dist = torch.linspace(1.9, 3.4, len(human), dtype=F64)
    c2w = human.c2w.clone()
    c2w[:, :3, 3] = torch.nn.functional.normalize(c2w[:, :3, 3], dim=-1) * dist[:, None]
    return c2w, dist


def segment_lengths(c2w: torch.Tensor, intrinsics: torch.Tensor, rotation=None, eps: float = 1e-3) -> torch.Tensor:
    """[V] pixel length of a vertical segment 2 eps long at the origin (the rig centre), turned by ``rotation``."""
    ends = torch.tensor([[0.0, 0.0, -eps], [0.0, 0.0, eps]], dtype=F64)
    if rotation is not None:
        ends = ends @ torch.tensor(rotation, dtype=F64).T
    uv, _ = Cameras(c2w, intrinsics, 512, 512).project(ends.expand(len(c2w), 2, 3))
    return (uv[:, 1] - uv[:, 0]).norm(dim=-1)


def test_per_camera_mode_keeps_the_image_size_of_a_central_point(human):
    c2w, dist = uneven_rig(human)
    out = normalize_rig(c2w, human.intrinsics, RigNormalization(distance_mode="per_camera"))
    assert out.report.distances_after == pytest.approx([2.7] * len(c2w), abs=1e-9)
    torch.testing.assert_close(out.intrinsics[:, 0], human.intrinsics[:, 0] * 2.7 / dist)
    torch.testing.assert_close(out.intrinsics[:, 2:], human.intrinsics[:, 2:])
    assert out.report.centre == pytest.approx([0, 0, 0], abs=1e-6)  # every camera looks at the origin
    rot = out.report.rotation  # the rig's rigid turn; the same segment seen in the normalized frame
    before = segment_lengths(c2w, human.intrinsics)
    torch.testing.assert_close(segment_lengths(out.c2w, out.intrinsics, rot), before, rtol=1e-3, atol=0)
    # the fork's first recipe (move the cameras, keep fx, fy) changes the size by d / 2.7
    torch.testing.assert_close(segment_lengths(out.c2w, human.intrinsics, rot), before * dist / 2.7, rtol=1e-3,
                               atol=0)
    # the centre's offset from the principal point scales by target / d (zero when a camera looks straight at it)
    centre = torch.tensor(out.report.centre, dtype=F64).expand(len(c2w), 1, 3)
    centre_px = Cameras(c2w, human.intrinsics, 512, 512).project(centre)[0][:, 0]
    new_px = Cameras(out.c2w, out.intrinsics, 512, 512).project(torch.zeros(len(c2w), 1, 3, dtype=F64))[0][:, 0]
    principal = human.intrinsics[:, 2:]
    torch.testing.assert_close(new_px - principal, (centre_px - principal) * (2.7 / dist)[:, None])


def test_global_mode_scales_the_mean_distance(human):
    c2w, dist = uneven_rig(human)
    out = normalize_rig(c2w, human.intrinsics, RigNormalization(target_camera_distance=2.0))
    after = torch.tensor(out.report.distances_after, dtype=F64)
    torch.testing.assert_close(after.mean(), torch.tensor(2.0, dtype=F64))
    torch.testing.assert_close(after, dist * 2.0 / dist.mean())  # one scale for the rig: ratios kept
    torch.testing.assert_close(out.intrinsics, human.intrinsics)


def test_seed_recipe_moves_cameras_about_the_raw_origin_and_keeps_the_images(human):
    """up_axis y, per_camera, rescale_focal false, recentre false: the original mouse guide's normalization."""
    c2w, _ = uneven_rig(human)
    shift = torch.tensor([0.4, -0.3, 0.2], dtype=F64)  # the raw origin is not where the cameras look
    c2w[:, :3, 3] += shift
    seed = RigNormalization(up_axis="y", distance_mode="per_camera", rescale_focal=False, recentre=False)
    out = normalize_rig(c2w, human.intrinsics, seed)
    torch.testing.assert_close(out.intrinsics, human.intrinsics)  # images untouched, so fx fy must be too
    assert out.report.centre == [0.0, 0.0, 0.0] and out.report.focal_scales == [1.0] * len(c2w)
    raw_dist = c2w[:, :3, 3].norm(dim=-1)  # measured from the raw origin, not from where the axes meet
    assert out.report.distances_before == pytest.approx(raw_dist.tolist())
    assert out.report.distances_after == pytest.approx([2.7] * len(c2w))
    rot = torch.tensor(out.report.rotation, dtype=F64)  # each camera stays on its ray from the raw origin
    torch.testing.assert_close(out.c2w[:, :3, 3], (c2w[:, :3, 3] @ rot.T) * (2.7 / raw_dist)[:, None])
    assert float((-out.c2w[:, :3, 1]).mean(0) @ torch.tensor([0.0, 1.0, 0.0], dtype=F64)) > 0.9  # Y up
    # the default (recentre, global) undoes the shift instead: the axes meet at the new origin
    default = normalize_rig(c2w, human.intrinsics, RigNormalization())
    assert default.report.centre == pytest.approx(shift.tolist(), abs=1e-6)


def test_recentre_false_refuses_a_camera_at_the_raw_origin(human):
    c2w = human.c2w.clone()
    c2w[:, :3, 3] -= c2w[0, :3, 3].clone()  # the whole rig moved so that camera 0 is at the raw origin
    with pytest.raises(InputError, match="sits at the origin"):
        normalize_rig(c2w, human.intrinsics, RigNormalization(recentre=False, distance_mode="per_camera"))


def cube_rig() -> torch.Tensor:  # [8, 4, 4] cameras on the corners of a cube looking at its centre
    corners = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=F64) * 2
    return look_at(corners, torch.zeros(3, dtype=F64), Z)


def test_non_planar_rig_falls_back_to_the_mean_camera_up_and_says_so():
    rot, scale, shift = random_similarity(7)
    out = normalize_rig(move(cube_rig(), rot, scale, shift), torch.ones(8, 4, dtype=F64), RigNormalization())
    assert out.report.up_source == "camera_up" and "not near a plane" in out.report.warnings[0]
    assert out.report.planarity > 0.9
    torch.testing.assert_close(torch.tensor(out.report.up, dtype=F64), rot @ Z)
    torch.testing.assert_close(torch.tensor(out.report.centre, dtype=F64), shift)


def test_a_given_up_wins(human):
    raw = move(human.c2w, *random_similarity(4))
    given = [0.0, 1.0, 0.0]
    out = normalize_rig(raw, human.intrinsics, RigNormalization(up=given))
    assert out.report.up_source == "config" and out.report.up == pytest.approx(given)
    out = normalize_rig(raw, human.intrinsics, RigNormalization(), data_up=torch.tensor(given, dtype=F64))
    assert out.report.up_source == "data"


def outward_ring() -> torch.Tensor:
    angles = torch.linspace(0, 2 * math.pi, 7, dtype=F64)[:-1]
    eye = torch.stack([angles.cos(), angles.sin(), torch.zeros_like(angles)], -1) * 2
    return look_at(eye, eye * 2, Z)  # every camera looks away from the centre


def parallel_rig() -> torch.Tensor:
    c2w = torch.eye(4, dtype=F64).repeat(4, 1, 1)
    c2w[:, :3, 3] = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=F64)
    return c2w


def collinear_rig() -> torch.Tensor:
    eye = torch.tensor([[k, 0.0, 0.0] for k in range(1, 6)], dtype=F64)
    return look_at(eye, torch.tensor([0.0, 5.0, 0.0], dtype=F64), Z)


def one_point_rig() -> torch.Tensor:
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], dtype=F64)
    return look_at(torch.zeros(4, 3, dtype=F64), targets, Z)


@pytest.mark.parametrize("rig, problem", [
    (collinear_rig, "lie on a line"),
    (one_point_rig, "at one point"),
    (parallel_rig, "parallel"),
    (outward_ring, "behind camera"),
    (lambda: torch.full((4, 4, 4), float("nan"), dtype=F64), "NaN"),
    (lambda: torch.eye(4, dtype=F64)[None], "at least 2 cameras"),
])
def test_degenerate_rigs_are_refused_naming_the_source(rig, problem):
    c2w = rig()
    with pytest.raises(InputError, match=problem) as err:
        normalize_rig(c2w, torch.ones(len(c2w), 4, dtype=F64), RigNormalization(), source="raw/sample_7.json")
    assert "raw/sample_7.json" in str(err.value)


@pytest.mark.parametrize("bad", [dict(up_axis="w"), dict(distance_mode="sphere"), dict(target_camera_distance=0),
                                 dict(up=[0, 0, 0]), dict(front_axis="z", front_view=0), dict(planarity_threshold=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        RigNormalization(**bad)
