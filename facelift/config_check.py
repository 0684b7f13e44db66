"""Config values that cannot work, refused before any work with one line naming the key.

Without these checks such a value surfaces minutes later (after the synthetic set is written, the weights are read
or the first batch is drawn), deep inside a constructor wrapped by Hydra's instantiate, as a traceback that names a
Python argument rather than the key the user typed. Checks run only on keys the config has (GS-LRM and MVDiffusion
configs differ), and the first problem found stops the run as a `ConfigError`.
"""

from __future__ import annotations

import math
import re
from typing import get_args

from omegaconf import DictConfig, OmegaConf

from facelift.errors import ConfigError
from facelift.models.gslrm.transformer import AttentionBackend
from facelift.render.renderer import Backend
from facelift.data.image_cache import CACHE_MODES
from facelift.systems.optim import FUSED, SCHEDULES

_ABSENT = object()
RENDER_BACKENDS = get_args(Backend)
ATTENTION_BACKENDS = get_args(AttentionBackend)


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=_ABSENT)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(cfg: DictConfig, key: str, at_least: int):
    value = _get(cfg, key)
    if value is _ABSENT or value is None:
        return None
    if not _is_int(value) or value < at_least:
        raise ConfigError(key, value, f"must be a whole number >= {at_least}")
    return value


def _number(cfg: DictConfig, key: str, positive: bool = False):
    value = _get(cfg, key)
    if value is _ABSENT or value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ConfigError(key, value, f"must be a {'positive' if positive else 'non-negative'} finite number")
    return value


def _choice(cfg: DictConfig, key: str, choices) -> None:
    value = _get(cfg, key)
    if value is not _ABSENT and value not in choices:
        names = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)  # as YAML spells them
        raise ConfigError(key, value, f"unknown value; use one of {names}")


def check_views(cfg: DictConfig, node: str = "data") -> None:
    """``num_views`` / ``num_input_views`` / ``input_views`` of ``cfg.<node>`` (the keys it has that are not null)."""
    n, n_in = _int(cfg, f"{node}.num_views", 1), _int(cfg, f"{node}.num_input_views", 1)
    if n is not None and n_in is not None:
        if n_in > n:
            raise ConfigError(f"{node}.num_input_views", n_in, f"more input views than {node}.num_views={n}")
        if n_in == n and _get(cfg, f"{node}.target_has_input") is False:
            raise ConfigError(f"{node}.num_views", n, f"leaves no target view beside {n_in} input views "
                                                      f"({node}.target_has_input is false)")
    chosen = _get(cfg, f"{node}.input_views")
    if chosen not in (_ABSENT, None):
        ids = list(chosen)
        if not all(_is_int(i) and i >= 0 for i in ids) or len(set(ids)) != len(ids) or \
                (n_in is not None and len(ids) != n_in):
            raise ConfigError(f"{node}.input_views", ids, f"must list {node}.num_input_views={n_in} distinct view "
                                                          "ids >= 0")


def check_train_config(cfg: DictConfig) -> None:
    """Everything train.py can refuse from the config alone (GS-LRM and MVDiffusion runs)."""
    check_views(cfg)
    size = _int(cfg, "data.image_size", 1)
    _int(cfg, "data.batch_size_per_gpu", 1)
    _int(cfg, "data.num_workers", 0)
    _choice(cfg, "data.cache", CACHE_MODES)
    _check_step_speed(cfg)
    patch = _int(cfg, "model.net.patch_size", 1)
    if patch is not None and size is not None and size % patch:
        raise ConfigError("data.image_size", size, f"is not a multiple of model.net.patch_size={patch} (GS-LRM cuts "
                                                   "each view into square patches)")
    _choice(cfg, "model.render_backend", RENDER_BACKENDS)
    _choice(cfg, "model.net.attention_backend", ATTENTION_BACKENDS)
    if _get(cfg, "model.render_backend") == "gsplat" and _get(cfg, "trainer.accelerator") == "cpu":
        raise ConfigError("model.render_backend", "gsplat", "needs CUDA but trainer.accelerator=cpu; use auto or "
                                                            "torch")
    if _get(cfg, "model.net.patch_size") is not _ABSENT:  # GS-LRM's optimiser; MVDiffusion's has other schedules
        _choice(cfg, "model.optim.schedule", SCHEDULES)
    _number(cfg, "model.optim.lr", positive=True)
    _int(cfg, "model.optim.warmup", 0)
    loss = _get(cfg, "loss")
    for key in (loss.keys() if isinstance(loss, DictConfig) else ()):
        if str(key).endswith("_weight"):
            _number(cfg, f"loss.{key}")
    steps = _get(cfg, "trainer.max_steps")
    if steps is not _ABSENT and steps != -1:
        _int(cfg, "trainer.max_steps", 1)


def _check_step_speed(cfg: DictConfig) -> None:
    """The on-device step rule drops skipped updates inside fused AdamW: refuse a config without one."""
    _choice(cfg, "model.optim.fused", FUSED)
    if _get(cfg, "model.step_rule.on_device") is True:
        fused = _get(cfg, "model.optim.fused")
        if fused is False or (fused in ("auto", _ABSENT) and _get(cfg, "trainer.accelerator") == "cpu"):
            raise ConfigError("model.step_rule.on_device", True, "needs a fused AdamW: set model.optim.fused=true "
                                                                 "(auto is fused on CUDA only)")


def check_eval_config(cfg: DictConfig) -> None:
    """Everything eval.py can refuse before reading the checkpoint."""
    _choice(cfg, "split", ("val", "test"))
    _choice(cfg, "precision", ("fp32", "bf16"))
    _choice(cfg, "data.cache", (*CACHE_MODES, None))
    _choice(cfg, "render_backend", RENDER_BACKENDS)
    _choice(cfg, "metrics.lpips", ("auto", True, False))
    device = _get(cfg, "device")
    if device is not _ABSENT and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
        raise ConfigError("device", device, "unknown device; use auto, cpu, cuda or cuda:N")
    _int(cfg, "limit_samples", 1)
    _int(cfg, "num_workers", 0)
    _int(cfg, "turntable.frames", 0)
    _int(cfg, "turntable.size", 1)
    check_views(cfg)
    _int(cfg, "data.image_size", 1)
