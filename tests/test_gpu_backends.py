"""gsplat (CUDA) against the pure-PyTorch rasterizer, and one GS-LRM training step on each: GPU machines only.

Run on the GPU machine whenever rendering or the training step changes (the result goes in the issue note):
    python -m pytest -q -rs tests/test_gpu_backends.py
Without CUDA every test here is skipped with that reason.

Tolerances (the torch backend is the reference; gsplat sums in another order and in its own kernels):
- images: PSNR >= 40 dB between the two, alpha max abs error <= 1e-2 (scripts/check_render_parity.py's gates);
- depth (expected camera z) where alpha > 0.5: mean abs error <= 1e-2 (depths are ~2.7, so 0.4 %);
- gradients of a fixed random linear loss: cosine >= 0.99 for means, SH, opacity logits and log-scales;
- the training step: the loss of the same batch from the same weights within 1e-3 relative, before and after one
  AdamW update (the second tells the gradients through both renderers steer the weights alike).
"""

import math
import runpy

import pytest
import torch

from conftest import REPO
from facelift.gaussians import Gaussians
from facelift.render.gsplat_backend import gsplat_extension
from test_gslrm_training import compose_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device: gsplat rasterizes on the GPU only")

DEPTH_MAX_MEAN_ERR = 1e-2
LOSS_RTOL = 1e-3


@pytest.fixture(scope="module")
def gsplat_ready():
    assert gsplat_extension() is not None, "CUDA is here but gsplat's extension does not load (see its warning)"


@pytest.fixture(scope="module")
def PARITY():  # noqa: N802 - the parity tool's namespace: one definition of the comparison and its gates
    return runpy.run_path(str(REPO / "scripts" / "check_render_parity.py"))


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_gsplat_matches_the_torch_rasterizer_on_a_fixed_scene(gsplat_ready, PARITY, sh_degree):  # noqa: N803
    gen = torch.Generator().manual_seed(11)
    size, batch, views = 128, 2, 3
    pixel = 2.7 * math.tan(math.radians(25)) / (size / 2)  # world size of a pixel at the subject
    from facelift.data.synthetic.blob_scenes import random_cloud

    g = Gaussians.cat([random_cloud(gen, 6000, sh_degree, pixel_size=2.5 * pixel) for _ in range(batch)], 0).to("cuda")
    cams = PARITY["random_cameras"](gen, batch, views, size).to("cuda")
    bg = torch.rand(batch, 3, generator=gen).cuda()
    weights = (torch.rand(batch, views, 3, size, size, generator=gen).cuda(),
               torch.rand(batch, views, 1, size, size, generator=gen).cuda())
    torch_out = PARITY["render_with"]("torch", g, cams, bg, weights)
    gsplat_out = PARITY["render_with"]("gsplat", g, cams, bg, weights)
    row = PARITY["compare"](torch_out, gsplat_out)
    alpha = torch_out[1]
    assert alpha.mean() > 0.05, "the scene must cover part of the views"
    assert row["psnr_db"] >= PARITY["MIN_PSNR"] and row["alpha_max_err"] <= PARITY["MAX_ALPHA_ERR"], row
    assert row["depth_mean_abs_err_where_alpha_gt_0.5"] <= DEPTH_MAX_MEAN_ERR, row
    for name in PARITY["GATED"]:
        assert row[f"cos_{name}"] >= PARITY["MIN_COSINE"], (name, row)


def test_one_training_step_gives_the_same_loss_on_either_backend(gsplat_ready, tmp_path):
    """The tiny GS-LRM, the same weights and batch: loss, one AdamW update, loss again, per backend."""
    import hydra

    from facelift.systems.gslrm_system import GSLRMSystem
    from facelift.views import Views

    cfg = compose_config("train", tmp_path, "data.synthesize.num_samples=2", "data.synthesize.num_views=8",
                         "model.optim.warmup=0")
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    batch = Views.collate([datamodule.dataset("train")[0]]).to("cuda")
    hp = {k: v for k, v in cfg.model.items() if not k.startswith("_")}
    torch.manual_seed(0)
    state = GSLRMSystem(**hp).net.state_dict()
    losses = {}
    for backend in ("torch", "gsplat"):
        system = GSLRMSystem(**dict(hp, render_backend=backend)).cuda()
        system.net.load_state_dict(state)
        optimizer = torch.optim.AdamW(system.net.parameters(), lr=1e-3)
        seen = []
        for _ in range(2):
            rec = system.reconstruct(batch)
            loss = system.loss_fn(rec.renders.rgb, rec.targets, step=0).total
            seen.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses[backend] = seen
    assert losses["gsplat"] == pytest.approx(losses["torch"], rel=LOSS_RTOL), losses
    assert losses["torch"][1] != losses["torch"][0]  # the update did change the render
