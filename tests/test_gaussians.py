"""Gaussians: PLY in the 3DGS layout (against FaceLift's own file), pruning filters, batching helpers."""

import pytest
import torch
from numpy.lib import recfunctions
from plyfile import PlyData, PlyElement

from conftest import REFERENCE
from facelift.errors import InputError
from facelift.gaussians import GaussianFilter, Gaussians, load_ply, save_ply


def _random(n: int, degree: int, batch: int = 1, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    return Gaussians(r(batch, n, 3), r(batch, n, 4), r(batch, n, 3) - 3, r(batch, n), r(batch, n, (degree + 1) ** 2, 3))


def test_fixture_ply_reads_back_facelifts_gaussians(fixtures_dir):
    g = load_ply(REFERENCE / "gslrm_tiny_parity.ply")
    ref = torch.load(REFERENCE / "gslrm_tiny_parity.pt", weights_only=False)["outputs"]["inference"]
    assert g.batch_size == 1 and g.num_gaussians == 4098 and g.sh_degree == 0  # zero padding to degree 3 dropped
    torch.testing.assert_close(g.means[0], ref["xyz"], rtol=0, atol=0)
    torch.testing.assert_close(g.sh[0], ref["features_dc"], rtol=0, atol=0)
    torch.testing.assert_close(g.opacity_logits[0], ref["opacity_raw"][:, 0], rtol=0, atol=0)
    torch.testing.assert_close(g.log_scales[0], ref["scaling_raw"], rtol=0, atol=0)
    torch.testing.assert_close(g.quats[0], ref["rotation_raw"], rtol=0, atol=0)
    torch.testing.assert_close(g.opacities[0], ref["opacity"][:, 0])
    torch.testing.assert_close(g.rotations[0], ref["rotation"])


def test_writing_the_fixture_back_gives_facelifts_bytes(fixtures_dir, tmp_path):
    src = REFERENCE / "gslrm_tiny_parity.ply"
    out = save_ply(tmp_path / "sub" / "g.ply", load_ply(src))
    assert out.read_bytes() == src.read_bytes()  # same header, same rgb truncation, same padding
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_round_trip_keeps_higher_degrees_and_layout(tmp_path):
    g = _random(500, degree=2)
    path = save_ply(tmp_path / "g.ply", g, write_rgb=False)
    names = PlyData.read(str(path))["vertex"].data.dtype.names
    assert names[:6] == ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2") and "red" not in names
    assert names[6:51] == tuple(f"f_rest_{i}" for i in range(45))
    assert names[51:] == ("opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
    # the viewers' layout is channel-major: f_rest_{c*15 + k-1} = coefficient k of channel c
    vertex = PlyData.read(str(path))["vertex"]
    assert vertex["f_rest_15"][7] == pytest.approx(g.sh[0, 7, 1, 1].item())
    assert vertex["f_rest_3"][7] == pytest.approx(g.sh[0, 7, 4, 0].item())
    back = load_ply(path)
    assert back.sh_degree == 2
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        torch.testing.assert_close(getattr(back, name), getattr(g, name), rtol=0, atol=0)
    assert load_ply(path, sh_degree=3).sh.shape[2] == 16 and load_ply(path, sh_degree=0).sh.shape[2] == 1


def test_bad_ply_files_raise_input_error_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_ply(tmp_path / "missing.ply")
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"not a ply at all")
    with pytest.raises(InputError, match="junk.ply"):
        load_ply(junk)
    path = save_ply(tmp_path / "g.ply", _random(10, 0))
    vertex = PlyData.read(str(path))["vertex"].data
    keep = [n for n in vertex.dtype.names if n != "scale_1"]
    short = PlyElement.describe(recfunctions.repack_fields(vertex[keep]), "vertex")
    PlyData([short]).write(str(tmp_path / "short.ply"))
    with pytest.raises(InputError, match="scale_1"):
        load_ply(tmp_path / "short.ply")


def test_filters_drop_exactly_what_facelift_drops():
    means = torch.tensor([[0.0, 0.0, 0.0],  # kept
                          [0.0, 0.0, 0.0],  # low opacity
                          [0.0, 0.0, -0.5],  # too large, below z = 0
                          [0.0, 0.0, 0.5],  # too large but above z = 0: kept
                          [0.7, -0.7, -0.7],  # lower-corner floater
                          [0.7, -0.7, 0.5],  # corner but high: kept
                          [0.95, 0.0, 0.0],  # outside the crop box
                          [0.0, 0.0, -0.99]])[None]  # inside the box (z range is wider): kept
    n = means.shape[1]
    log_scales = torch.full((1, n, 3), -4.0)
    log_scales[0, 2:4, 1] = -2.0  # 0.135 > 0.1
    logits = torch.full((1, n), 2.0)
    logits[0, 1] = -4.0  # sigmoid = 0.018 < 0.04
    g = Gaussians(means, torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4), log_scales, logits, torch.zeros(1, n, 1, 3))
    assert g.keep_mask(GaussianFilter())[0].tolist() == [True, False, False, True, False, True, False, True]
    assert g.filtered(GaussianFilter()).num_gaussians == 4
    off = GaussianFilter(min_opacity=None, max_scale=None, floater_threshold=None, box=None)
    assert g.keep_mask(off).all()


def test_near_far_filter_uses_each_cameras_distance_quantiles():
    x = torch.linspace(-1, 1, 101)
    means = torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1)[None]
    g = Gaussians(means, torch.randn(1, 101, 4), torch.zeros(1, 101, 3), torch.zeros(1, 101), torch.zeros(1, 101, 1, 3))
    f = GaussianFilter(None, None, None, None, near_far_quantiles=(0.1, 1.0))
    keep = g.keep_mask(f, camera_centers=torch.tensor([[-3.0, 0.0, 0.0]]))[0]
    assert keep.sum() == 91 and not keep[:10].any()  # the 10 closest to the camera go
    keep2 = g.keep_mask(f, camera_centers=torch.tensor([[-3.0, 0.0, 0.0], [3.0, 0.0, 0.0]]))[0]
    assert keep2.sum() == 81 and not keep2[-10:].any()
    with pytest.raises(ValueError):
        g.keep_mask(f)
    # quantiles are taken over what the earlier filters kept: the box first drops x > 0.5, then the 10 % nearest go
    boxed = GaussianFilter(None, None, None, (-1.0, 0.5, -1, 1, -1, 1), near_far_quantiles=(0.1, 1.0))
    keep3 = g.keep_mask(boxed, camera_centers=torch.tensor([[-3.0, 0.0, 0.0]]))[0]
    assert keep3.sum() == 68 and not keep3[:8].any() and keep3[8] and not keep3[76:].any()


def test_cat_pads_degrees_and_moves_dtype():
    a, b = _random(5, 0), _random(7, 3, seed=1)
    c = Gaussians.cat([a, b])
    assert c.num_gaussians == 12 and c.sh_degree == 3
    assert torch.equal(c.sh[:, :5, 1:], torch.zeros(1, 5, 15, 3))
    assert Gaussians.cat([_random(4, 1, batch=2), _random(4, 1, batch=3)], dim=0).batch_size == 5
    assert c.to(torch.float64).means.dtype == torch.float64
