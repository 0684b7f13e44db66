"""MVDiffusionSystem: train / fine-tune FaceLift's multi-view UNet; the VAE, CLIP image encoder and prompt
embeddings stay frozen.

One step (FaceLift's train_diffusion.py): target views -> VAE latents (sampled) -> noise at one timestep per object
-> conditioning from the input image (CLIP embedding + VAE latent, partly dropped for classifier-free guidance)
-> UNet predicts epsilon or v (the scheduler config's ``prediction_type``) -> MSE per view entry, min-SNR-gamma
weighted. EMA of the UNet after every optimizer step; validation samples the 6 views with the EMA UNet at each
guidance scale, logs PSNR / SSIM and writes image grids.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from diffusers import DDPMScheduler
from omegaconf import DictConfig
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from facelift.data.mvdiffusion_data import MVDiffusionBatch
from facelift.losses.frozen import FrozenNet
from facelift.models.mvdiffusion.loading import torch_dtype
from facelift.models.mvdiffusion.pipeline import Conditioning, MVDiffusionPipeline
from facelift.systems.hparams import make_plain
from facelift.systems.metrics import log_image
from facelift.systems.optim import warmup_then_decay

log = logging.getLogger("facelift")
DROP_TYPES = ("drop_as_a_whole", "drop_independent")


class FrozenParts(FrozenNet):
    """VAE, CLIP image encoder and unCLIP normaliser: read from the checkpoint folder, never trained, never saved."""

    def __init__(self, vae, image_encoder, image_normalizer):
        super().__init__()
        self.vae, self.image_encoder, self.image_normalizer = vae, image_encoder, image_normalizer
        self.freeze()


class MVDiffusionSystem(L.LightningModule):
    def __init__(self, pipeline: DictConfig, optim: DictConfig, snr_gamma: float | None = 5.0,
                 condition_drop_rate: float = 0.05, drop_type: str = "drop_as_a_whole", max_grad_norm: float = 1.0,
                 gradient_checkpointing: bool = True, frozen_dtype: str = "float32", ema: DictConfig | None = None,
                 validation: DictConfig | None = None, export_unet: bool = True):
        super().__init__()
        self.save_hyperparameters()  # the pipeline config travels in checkpoints: loading rebuilds the frozen parts
        make_plain(self.hparams)
        if drop_type not in DROP_TYPES:
            raise ValueError(f"drop_type must be one of {DROP_TYPES}, got {drop_type!r}")
        pipe: MVDiffusionPipeline = hydra.utils.instantiate(self.hparams.pipeline, _convert_="all")
        self.unet = pipe.unet.train().requires_grad_(True)
        self.frozen = FrozenParts(pipe.vae, pipe.image_encoder, pipe.image_normalizer)
        self.frozen.vae.to(torch_dtype(frozen_dtype))
        self.frozen.image_encoder.to(torch_dtype(frozen_dtype))
        self.register_buffer("prompt_embeds", pipe.prompt_embeds.float(), persistent=False)  # [V, T, D] from config
        self.sampler, self.image_noising_scheduler = pipe.scheduler, pipe.image_noising_scheduler
        self.clip, self.noise_level = pipe.clip, pipe.noise_level
        # Training noise: DDPM on the sampler's config (FaceLift builds both from the checkpoint's scheduler/).
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.register_buffer("alphas_cumprod", self.noise_scheduler.alphas_cumprod.clone(), persistent=False)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False).eval() if ema and ema.get("enabled") else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))  # for EMA warmup; checkpointed

    @property
    def num_views(self) -> int:
        return self.prompt_embeds.shape[0]

    def pipeline(self, use_ema: bool = True) -> MVDiffusionPipeline:
        """The sampling pipeline over this system's modules (the EMA UNet when there is one and ``use_ema``)."""
        unet = self.ema_unet if use_ema and self.ema_unet is not None else self.unet
        f = self.frozen
        return MVDiffusionPipeline(unet, f.vae, f.image_encoder, f.image_normalizer, self.image_noising_scheduler,
                                   self.sampler, self.prompt_embeds, self.clip, self.noise_level)

    # ----------------------------------------------------------------- training
    def diffusion_loss(self, batch: MVDiffusionBatch) -> Tensor:
        b, t = batch.views.shape[:2]
        if t != self.num_views:
            raise ValueError(f"batch has {t} views per object, the prompt embeddings {self.num_views}")
        vae = self.frozen.vae
        with torch.no_grad():
            cond = self.pipeline(use_ema=False).encode_condition(batch.cond)  # per view entry "(b t)"
            pixels = batch.views.flatten(0, 1) * 2 - 1  # [(b t), 3, H, W] in [-1, 1]
            latents = vae.encode(pixels.to(vae.dtype)).latent_dist.sample().float() * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        steps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), device=self.device)
        steps = steps.repeat_interleave(t)  # one timestep per object, shared by its views
        noisy = self.noise_scheduler.add_noise(latents, noise, steps)
        cond = self.drop_condition(cond, b, t)
        prompts = self.prompt_embeds.repeat(b, 1, 1)  # [(b t), T, D]
        pred = self.unet(torch.cat([noisy, cond.image_latents], dim=1), steps, encoder_hidden_states=prompts,
                         class_labels=cond.image_embeds).sample
        kind = self.noise_scheduler.config.prediction_type
        if kind == "epsilon":
            target = noise
        elif kind == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, steps)
        else:
            raise ValueError(f"prediction_type {kind!r} of the scheduler config is not trained here (epsilon, v)")
        per_entry = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))  # [(b t)]
        return (per_entry * self.snr_weights(steps)).mean()

    def snr_weights(self, steps: Tensor) -> Tensor:
        """Min-SNR-gamma: min(SNR, gamma) / SNR per entry, as FaceLift (for v too); 1 without gamma."""
        gamma = self.hparams.snr_gamma
        if gamma is None:
            return torch.ones_like(steps, dtype=torch.float32)
        ac = self.alphas_cumprod[steps]
        snr = ac / (1 - ac)
        return snr.clamp(max=gamma) / snr

    def drop_condition(self, cond: Conditioning, b: int, t: int) -> Conditioning:
        """FaceLift's conditioning dropout with one draw p per object (as a whole) or per view entry (independent):
        p < r drops the CLIP embedding, r <= p < 2r both, 2r <= p < 3r the image latent (r = condition_drop_rate)."""
        r = self.hparams.condition_drop_rate
        if r <= 0:
            return cond
        whole = self.hparams.drop_type == "drop_as_a_whole"
        p = torch.rand(b if whole else b * t, device=cond.image_embeds.device)
        keep_embeds, keep_latents = p >= 2 * r, ~((p >= r) & (p < 3 * r))
        if whole:
            keep_embeds, keep_latents = keep_embeds.repeat_interleave(t), keep_latents.repeat_interleave(t)
        return cond.masked(keep_embeds, keep_latents)

    def training_step(self, batch: MVDiffusionBatch, batch_idx: int) -> Tensor:
        loss = self.diffusion_loss(batch)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch.views.shape[0])
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Called after AMP unscaling: FaceLift clips the UNet's total gradient norm to max_grad_norm.
        if self.hparams.max_grad_norm and self.hparams.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.hparams.max_grad_norm)
            self.log("train/grad_norm", norm, batch_size=1)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema_unet is not None:
            self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA with FaceLift's (diffusers EMAModel's default) warmup: decay min(decay, (1 + n) / (10 + n)) at the
        n-th update, 0 at the first (the EMA starts as a copy)."""
        n = int(self.ema_updates)
        decay = 0.0 if n == 0 else min(self.hparams.ema["decay"], (1 + n) / (10 + n))
        ema, live = list(self.ema_unet.parameters()), [p.detach() for p in self.unet.parameters()]
        torch._foreach_lerp_(ema, live, 1 - decay)
        self.ema_updates += 1

    def configure_optimizers(self):
        o = self.hparams.optim
        # FaceLift gives the class embedding (which carries the CLIP image embedding) its own LR multiplier.
        named = list(self.unet.named_parameters())
        groups = [{"params": [p for n, p in named if "class_embedding" not in n], "lr": o["lr"]},
                  {"params": [p for n, p in named if "class_embedding" in n],
                   "lr": o["lr"] * o["camera_embedding_lr_mult"]}]
        optimizer = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"],
                                      eps=o["eps"])
        if o["schedule"] == "piecewise_constant":
            scheduler = piecewise_constant(optimizer, o["step_rules"], o["warmup"])
        else:
            total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
            scheduler = warmup_then_decay(optimizer, o["warmup"], int(total), o["schedule"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------- validation
    def validation_step(self, batch: MVDiffusionBatch, batch_idx: int) -> None:
        v = self.hparams.validation
        pipe, b = self.pipeline(), batch.views.shape[0]
        rows = []
        for scale in v["guidance_scales"]:
            gen = torch.Generator(device=self.device).manual_seed(v["seed"] + batch_idx)
            pred = pipe(batch.cond, num_inference_steps=v["num_inference_steps"], guidance_scale=scale,
                        eta=v["eta"], generator=gen)  # [B, V, 3, H, W]
            mse = (pred - batch.views).square().mean(dim=(2, 3, 4))  # [B, V]
            ssim = structural_similarity_index_measure(pred.flatten(0, 1), batch.views.flatten(0, 1).float(),
                                                       data_range=1.0)
            self.log_dict({f"val/psnr_cfg{scale:g}": (-10 * torch.log10(mse.clamp_min(1e-10))).mean(),
                           f"val/ssim_cfg{scale:g}": ssim}, batch_size=b, sync_dist=True)
            rows.append(pred[0])
        if batch_idx < v["grid_batches"] and self.trainer.is_global_zero:
            self._write_grid(batch, rows, batch_idx)

    def _write_grid(self, batch: MVDiffusionBatch, predictions: list[Tensor], batch_idx: int) -> None:
        """One PNG per batch: row 1 input + targets, then one row per guidance scale (first object of the batch)."""
        cond = batch.cond[0:1].float()
        tiles = [cond, batch.views[0].float()] + [torch.cat([torch.ones_like(cond), p]) for p in predictions]
        grid = torchvision.utils.make_grid(torch.cat(tiles).clamp(0, 1).cpu(), nrow=self.num_views + 1, padding=0)
        path = Path(self.trainer.default_root_dir) / "val_images" / f"step_{self.global_step:07d}_{batch_idx}.png"
        log_image(self.loggers, f"val/views_{batch_idx}", grid, self.global_step, path)

    def on_fit_end(self) -> None:
        """Export the trained UNet (EMA when kept) as a diffusers folder: pipeline ``unet_dir`` reads it back."""
        if self.hparams.export_unet and self.trainer.is_global_zero:
            out = Path(self.trainer.default_root_dir) / "unet"
            (self.ema_unet if self.ema_unet is not None else self.unet).save_pretrained(out)
            log.info("trained UNet exported to %s (use it with model.pipeline.unet_dir=%s)", out, out)


def piecewise_constant(optimizer: torch.optim.Optimizer, step_rules: str, warmup: int = 0
                       ) -> torch.optim.lr_scheduler.LambdaLR:
    """diffusers' step-rule syntax: ``"1:2000,0.5"`` = LR x 1 before step 2000, then x 0.5; ``"1"`` = constant.
    An optional linear warmup over the first ``warmup`` steps multiplies it."""
    *rules, last = str(step_rules).split(",")
    bounds = sorted((int(s), float(m)) for m, s in (r.split(":") for r in rules))

    def factor(step: int) -> float:
        ramp = min(1.0, step / warmup) if warmup > 0 else 1.0
        return ramp * next((m for bound, m in bounds if step < bound), float(last))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
