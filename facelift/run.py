"""What `train.py` does once Hydra has composed the config: instantiate, fit, say where things are."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("facelift")


def register_resolvers() -> None:
    """Resolvers the configs use; idempotent so entry points and tests can call it freely."""
    if not OmegaConf.has_resolver("join"):
        OmegaConf.register_new_resolver("join", lambda xs: "_".join(str(x) for x in xs) if xs else "run")


def instantiate_list(node: DictConfig | None) -> list:
    """Instantiate every ``_target_`` child of a config group such as ``callbacks`` or ``logger``."""
    if not node:
        return []
    return [hydra.utils.instantiate(v) for v in node.values() if isinstance(v, DictConfig) and "_target_" in v]


def build_trainer(cfg: DictConfig, **overrides) -> L.Trainer:
    return hydra.utils.instantiate(cfg.trainer, callbacks=instantiate_list(cfg.get("callbacks")),
                                   logger=instantiate_list(cfg.get("logger")) or False, **overrides)


def train(cfg: DictConfig) -> float | None:
    """Fit ``cfg.model`` (a LightningModule) on ``cfg.data`` (a LightningDataModule); returns the monitored metric."""
    L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model: L.LightningModule = hydra.utils.instantiate(cfg.model)
    trainer = build_trainer(cfg)
    log.info("run directory: %s (resolved config in .hydra/config.yaml)", out)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    ckpt_dir = out / "checkpoints"
    log.info("checkpoints: %s  (resume with ckpt_path=%s)", ckpt_dir, ckpt_dir / "last.ckpt")
    for lg in trainer.loggers:
        if getattr(lg, "log_dir", None):
            log.info("metrics: %s", lg.log_dir)
    return metrics.get(cfg.get("optimized_metric", ""), None)
