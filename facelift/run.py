"""What `train.py` does once Hydra has composed the config: instantiate, fit, say where things are."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from facelift.checkpoint_io import AtomicCheckpointIO
from facelift.config_check import check_train_config
from facelift.errors import InputError
from facelift.weights import require_complete

log = logging.getLogger("facelift")


def repository_root() -> str:
    """The checkout holding ``conf/`` (the package's parent in an editable install), else the working directory."""
    root = Path(__file__).resolve().parents[1]
    return str(root if (root / "conf").is_dir() else Path.cwd())


def register_resolvers() -> None:
    """Resolvers the configs use; idempotent so entry points and tests can call it freely."""
    if not OmegaConf.has_resolver("facelift_root"):
        # Not ${hydra:runtime.cwd}: Hydra resolves hydra.sweep.dir before its runtime node exists, so a multirun
        # whose paths lean on it stops with a traceback. The checkout's root is known without Hydra.
        OmegaConf.register_new_resolver("facelift_root", repository_root)
    if not OmegaConf.has_resolver("join"):
        OmegaConf.register_new_resolver("join", lambda xs: "_".join(str(x) for x in xs) if xs else "run")


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
    trainer = build_trainer(cfg)
    log.info("run directory: %s (resolved config in .hydra/config.yaml)", out)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        ckpt_dir = out / "checkpoints"
        log.info("final metrics: %s", ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        log.info("checkpoints: %s  (resume: ckpt_path=%s; evaluate: python eval.py ckpt=%s)", ckpt_dir,
                 ckpt_dir / "last.ckpt", ckpt_dir / "last.ckpt")
        for lg in trainer.loggers:
            if getattr(lg, "log_dir", None):
                log.info("metrics log: %s", lg.log_dir)
    return metrics.get(cfg.get("optimized_metric") or "", None)
