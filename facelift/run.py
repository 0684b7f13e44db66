"""What `train.py` does once Hydra has composed the config: instantiate, fit, say where things are."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from facelift.checkpoint_io import AtomicCheckpointIO
from facelift.config_check import (check_device, check_train_config, check_train_data, check_train_files,
                                   overwritten_choices)
from facelift.errors import InputError
from facelift.weights import require_complete

log = logging.getLogger("facelift")


class ValidateAtEnd(L.Callback):
    """Stop at ``max_steps`` through ``trainer.should_stop``, which makes Lightning run one more validation pass when
    the last step is not a multiple of ``val_check_interval``: every run, a short sweep job included, ends with its
    final validation metrics in its log and in the value train.py returns."""

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud logging")


_LIT_LOGGER_TIP = _DropLitLoggerTip()


def quiet_lightning() -> None:
    """Silence two notices a user can do nothing about, each by its own message where it starts (nothing else):
    Lightning 2.6's advertisement for its cloud logger, printed whatever logger a run chose, and torch 2.14's
    FutureWarning on the ``LeafSpec()`` that Lightning's CombinedLoader builds around every DataLoader (Lightning's
    code, not ours; drop this once Lightning builds leaves with ``treespec_leaf``)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_LIT_LOGGER_TIP)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")


def metrics_location(logger) -> str | None:
    """Where a Lightning logger keeps this run's metrics: its folder (csv, tensorboard), or wandb's run folder with
    its URL (an offline run: the folder to ``wandb sync``)."""
    if getattr(logger, "log_dir", None):
        return str(logger.log_dir)
    run = getattr(logger, "experiment", None)
    if run is None or not getattr(run, "dir", None):
        return None
    folder = Path(run.dir).parent  # <save_dir>/wandb/<run>/ (files/ inside)
    return f"{folder} (wandb, offline: wandb sync {folder})" if getattr(run, "offline", False) else \
        f"{folder} (wandb: {run.url})"


def instantiate_list(node: DictConfig | None) -> list:
    """Instantiate every ``_target_`` child of a config group such as ``callbacks`` or ``logger``."""
    if not node:
        return []
    return [hydra.utils.instantiate(v) for v in node.values() if isinstance(v, DictConfig) and "_target_" in v]


def build_trainer(cfg: DictConfig, **overrides) -> L.Trainer:
    # checkpoints are renamed into place once whole: a crash never leaves a truncated last.ckpt (checkpoint_io.py)
    if "plugins" not in cfg.trainer:  # a config's own plugins (a cloud checkpoint writer, say) take precedence
        overrides.setdefault("plugins", [AtomicCheckpointIO()])
    return hydra.utils.instantiate(cfg.trainer, callbacks=instantiate_list(cfg.get("callbacks")),
                                   logger=instantiate_list(cfg.get("logger")) or False, **overrides)


def train(cfg: DictConfig) -> float | None:
    """Fit ``cfg.model`` (a LightningModule) on ``cfg.data`` (a LightningDataModule); returns the monitored metric."""
    check_train_config(cfg)  # before any work: a value that cannot work costs one line, not minutes
    hc = HydraConfig.get() if HydraConfig.initialized() else None  # None: tests call train() on composed configs
    check_device(cfg, dict(hc.runtime.choices) if hc else {})
    check_train_files(cfg)
    check_train_data(cfg)
    if hc:
        note = overwritten_choices(cfg, hc.job.config_name, list(hc.overrides.task))
        if note:
            log.warning(note)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        if not Path(ckpt_path).is_file():
            raise InputError(ckpt_path, "checkpoint to resume from not found (ckpt_path)")
        require_complete(ckpt_path)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    out = Path(cfg.paths.output_dir)
    # plain containers: the data module's hyper-parameters go into checkpoints, which load with weights_only=True
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model: L.LightningModule = hydra.utils.instantiate(cfg.model)
    quiet_lightning()
    trainer = build_trainer(cfg)
    log.info("run directory: %s (resolved config in .hydra/config.yaml)", out)
    params = list(model.parameters())  # Lightning's summary table is off: it prints "FLOPs 0" without an input
    log.info("model: %s, %.3g M parameters (%.3g M trainable)", type(model).__name__,
             sum(p.numel() for p in params) / 1e6, sum(p.numel() for p in params if p.requires_grad) / 1e6)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        ckpt_dir = out / "checkpoints"
        log.info("final metrics: %s", ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        log.info("checkpoints: %s  (resume: ckpt_path=%s; evaluate: python eval.py ckpt=%s)", ckpt_dir,
                 ckpt_dir / "last.ckpt", ckpt_dir / "last.ckpt")
        for lg in trainer.loggers:
            if metrics_location(lg):
                log.info("metrics log: %s", metrics_location(lg))
    return optimized_value(cfg.get("optimized_metric"), metrics)


def optimized_value(key: str | None, metrics: dict[str, float]) -> float | None:
    """The value a Hydra sweeper minimises or maximises: ``metrics[key]``; NaN (a failed trial to Optuna, a "nan"
    in the sweep summary) when the run never logged it or it is not finite; None without a key."""
    if not key:
        return None
    value = metrics.get(key, math.nan)
    if not math.isfinite(value):
        log.warning("optimized_metric=%s: %s", key, "not finite" if key in metrics else
                    f"never logged (logged: {', '.join(sorted(metrics)) or 'nothing'})")
        return math.nan
    return value
