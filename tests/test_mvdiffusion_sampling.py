"""MVDiffusion sampling by value: classifier-free guidance ``uncond + g (cond - uncond)`` and each DDIM step
(eta 1, a fixed generator) against diffusers' own ``DDIMScheduler.step`` applied here to the same tensors, and the
direction guidance pushes the sample in, with a stub UNet whose predictions are known.

The stub stands in for the UNet inside the real tiny pipeline (CLIP and VAE encoders, prompts, scheduler), so the
conditioning, the batch layout and the scheduler calls are the pipeline's own; only the network is replaced.
"""

import hydra
import pytest
import torch
from diffusers import DDIMScheduler
from omegaconf import OmegaConf
from torch import nn

from conftest import REPO, SAMPLE
from facelift.image_io import composite, read_image

TINY = REPO / "conf/model/pipeline/random_tiny.yaml"


@pytest.fixture(scope="module")
def pipe():
    return hydra.utils.instantiate(OmegaConf.load(TINY), _convert_="all")


@pytest.fixture(scope="module")
def face() -> torch.Tensor:  # the public sample's front view on white, at the tiny size: [3, 64, 64]
    rgb = composite(read_image(SAMPLE / "mvdiffusion/sample_000/cam_000.png"), 1.0)
    return torch.nn.functional.interpolate(rgb[None], size=(64, 64), mode="bilinear", antialias=True)[0]


class StubUNet(nn.Module):
    """Answers ``predict(x_t, image_latent, is_conditional, t)`` per row and records what it was given.

    A row is conditional when its class labels (the image embedding) are not zero: the pipeline zeroes both the
    embedding and the image latent of its unconditional rows.
    """

    def __init__(self, real: nn.Module, predict, generator: torch.Generator | None = None):
        super().__init__()
        self.config, self.predict, self.generator = real.config, predict, generator
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the stub a device and dtype, as the pipeline reads them
        self.calls = []

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, sample, timestep, encoder_hidden_states=None, class_labels=None, return_dict=True):
        x, latent = sample[:, :4], sample[:, 4:]  # [N, 4, h, w] noisy latent | image latent
        is_cond = class_labels.abs().flatten(1).sum(1) > 0  # [N]
        assert torch.equal(is_cond, latent.abs().flatten(1).sum(1) > 0), "embedding and latent dropped apart"
        state = self.generator.get_state() if self.generator is not None else None
        self.calls.append({"x": x.clone(), "latent": latent.clone(), "is_cond": is_cond, "t": int(timestep),
                           "generator_state": state})
        return (self.predict(x, latent, is_cond, int(timestep)),)


def run_with_stub(pipe, face, monkeypatch, predict, steps, guidance, seed=7):
    """Sample with the stub; returns (the final latents ``[V, 4, h, w]`` before decoding, the stub's calls)."""
    generator = torch.Generator().manual_seed(seed)
    stub = StubUNet(pipe.unet, predict, generator)
    final = {}

    def keep_latents(latents):
        final["latents"] = latents.clone()
        return torch.zeros(latents.shape[0], 3, 64, 64)

    monkeypatch.setattr(pipe, "unet", stub)
    monkeypatch.setattr(pipe, "decode", keep_latents)
    pipe(face, num_inference_steps=steps, guidance_scale=guidance, eta=1.0, generator=generator)
    return final["latents"], stub.calls


def test_guided_prediction_and_each_ddim_step_equal_diffusers_on_the_same_tensors(pipe, face, monkeypatch):
    def predict(x, latent, is_cond, t):  # unconditional rows (latent 0) answer 0.1 x; conditional ones add latent
        return 0.1 * x + latent

    g, steps = 3.0, 3
    final, calls = run_with_stub(pipe, face, monkeypatch, predict, steps, g)
    reference = DDIMScheduler.from_config(pipe.scheduler.config)  # diffusers' sampler, configured as the pipeline's
    reference.set_timesteps(steps)
    assert [c["t"] for c in calls] == reference.timesteps.tolist()
    views = final.shape[0]
    x = calls[0]["x"][:views]
    for i, call in enumerate(calls):
        assert call["is_cond"].tolist() == [False] * views + [True] * views  # [unconditional ; conditional]
        assert torch.equal(call["x"][:views], call["x"][views:])  # both halves see the same noisy latent
        torch.testing.assert_close(call["x"][:views], x, rtol=1e-5, atol=1e-5)  # it is the last step's result
        uncond, cond = 0.1 * x, 0.1 * x + call["latent"][views:]  # what the stub answered, by hand
        guided = uncond + g * (cond - uncond)
        generator = torch.Generator().set_state(call["generator_state"])  # the pipeline's noise for this step
        x = reference.step(guided, call["t"], x, eta=1.0, generator=generator).prev_sample
    torch.testing.assert_close(final, x, rtol=1e-5, atol=1e-5)
    assert (final - calls[0]["x"][:views]).abs().max() > 0.1  # the steps moved the sample


def test_guidance_moves_the_sample_toward_the_conditional_prediction(pipe, face, monkeypatch):
    """Conditional rows predict clean latents ``target``, unconditional ones 0 (in the scheduler's parametrisation),
    so the guided prediction is ``g target``: the final sample's projection on ``target`` must follow g."""
    views = pipe.num_views
    target = torch.randn(views, 4, 8, 8, generator=torch.Generator().manual_seed(3))  # [V, 4, h, w] latents
    alphas = pipe.scheduler.alphas_cumprod
    kind = pipe.scheduler.config.prediction_type

    def predict(x, latent, is_cond, t):
        clean = torch.where(is_cond[:, None, None, None], target.repeat(x.shape[0] // views, 1, 1, 1), 0.0)
        a = alphas[t]
        eps = (x - a.sqrt() * clean) / (1 - a).sqrt()
        return eps if kind == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * clean  # v = sqrt(a) eps - sqrt(1-a) x0

    along = {}
    for g in (0.0, 1.0, 2.0, 3.0):  # 1: guidance off, the conditional prediction alone
        final, _ = run_with_stub(pipe, face, monkeypatch, predict, steps=4, guidance=g)
        along[g] = float((final * target).sum() / (target * target).sum())
    assert along[0.0] == pytest.approx(0.0, abs=0.05)
    for g in (1.0, 2.0, 3.0):  # sqrt(alpha) of the last step, 0.9996, scales it
        assert along[g] == pytest.approx(g, rel=0.03), along


def test_validation_logs_each_guidance_scales_psnr_and_ssim_by_value(monkeypatch):
    """The validation metrics MVDiffusion training reports, on predictions chosen here (the sampler replaced):
    PSNR is the mean over views of 10 log10(1 / MSE), by hand; SSIM is scikit-image's over the same images."""
    import numpy as np
    from test_mvdiffusion_training import tiny_system

    from facelift.data.mvdiffusion_data import MVDiffusionBatch
    from references import skimage_ssim

    system = tiny_system("model.validation.guidance_scales=[1.0,3.0]", "model.validation.grid_batches=0")
    views = torch.rand(1, 6, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5  # [B, V, 3, H, W]
    offsets = torch.tensor([0.1, 0.1, 0.1, 0.01, 0.01, 0.01]).view(1, 6, 1, 1, 1)  # MSE 1e-2 or 1e-4 a view
    preds = {1.0: views + offsets, 3.0: views + 0.1}
    monkeypatch.setattr(system, "pipeline", lambda: lambda cond, guidance_scale, **kw: preds[guidance_scale])
    logged = {}
    monkeypatch.setattr(system, "log_dict", lambda values, **kw: logged.update(values))
    batch = MVDiffusionBatch(torch.zeros(1, 3, 16, 16), views, torch.ones(1, 6, 1, 16, 16), torch.ones(1, 3),
                             torch.zeros(1, dtype=torch.long))
    system.validation_step(batch, 0)
    assert logged["val/psnr_cfg1"].item() == pytest.approx((3 * 20.0 + 3 * 40.0) / 6, abs=1e-3)
    assert logged["val/psnr_cfg3"].item() == pytest.approx(20.0, abs=1e-3)
    for scale in (1.0, 3.0):
        ref = np.mean([skimage_ssim(p, t) for p, t in zip(preds[scale][0], views[0])])
        assert logged[f"val/ssim_cfg{scale:g}"].item() == pytest.approx(ref, abs=1e-4)
