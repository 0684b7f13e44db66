"""GSLRMSystem: posed views -> GS-LRM -> Gaussians -> rendered targets -> losses -> FaceLift's step rule.

The network knows nothing of losses or rendering; this module owns the view split, the render, the loss,
the optimiser and its step rule, validation metrics and image grids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
from torch import Tensor

from facelift.evaluation.foreground import FOREGROUND_METRICS
from facelift.evaluation.report import role_masks
from facelift.gaussians import Gaussians
from facelift.image_io import image_grid
from facelift.losses import GSLRMLoss
from facelift.models.gslrm import GSLRM
from facelift.models.gslrm.checkpoint import load_official_into, official_name
from facelift.models.gslrm.heads import pixels_as_images
from facelift.render import Renders, render
from facelift.systems.hparams import make_plain
from facelift.systems.metrics import ImageMetrics, log_image
from facelift.systems.optim import adamw_with_decay_groups, freeze_parameters, warmup_then_decay
from facelift.systems.step_rule import SKIP_REASONS, StepRule
from facelift.views import Views

log = logging.getLogger("facelift")


@dataclass
class Reconstruction:
    """One pass of the data path: the split views, the predicted Gaussians and their renders into the targets."""

    inputs: Views  # [B, V_in]
    targets: Views  # [B, V_t]
    gaussians: Gaussians  # [B, N]
    renders: Renders  # into targets.cameras: rgb [B, V_t, 3, H, W]


class GSLRMSystem(L.LightningModule):
    def __init__(self, net: dict, loss: dict, optim: dict, step_rule: dict, num_input_views: int,
                 target_has_input: bool, freeze: list[str] | None = None, init_ckpt: str | None = None,
                 render_backend: str = "auto", val_metrics: dict | None = None, clip_xyz_steps: int | None = None,
                 holdout_views: list[int] | None = None, compile: bool = False, compile_mode: str = "default"):
        super().__init__()
        # a plain list before it is saved: Lightning refuses a hyper-parameter the data module also has (its own
        # holdout_views) unless both are of one type, and the config hands this one over as a ListConfig
        holdout_views = [int(i) for i in holdout_views or ()]
        self.save_hyperparameters()  # the whole config travels in every checkpoint: eval.py rebuilds from it
        make_plain(self.hparams)
        hp = self.hparams
        self.net: GSLRM = hydra.utils.instantiate(hp.net)
        self.loss_fn: GSLRMLoss = hydra.utils.instantiate(hp.loss)
        self.step_rule = StepRule(**hp.step_rule)
        self.val_metrics = ImageMetrics(**(hp.val_metrics or {}))
        if freeze:
            freeze_parameters(self.net, list(freeze), alias=official_name)
        # In place: parameter names (and so checkpoints) stay the eager module's. The loss stays eager: compiled, an
        # L2-only loss (total = 1.0 x l2, returned beside its detached copy) loses its gradient (torch 2.14 dynamo).
        if compile:
            self.net.compile(mode=compile_mode)

    # ----------------------------------------------------------------- the data path
    def split(self, views: Views) -> tuple[Views, Views]:
        """The first ``num_input_views`` views are inputs; targets are the rest, plus the inputs if configured."""
        n_in = self.hparams.num_input_views
        if views.num_views < n_in or (views.num_views == n_in and not self.hparams.target_has_input):
            raise ValueError(f"batch has {views.num_views} views but {n_in} are inputs and target_has_input is "
                             f"{self.hparams.target_has_input}: nothing left to supervise")
        inputs = views.select(slice(0, n_in))
        targets = views if self.hparams.target_has_input else views.select(slice(n_in, None))
        return inputs, targets

    def forward(self, inputs: Views) -> Gaussians:
        return self.net(inputs)

    def reconstruct(self, batch: Views, clip_xyz: bool | None = None) -> Reconstruction:
        inputs, targets = self.split(batch)
        gaussians = self.net(inputs, clip_xyz=clip_xyz)
        # render() rasterises in fp32 whatever the autocast mode: alpha compositing of ~1e6 Gaussians is not bf16-safe
        renders = render(gaussians, targets.cameras, targets.background_or_white(),
                         backend=self.hparams.render_backend)
        return Reconstruction(inputs, targets, gaussians, renders)

    def pixel_xyz(self, rec: Reconstruction) -> Tensor:
        """The input pixels' Gaussian positions laid out as the input images, ``[B, V_in, 3, H, W]``."""
        b, v, _, h, w = rec.inputs.images.shape
        pixel_means = rec.gaussians.means[:, self.net.config.n_gaussians:]  # [B, V·H·W, 3]
        return pixels_as_images(pixel_means, v, h, w, self.net.config.patch_size)

    # ----------------------------------------------------------------- training
    def clip_xyz_at(self, step: int) -> bool | None:
        """The clamp override at ``step``: off in FaceLift's points-dist warmup and from ``clip_xyz_steps`` on
        (so the model ends its training as it infers, unclamped); None: as ``net.clip_xyz``."""
        released = self.hparams.clip_xyz_steps is not None and step >= self.hparams.clip_xyz_steps
        return False if self.loss_fn.in_pointsdist_warmup(step) or released else None

    def training_step(self, batch: Views, batch_idx: int) -> Tensor:
        step = self.global_step
        rec = self.reconstruct(batch, clip_xyz=self.clip_xyz_at(step))
        geometry = dict(input_views=rec.inputs, pixel_xyz=self.pixel_xyz(rec)) if self.loss_fn.needs_pixel_xyz else {}
        out = self.loss_fn(rec.renders.rgb, rec.targets, step=step, alpha=rec.renders.alpha, **geometry)
        bs = batch.images.shape[0]
        self.log("train/loss", out.total.detach(), prog_bar=True, batch_size=bs, sync_dist=True)  # mean over ranks
        self.log_dict({f"train/{k}": v for k, v in out.terms.items()}, batch_size=bs)
        return out.total

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """FaceLift's step rule in place of Lightning's: the closure runs forward + backward, then we decide."""
        loss = optimizer_closure()
        params = [p for p in self.net.parameters() if p.requires_grad]
        if self.step_rule.on_device:
            return self._optimizer_step_on_device(loss, params, optimizer)
        decision = self.step_rule.decide(loss, params, any_rank=self._any_rank)
        if decision.skip:
            log.warning("step %d: optimizer update skipped (%s, grad norm %.3g)", self.global_step,
                        decision.reason, decision.grad_norm)
        else:
            optimizer.step()
        # Lightning counts the step and advances the LR schedule either way, as FaceLift does
        self.log("train/grad_norm", decision.grad_norm, batch_size=1)
        self.log_dict({f"train/skipped_{r}": float(self.step_rule.skipped[r]) for r in SKIP_REASONS}, batch_size=1)

    def _optimizer_step_on_device(self, loss: Tensor, params: list[Tensor], optimizer) -> None:
        """The same rule without a host sync: the fused AdamW drops a skipped update itself; skips are counted on
        the device and read (and warned about) every ``log_every_n_steps``."""
        decision = self.step_rule.decide_on_device(loss, params, any_rank=self._any_rank_max)
        inner = getattr(optimizer, "optimizer", optimizer)  # Lightning's wrapper holds the torch optimizer
        inner.found_inf = decision.skip  # read by fused AdamW only (checked in configure_optimizers)
        try:
            optimizer.step()
        finally:
            del inner.found_inf
        self.log("train/grad_norm", decision.grad_norm, batch_size=1)  # a tensor: read when Lightning logs
        if self._trainer is None or self.global_step % self.trainer.log_every_n_steps == 0:
            new = self.step_rule.flush()
            if new:
                log.warning("step %d: %d optimizer update(s) skipped since the last log (%s)", self.global_step,
                            sum(new.values()), ", ".join(f"{r} {n}" for r, n in new.items()))
            self.log_dict({f"train/skipped_{r}": float(self.step_rule.skipped[r]) for r in SKIP_REASONS},
                          batch_size=1)

    def _any_rank_max(self, flags: Tensor) -> Tensor:
        return flags if self._trainer is None else self.trainer.strategy.reduce(flags, reduce_op="max")

    def _any_rank(self, flag: bool) -> bool:
        if self._trainer is None:
            return flag
        return bool(self.trainer.strategy.reduce_boolean_decision(flag, all=False))

    def configure_optimizers(self):
        o = self.hparams.optim
        optimizer = adamw_with_decay_groups(self.net, o["lr"], tuple(o["betas"]), o["weight_decay"],
                                            fused=o.get("fused", "auto"))
        if self.step_rule.on_device and not optimizer.defaults["fused"]:
            raise ValueError("model.step_rule.on_device needs a fused AdamW (model.optim.fused: true, or auto on "
                             "CUDA): only the fused kernels can drop an update without a host sync")
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
        scheduler = warmup_then_decay(optimizer, o["warmup"], int(total), o["schedule"], o.get("lr_spike"))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        # init_ckpt gives the weights only: optimizer moments, step count and LR schedule start fresh (FaceLift's
        # reset_lr / reset_training_state). A resumed run (ckpt_path) restores everything instead.
        if stage == "fit" and self.hparams.init_ckpt and self.trainer.ckpt_path is None:
            load_official_into(self.net, self.hparams.init_ckpt)
            log.info("initialised GS-LRM from %s", self.hparams.init_ckpt)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.step_rule.flush()
        checkpoint["skipped_steps"] = dict(self.step_rule.skipped)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.step_rule.skipped.update(checkpoint.get("skipped_steps", {}))

    # ----------------------------------------------------------------- validation
    def _log_mean(self, key: str, values: Tensor, prog_bar: bool = False) -> None:
        """Log the mean of ``values`` over the views where it is defined: weighted by that count, so the epoch's
        value is the mean over every defined view of the pass (NaN when there was none)."""
        defined = ~values.isnan()
        count = int(defined.sum())
        mean = values[defined].mean() if count else values.new_zeros(())
        self.log(key, mean, prog_bar=prog_bar, batch_size=count, sync_dist=True)

    def validation_step(self, batch: Views, batch_idx: int) -> None:
        rec = self.reconstruct(batch)
        scores = self.val_metrics(rec.renders, rec.targets)  # name -> [B, V_t]
        roles = role_masks(rec.targets.index[..., 0], rec.inputs.index[..., 0], self.hparams.holdout_views or ())
        groups = {"": None, **{f"_{role}": chosen for role, chosen in roles.items()}}
        for suffix, chosen in groups.items():  # all scored views, then each role that has views here
            if chosen is not None and not chosen.any():
                continue
            for k, v in scores.items():
                self._log_mean(f"val/{k}{suffix}", v if chosen is None else v[chosen], prog_bar=not suffix and k in
                               ("psnr_fg", "iou", "psnr"))
        for k in FOREGROUND_METRICS:  # views without a foreground (NaN there) are in no mean: how many
            self.log(f"val/{k}_left_out", scores[k].isnan().sum().float(), reduce_fx="sum", batch_size=1,
                     sync_dist=True)
        if batch_idx == 0 and self.trainer.is_global_zero:
            grid = image_grid(rec.inputs.images[0], rec.targets.images[0], rec.renders.rgb[0])
            path = Path(self.trainer.default_root_dir) / "val_images" / f"step_{self.global_step:07d}.png"
            log_image(self.loggers, "val/renders", grid, self.global_step, path)
