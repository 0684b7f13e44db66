"""Parity of the multi-view UNet with FaceLift's original one, on a reference fixture.

The fixture (``../shared/fixtures/reference/mvdiffusion_unet_tiny_parity.pt``) holds a tiny UNet built with the
original code: its ``config`` (FaceLift's keys), ``state_dict``, forward ``inputs`` and the original ``output``.
`check` is called by ``python -m facelift.tools.parity FIXTURE``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from facelift.models.mvdiffusion.unet import build_unet


def check(fixture: dict, out_dir: Path) -> dict[str, float]:
    """Load the fixture's weights strictly into this project's UNet, rerun its inputs in fp32; name -> max abs error.

    Writes this project's output to ``out_dir/mvdiffusion_unet_output.pt`` for inspection.
    """
    unet = build_unet(fixture["config"]).float().eval()
    unet.load_state_dict(fixture["state_dict"], strict=True)
    inputs = {k: v.float() if v.is_floating_point() else v for k, v in fixture["inputs"].items()}
    with torch.no_grad():
        out = unet(**inputs).sample  # [(b t), 4, h, w]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"output": out}, out_dir / "mvdiffusion_unet_output.pt")
    return {"unet_output": (out - fixture["output"].float()).abs().max().item()}
