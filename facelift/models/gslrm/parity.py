"""GS-LRM against FaceLift's own outputs: a parity fixture's checkpoint and inputs through `GSLRM`, every output
compared, and the PLY written by `facelift.gaussians.save_ply` compared with the one FaceLift wrote, field by field.

Fixture (``../shared/fixtures/reference/gslrm_tiny_parity.pt``): ``config`` (FaceLift's model keys), ``checkpoint``
(``{"model": state dict}``), ``inputs`` (image, c2w, fxfycxcy, index) and ``outputs`` per mode (``inference``,
``train``): xyz, features_dc, scaling_raw, rotation_raw, opacity_raw, scaling, rotation, opacity, ray_o, ray_d.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData
from torch import Tensor

from facelift.cameras import Cameras
from facelift.errors import InputError
from facelift.gaussians import SH_C0, Gaussians, save_ply
from facelift.models.gslrm.checkpoint import check_architecture, official_to_project, split_extras
from facelift.models.gslrm.model import GSLRM, GSLRMConfig
from facelift.models.gslrm.tokenizer import IN_CHANNELS
from facelift.views import Views

PLY_TOLERANCE = 1e-4  # float fields; uchar colours must be equal up to a truncation step this close to the value
COLOUR_SOURCE = {"red": "f_dc_0", "green": "f_dc_1", "blue": "f_dc_2"}  # FaceLift's uchar colours come from these


def is_gslrm_fixture(fixture: dict) -> bool:
    return {"config", "checkpoint", "inputs", "outputs"} <= fixture.keys()


def config_from_facelift(cfg: dict, source: str | Path | None = None) -> GSLRMConfig:
    """FaceLift's model settings -> `GSLRMConfig`; variants this project does not implement are refused."""
    unsupported = {"in_channels": IN_CHANNELS, "use_custom_plucker": True, "add_refsrc_marker": False}
    for key, wanted in unsupported.items():
        if key in cfg and cfg[key] != wanted:
            raise InputError(source, f"FaceLift setting {key}={cfg[key]!r} is not supported (only {wanted!r})")
    return GSLRMConfig(patch_size=cfg["patch_size"], d=cfg["d"], d_head=cfg["d_head"], n_layer=cfg["n_layer"],
                       n_gaussians=cfg["n_gaussians"], sh_degree=cfg["sh_degree"],
                       hard_pixelalign=cfg["hard_pixelalign"], clip_xyz=cfg["clip_xyz"])


def as_facelift_outputs(g: Gaussians, cameras: Cameras) -> dict[str, Tensor]:
    """Sample 0 of our outputs under FaceLift's names and shapes."""
    rays_o, rays_d = cameras.rays()  # [B, V, H, W, 3]
    return {"xyz": g.means[0], "features_dc": g.sh[0], "scaling_raw": g.log_scales[0], "rotation_raw": g.quats[0],
            "opacity_raw": g.opacity_logits[0, :, None], "scaling": g.scales[0], "rotation": g.rotations[0],
            "opacity": g.opacities[0, :, None], "ray_o": rays_o.movedim(-1, 2), "ray_d": rays_d.movedim(-1, 2)}


def check(fixture: dict, out_dir: str | Path, reference_ply: str | Path | None = None) -> dict[str, float]:
    """Max abs error of every output in every mode (``inference.xyz`` ...) and of every PLY field (``ply.x`` ...)."""
    net = GSLRM(config_from_facelift(fixture["config"]))
    state, _ = split_extras(fixture["checkpoint"]["model"])
    state = official_to_project(state, "fixture checkpoint")
    check_architecture(net, state, "fixture checkpoint", layout="official")
    net.load_state_dict(state)

    inp = fixture["inputs"]
    b, v, _, h, w = inp["image"].shape
    cameras = Cameras(inp["c2w"].float(), inp["fxfycxcy"].float(), w, h)
    views = Views(inp["image"].float(), torch.ones(b, v, 1, h, w), cameras, inp["index"])

    errors, inference = {}, None
    for mode, expected in fixture["outputs"].items():
        net.train(mode == "train")
        with torch.no_grad():
            g = net(views)
        ours = as_facelift_outputs(g, cameras)
        for name, ref in expected.items():
            errors[f"{mode}.{name}"] = _max_abs(ours[name], ref) if name in ours else float("inf")  # unknown: fail
        if mode == "inference":
            inference = g
    if inference is None:
        raise InputError("fixture", "has no 'inference' outputs, so there is no PLY to compare")
    ply = save_ply(Path(out_dir) / "gslrm_parity.ply", inference[0])
    if reference_ply is not None:
        errors |= compare_ply(ply, reference_ply)
    return errors


def _max_abs(ours: Tensor, ref: Tensor) -> float:
    if ours.shape != ref.shape:
        return float("inf")
    return (ours.double() - ref.double()).abs().max().item()


def compare_ply(ours: str | Path, reference: str | Path, tolerance: float = PLY_TOLERANCE) -> dict[str, float]:
    """``ply.<field>``: max abs difference per vertex property (``ply.layout`` is inf if names/types/count differ).

    The uchar colours are truncations of ``(0.28209479 f_dc + 0.5) · 255``: a one-step difference counts as 0 where
    the reference's own value lies within ``tolerance · 255`` of the step.
    """
    reference = Path(reference)
    if not reference.is_file():
        raise InputError(reference, "reference PLY not found (it lies beside the parity fixture)")
    a, b = (PlyData.read(str(p))["vertex"].data for p in (ours, reference))
    if a.dtype != b.dtype or len(a) != len(b):
        return {"ply.layout": float("inf")}
    errors = {"ply.layout": 0.0}
    for name in a.dtype.names:
        diff = np.abs(a[name].astype(np.float64) - b[name].astype(np.float64))
        if COLOUR_SOURCE.get(name) in a.dtype.names:
            value = (SH_C0 * b[COLOUR_SOURCE[name]].astype(np.float64) + 0.5) * 255.0
            at_step = np.abs(value - np.round(value)) <= tolerance * 255.0
            diff[(diff == 1) & at_step] = 0.0
        errors[f"ply.{name}"] = float(diff.max()) if len(diff) else 0.0
    return errors
