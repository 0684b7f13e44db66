"""What `train.py` does once Hydra has composed the config: instantiate, fit, say where things are."""

from __future__ import annotations

import logging
import math
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


def register_resolvers(repo_root: Path | None = None) -> None:
    """Resolvers the configs use; idempotent so entry points and tests can call it freely.

    ``${repo_root:}`` is the checkout (the folder of the entry point that calls this, else the one holding the
    ``facelift`` package). Hydra's ``${hydra:runtime.cwd}`` cannot stand in for it: Hydra resolves ``hydra.sweep.dir``
    before it knows its runtime, so a multirun (``-m``) whose paths lead there stops at start-up; and the cwd is not
    the checkout when a command is typed elsewhere."""
    if not OmegaConf.has_resolver("join"):
        OmegaConf.register_new_resolver("join", lambda xs: "_".join(str(x) for x in xs) if xs else "run")
    root = str((repo_root or Path(__file__).resolve().parents[1]).resolve())
    OmegaConf.register_new_resolver("repo_root", lambda: root, replace=True)


class ValidateAtEnd(L.Callback):
    """Stop at ``max_steps`` through ``trainer.should_stop``, which makes Lightning run one more validation pass when
    the last step is not a multiple of ``val_check_interval``: every run, a short sweep job included, ends with its
    final validation metrics in its log and in the value train.py returns."""

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


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
