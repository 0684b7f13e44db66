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

from facelift.errors import ConfigError, InputError, MissingWeightsError, SetupError
from facelift.losses.lpips_loss import VGG16_HOW
from facelift.losses.vgg19_weights import MATCONVNET_URL
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
    """``num_views`` / ``num_input_views`` / ``input_views`` / ``holdout_views`` of ``cfg.<node>`` (the keys it has
    that are not null)."""
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
    held = _get(cfg, f"{node}.holdout_views")
    if held not in (_ABSENT, None):
        ids = list(held)
        if not all(_is_int(i) and i >= 0 for i in ids) or len(set(ids)) != len(ids):
            raise ConfigError(f"{node}.holdout_views", ids, "must list distinct view ids >= 0")
        if chosen not in (_ABSENT, None) and set(ids) & set(chosen):
            raise ConfigError(f"{node}.holdout_views", ids, f"names input views ({node}.input_views="
                                                            f"{list(chosen)}): a held-out camera is never an input")


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


def check_device(cfg: DictConfig, choices: dict) -> None:
    """A GPU trainer where no CUDA device is visible: one line saying what to add (Lightning would stop deep in a
    traceback: "No supported gpu backend found!"). ``choices`` are Hydra's group choices (experiment, trainer)."""
    import torch

    if _get(cfg, "trainer.accelerator") not in ("gpu", "cuda") or torch.cuda.is_available():
        return
    experiment, trainer = choices.get("experiment"), choices.get("trainer")
    add, per_step, note = (_get(cfg, f"cpu_run.{k}") for k in ("add", "seconds_per_step", "note"))
    add = "trainer=cpu" if add in (_ABSENT, None) else add
    told = ([f"about {per_step:g} s a step on the CPU"] if isinstance(per_step, (int, float)) else []) + \
        ([note] if isinstance(note, str) and note else [])
    speed = f" ({'; '.join(told)})" if told else ""
    if trainer in (None, "cpu"):  # the group is the CPU one: trainer.accelerator was typed
        raise SetupError(f"trainer.accelerator={_get(cfg, 'trainer.accelerator')} but no CUDA device is visible; "
                         f"use trainer.accelerator=cpu{speed}")
    chooser = f"experiment={experiment} selects trainer={trainer}" if experiment else f"trainer={trainer}"
    raise SetupError(f"{chooser} but no CUDA device is visible; add {add}{speed}")


# Files the configs name by default: what each is and how to get it (a path the user typed gets no advice when its
# name is not one of these: the fix is their path, not a download)
KNOWN_FILES = {
    "ckpt_0000000000021125.pt": (
        "FaceLift's released GS-LRM checkpoint (it also carries the perceptual loss's VGG19)",
        "download checkpoints/gslrm/ckpt_0000000000021125.pt from the Hugging Face repo wlyu/OpenFaceLift to that "
        "path"),
    "imagenet-vgg-verydeep-19.mat": ("MatConvNet's ImageNet VGG19 (the perceptual loss)",
                                     f"download {MATCONVNET_URL} to that path"),
    "vgg16-397923af.pth": ("torchvision's ImageNet VGG16 (LPIPS's backbone)", f"{VGG16_HOW} --out that path"),
    "human_d512.ckpt": ("a human GS-LRM of d 512 / 8 layers (experiment mouse_gslrm_finetune starts from it)",
                        "train one with python train.py experiment=human_gslrm_sample and copy its "
                        "checkpoints/last.ckpt to that path, or give model.init_ckpt=PATH"),
}
_WHAT = {"model.init_ckpt": "GS-LRM weights to start from", "loss.vgg19_weights": "VGG19 of the perceptual loss",
         "loss.lpips_vgg16_weights": "VGG16 of the LPIPS loss",
         "model.val_metrics.lpips_vgg16_weights": "VGG16 of validation LPIPS"}


def _needed_files(cfg: DictConfig) -> dict[str, list[str]]:
    """``{path: [keys]}`` of every weight file this training run will read (resume ignores ``init_ckpt``)."""
    def weight(key):
        value = _get(cfg, key)
        return isinstance(value, (int, float)) and value > 0

    needed = {
        "model.init_ckpt": not _get(cfg, "ckpt_path"),
        "loss.vgg19_weights": weight("loss.perceptual_loss_weight") and _get(cfg, "loss.allow_random_init") is not True,
        "loss.lpips_vgg16_weights": weight("loss.lpips_loss_weight") and _get(cfg, "loss.allow_random_init") is not True,
        "model.val_metrics.lpips_vgg16_weights": _get(cfg, "model.val_metrics.lpips") is True and
        _get(cfg, "model.val_metrics.allow_random_init") is not True,
    }
    files: dict[str, list[str]] = {}
    for key, wanted in needed.items():
        path = _get(cfg, key)
        if wanted and path not in (_ABSENT, None, ""):
            files.setdefault(str(path), []).append(key)
    return files


def check_train_files(cfg: DictConfig) -> None:
    """Every weight file the run needs and lacks, in one line: the exact path, what it is, how to get it (the
    component that reads a file would stop at the first, after the others before it had loaded)."""
    from pathlib import Path

    problems = []
    for path, keys in _needed_files(cfg).items():
        file = Path(path).expanduser()
        if file.is_file():
            continue
        what, how = KNOWN_FILES.get(file.name, (_WHAT[keys[0]], None))
        if file.is_dir():
            problems.append(f"{', '.join(keys)}: {what}: {file} is a folder, not a file")
        else:
            problems.append(f"{', '.join(keys)}: {what} not found at {file}" + (f"; {how}" if how else ""))
    if problems:
        raise MissingWeightsError(" | ".join(problems))


def check_train_data(cfg: DictConfig) -> None:
    """The data's file lists exist (or the set is made on first use): else one line naming the list expected and
    the command that makes or fetches the set (``data_how_to_get``, set by the experiments)."""
    from pathlib import Path

    if _get(cfg, "data.synthesize") not in (_ABSENT, None) or _get(cfg, "data.data_dir") in (_ABSENT, None):
        return
    how = _get(cfg, "data_how_to_get")
    for split in ("train", "val"):
        name = _get(cfg, f"data.{split}_list")
        if name in (_ABSENT, None):
            continue
        path = Path(name) if Path(name).is_absolute() else Path(cfg.data.data_dir) / name
        if not path.is_file():
            raise InputError(path, f"{split} file list not found (data.data_dir + data.{split}_list)" +
                             (f"; {how}" if isinstance(how, str) and how else ""))


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


def _yaml(value) -> str:
    """A value as the command line / YAML spells it (true, null), not as Python prints it."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    return str(value)


def _leaves(node, prefix: str) -> dict[str, object]:
    """``{dotted.key: value}`` of every leaf under ``node`` (interpolations unresolved, as the files write them)."""
    if isinstance(node, dict):
        return {k: v for key, sub in node.items() for k, v in _leaves(sub, f"{prefix}.{key}").items()}
    return {prefix: node}


def overwritten_choices(cfg: DictConfig, config_name: str, overrides: list[str]) -> str | None:
    """One line naming the values of a group option chosen on the command line (``model=gslrm_tiny``) that the
    chosen ``experiment=`` writes over, or None. Hydra lets the command line's group choices win over an experiment's
    ``override /group:``, but the experiment's own ``group.key: value`` lines still land on the chosen option; the user
    is told which. Needs an initialised Hydra (inside an entry point or ``initialize_config_dir``)."""
    from hydra import compose

    experiment = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), None)
    groups = [o for o in overrides if "=" in o and not o.startswith(("experiment=", "hydra", "+", "~")) and
              "." not in o.split("=", 1)[0]]
    if not experiment or not groups:
        return None
    keys_set = {o.split("=", 1)[0].lstrip("+") for o in overrides if "." in o.split("=", 1)[0]}
    chosen = compose(config_name, overrides=groups)  # the same choices without the experiment
    changed = []
    for choice in groups:
        group = choice.split("=", 1)[0].replace("/", ".")
        mine = _leaves(OmegaConf.to_container(_get(chosen, group), resolve=False), group)
        final = _leaves(OmegaConf.to_container(_get(cfg, group), resolve=False), group)
        changed += [f"{k}={_yaml(final[k])} (was {_yaml(v)})" for k, v in mine.items()
                    if k in final and final[k] != v and k not in keys_set]
    if not changed:
        return None
    return (f"experiment={experiment} sets {', '.join(changed)} over {' '.join(groups)}; give KEY=VALUE on the "
            "command line to keep a value")
