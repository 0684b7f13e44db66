"""FaceLift's GS-LRM checkpoints <-> this project's `GSLRM`, both ways, with an architecture check.

FaceLift's ``ckpt_*.pt`` is a dict whose ``"model"`` entry is the state dict (besides optimizer, step...), named as in
``../shared/fixtures/reference/gslrm_state_dict_keys.txt``. It also carries the frozen loss networks under
``loss_calculator.*`` (the VGG19 of the perceptual loss): those are "extras", returned and written back untouched.

This project's layout ("project"): the `GSLRM` state dict under this project's names, optionally with the same
extras, in a ``.safetensors`` file or a ``.pt`` holding that flat dict; a Lightning checkpoint of a system whose
network is ``net`` is read too (its ``state_dict`` entries ``net.*``).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from facelift.errors import InputError
from facelift.models.gslrm.heads import params_per_gaussian
from facelift.models.gslrm.model import GSLRM, GSLRMConfig
from facelift.models.gslrm.tokenizer import IN_CHANNELS
from facelift.weights import load_checkpoint

Layout = Literal["official", "project"]

ARCH_FIELDS = ("patch_size", "d", "d_head", "n_layer", "n_gaussians", "sh_degree")  # what shapes depend on
EXTRA_PREFIX = "loss_calculator."  # FaceLift's frozen loss networks, stored beside the model

# (FaceLift's name, this project's name); "{i}" is a block index. The order is the state dicts' order.
RENAMES: list[tuple[str, str]] = [
    ("gaussian_position_embeddings", "learned_tokens"),
    ("patch_embedder.1.weight", "tokenizer.proj.weight"),
    ("input_layer_norm.weight", "transformer.input_norm.weight"),
    ("transformer_layers.{i}.norm1.weight", "transformer.blocks.{i}.attn_norm.weight"),
    ("transformer_layers.{i}.norm2.weight", "transformer.blocks.{i}.mlp_norm.weight"),
    ("transformer_layers.{i}.attn.to_qkv.weight", "transformer.blocks.{i}.attn.qkv.weight"),
    ("transformer_layers.{i}.attn.fc.weight", "transformer.blocks.{i}.attn.out.weight"),
    ("transformer_layers.{i}.mlp.mlp.0.weight", "transformer.blocks.{i}.mlp.fc1.weight"),
    ("transformer_layers.{i}.mlp.mlp.2.weight", "transformer.blocks.{i}.mlp.fc2.weight"),
    ("gaussian_upsampler.layernorm.weight", "heads.learned_norm.weight"),
    ("gaussian_upsampler.linear.weight", "heads.learned_proj.weight"),
    ("pixel_gaussian_decoder.0.weight", "heads.pixel_norm.weight"),
    ("pixel_gaussian_decoder.1.weight", "heads.pixel_proj.weight"),
]


def _compile(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")


_TO_PROJECT = [(_compile(official), project) for official, project in RENAMES]
_TO_OFFICIAL = [(_compile(project), official) for official, project in RENAMES]


def _rename(key: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, template in table:
        m = pattern.match(key)
        if m:
            return template.replace("{i}", m.group("i")) if "{i}" in template else template
    return None


def _state_order(key: str) -> tuple[int, int, int]:
    """Sort key of a project name in `GSLRM`'s own order (files such as .safetensors may store keys sorted)."""
    for j, (pattern, _) in enumerate(_TO_OFFICIAL):
        m = pattern.match(key)
        if m:
            block = m.groupdict().get("i")
            return (1, int(block), j) if block is not None else (0 if j < _FIRST_BLOCK_ENTRY else 2, 0, j)
    return (3, 0, 0)


_FIRST_BLOCK_ENTRY = next(j for j, (official, _) in enumerate(RENAMES) if "{i}" in official)


def official_name(project_key: str) -> str | None:
    """FaceLift's name of one of this project's `GSLRM` parameters (None for a name it does not know)."""
    return _rename(project_key, _TO_OFFICIAL)


def split_extras(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(model entries, loss_calculator.* entries)``, each in the original order."""
    extras = {k: v for k, v in state.items() if k.startswith(EXTRA_PREFIX)}
    return {k: v for k, v in state.items() if k not in extras}, extras


def official_to_project(state: dict[str, Tensor], source: str | Path | None = None) -> dict[str, Tensor]:
    """Rename FaceLift's model keys to this project's (extras must be split off first)."""
    out = {}
    for key, value in state.items():
        new = _rename(key, _TO_PROJECT)
        if new is None:
            raise InputError(source, f"the checkpoint holds {key!r} {list(value.shape)}, which FaceLift's GS-LRM "
                                     "with custom Plücker rays and no view markers does not have")
        out[new] = value
    return out


def project_to_official(state: dict[str, Tensor], extras: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """This project's `GSLRM` state dict (+ extras) -> FaceLift's ``"model"`` state dict, same tensors."""
    out = {}
    for key, value in state.items():
        new = _rename(key, _TO_OFFICIAL)
        if new is None:
            raise ValueError(f"{key!r} is not a GSLRM parameter name")
        out[new] = value
    return out | dict(extras or {})


def read_state(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor], Layout]:
    """Any GS-LRM weights file -> ``(project-named state dict, extras, layout it was in)``."""
    return _state_of(load_checkpoint(path), Path(path))


def _state_of(ckpt, path: Path) -> tuple[dict[str, Tensor], dict[str, Tensor], Layout]:
    if not isinstance(ckpt, dict):
        raise InputError(path, f"holds a {type(ckpt).__name__}, not a dict of weights")
    if isinstance(ckpt.get("model"), dict):  # FaceLift's ckpt_*.pt
        state = ckpt["model"]
    elif isinstance(ckpt.get("state_dict"), dict):  # a Lightning checkpoint of a system with `net`
        state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        if not state:
            raise InputError(path, "is a Lightning checkpoint without net.* weights, so it holds no GS-LRM")
    else:
        state = ckpt
    non_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise InputError(path, f"entry {non_tensors[0]!r} is a {type(state[non_tensors[0]]).__name__}, not a tensor")
    model, extras = split_extras(state)
    if any(_rename(k, _TO_PROJECT) is not None for k in model):
        return official_to_project(model, path), extras, "official"
    return dict(sorted(model.items(), key=lambda item: _state_order(item[0]))), extras, "project"


def check_architecture(net: nn.Module, state: dict[str, Tensor], source: str | Path | None = None,
                       layout: Layout = "project") -> None:
    """Raise one sentence naming the first key whose presence or shape differs between ``net`` and ``state``."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}

    def shown(key: str) -> str:  # the key as the file names it
        return (_rename(key, _TO_OFFICIAL) or key) if layout == "official" else key

    cfg = getattr(net, "config", None)
    model_desc = "this model" if cfg is None else "this model (" + ", ".join(
        f"{name}={getattr(cfg, name)}" for name in ARCH_FIELDS) + ")"
    for key, shape in expected.items():
        if key not in state:
            raise InputError(source, f"the checkpoint lacks {shown(key)!r}, which {model_desc} needs with shape "
                                     f"{list(shape)}")
        if tuple(state[key].shape) != shape:
            raise InputError(source, f"{shown(key)!r} has shape {list(state[key].shape)} in the checkpoint but "
                                     f"{list(shape)} in {model_desc}")
    for key, value in state.items():
        if key not in expected:
            raise InputError(source, f"the checkpoint holds {shown(key)!r} {list(value.shape)}, which "
                                     f"{model_desc} does not have")


def load_official_into(net: nn.Module, path: str | Path) -> dict[str, Tensor]:
    """Load FaceLift's checkpoint (or one in this project's layout) into ``net``; return the extras.

    The architecture is checked first (one sentence on the first mismatch); weights are copied into ``net``'s own
    dtype and device. The extras (``loss_calculator.*``) come back for whoever wants them (the perceptual loss's
    VGG19 is ``loss_calculator.perceptual_loss_module.net.conv{1..16}.{weight,bias}``).
    """
    state, extras, layout = read_state(path)
    check_architecture(net, state, path, layout)
    with torch.no_grad():
        net.load_state_dict(state, strict=True)
    return extras


def save_official(path: str | Path, state: dict[str, Tensor], extras: dict[str, Tensor] | None = None) -> Path:
    """Write ``{"model": FaceLift-named state dict}`` as FaceLift's training code saves it (tensors on CPU)."""
    official = {k: v.detach().cpu() for k, v in project_to_official(state, extras).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": official}, path)
    return path


def save_project(path: str | Path, state: dict[str, Tensor], extras: dict[str, Tensor] | None = None) -> Path:
    """Write this project's layout: a flat dict of tensors (``.safetensors`` by suffix, else ``torch.save``)."""
    flat = {k: v.detach().cpu().contiguous() for k, v in (state | dict(extras or {})).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(flat, str(path))
    else:
        torch.save(flat, path)
    return path


def infer_config(state: dict[str, Tensor], source: str | Path | None = None) -> GSLRMConfig:
    """The architecture a project-named state dict implies. ``d_head`` is stored nowhere (no weight depends on it):
    it is FaceLift's 64 where ``d`` allows, else ``d``."""
    try:
        n_gaussians, d = state["learned_tokens"].shape
        patch_size = math.isqrt(state["tokenizer.proj.weight"].shape[1] // IN_CHANNELS)
        n_params = state["heads.learned_proj.weight"].shape[0]
    except KeyError as err:
        raise InputError(source, f"the checkpoint lacks {err.args[0]!r}, so it is not a GS-LRM") from None
    n_layer = len({k.split(".")[2] for k in state if k.startswith("transformer.blocks.")})
    sh_degree = next((s for s in range(4) if params_per_gaussian(s) == n_params), None)
    if sh_degree is None:
        raise InputError(source, f"the Gaussian head predicts {n_params} numbers per Gaussian, which matches no SH "
                                 "degree from 0 to 3")
    return GSLRMConfig(patch_size=patch_size, d=d, d_head=64 if d % 64 == 0 else d, n_layer=n_layer,
                       n_gaussians=n_gaussians, sh_degree=sh_degree)


def load_gslrm(path: str | Path, **overrides) -> tuple[GSLRM, Layout]:
    """A `GSLRM` (eval mode) with the weights of any GS-LRM file, and the layout the file was in: FaceLift's
    ``ckpt_*.pt``, this project's layout, or a train.py checkpoint. The architecture comes from the checkpoint's saved
    config when it has one (``d_head`` is in no weight shape), else from the weight shapes (`infer_config`);
    ``overrides`` change fields that do not touch the weights (``attention_backend``, ``gradient_checkpointing``)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    state, _, layout = _state_of(ckpt, path)
    saved = ckpt.get("hyper_parameters", {}).get("net") if isinstance(ckpt, dict) else None
    if isinstance(saved, dict):
        config = GSLRMConfig(**{k: v for k, v in saved.items() if k in GSLRMConfig.__dataclass_fields__})
    else:
        config = infer_config(state, path)
    with torch.device("meta"):  # no random init of 300 M parameters that the checkpoint replaces at once
        net = GSLRM(replace(config, **overrides))
    check_architecture(net, state, path, layout)
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval(), layout


def convert(src: str | Path, dst: str | Path, to: Layout | None = None) -> tuple[Layout, GSLRMConfig]:
    """Rewrite ``src`` (either layout) as ``dst`` in layout ``to`` (default: the other one); returns (``to``, the
    architecture, checked for consistent shapes on the meta device)."""
    state, extras, layout = read_state(src)
    config = infer_config(state, src)
    with torch.device("meta"):
        check_architecture(GSLRM(config), state, src, layout)
    to = to or ("project" if layout == "official" else "official")
    (save_official if to == "official" else save_project)(dst, state, extras)
    return to, config
