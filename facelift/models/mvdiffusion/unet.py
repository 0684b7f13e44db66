"""FaceLift's multi-view UNet on a stock diffusers `UNet2DConditionModel`.

The released UNet has exactly the parameters of a stock SD2.1-unclip UNet with an 8-channel ``conv_in``
(noisy latent + input-image latent); the multi-view behaviour lives only in the attention processors of the
``attn1`` layers (`MultiViewAttnProcessor`). So this class adds no parameters: it maps FaceLift's
``unet/config.json`` (its own block type names and extra keys) onto the stock config, keeps ``num_views`` /
``multiview_attention`` / ``sparse_mv_attention`` in the model config, and installs the processors.
"""

from __future__ import annotations

import json
import logging
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn

from facelift.errors import InputError, MissingWeightsError
from facelift.models.mvdiffusion.attention import MultiViewAttnProcessor
from facelift.weights import load_checkpoint, require_file

log = logging.getLogger("facelift")

# FaceLift's block classes are the stock ones with a multi-view transformer block inside; same parameters.
FACELIFT_BLOCK_TYPES = {"CrossAttnDownBlockMV2D": "CrossAttnDownBlock2D",
                        "UNetMidBlockMV2DCrossAttn": "UNetMidBlock2DCrossAttn",
                        "CrossAttnUpBlockMV2D": "CrossAttnUpBlock2D"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")


@dataclass(frozen=True)
class MultiViewSettings:
    """The multi-view keys of FaceLift's UNet config (defaults: its class defaults, for a stock SD config)."""

    num_views: int = 1  # views per object in the batch, consecutive: layout "(b t)"
    multiview_attention: bool = True  # attn1 spans views (False: stock per-view self-attention)
    sparse_mv_attention: bool = False  # True: keys/values = [front view ; self] (FaceLift); False: all views


def split_config(config: dict) -> tuple[dict, MultiViewSettings, bool]:
    """A UNet config.json (FaceLift's or stock) -> (stock `UNet2DConditionModel` config, multi-view settings,
    ``zero_init_conv_in``). Features of FaceLift's class that would add parameters are refused, never dropped."""
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    settings = MultiViewSettings(num_views=int(cfg.pop("num_views", 1)),
                                 multiview_attention=bool(cfg.pop("multiview_attention", True)),
                                 sparse_mv_attention=bool(cfg.pop("sparse_mv_attention", False)))
    zero_init_conv_in = bool(cfg.pop("zero_init_conv_in", True))
    unsupported = {k: cfg.pop(k) for k in ("cd_attention_last", "cd_attention_mid", "addition_downsample")
                   if k in cfg}
    unsupported = {k: v for k, v in unsupported.items() if v}
    selfattn_block = cfg.pop("selfattn_block", "custom")
    if selfattn_block != "custom":
        unsupported["selfattn_block"] = selfattn_block
    if unsupported:
        raise ValueError(f"UNet config asks for {unsupported}: layers FaceLift's released model does not use and "
                         "this project does not implement")
    cfg.pop("addition_channels", None)  # only read by addition_downsample
    for key in ("down_block_types", "up_block_types"):
        if key in cfg:
            cfg[key] = [FACELIFT_BLOCK_TYPES.get(t, t) for t in cfg[key]]
    if "mid_block_type" in cfg:
        cfg["mid_block_type"] = FACELIFT_BLOCK_TYPES.get(cfg["mid_block_type"], cfg["mid_block_type"])
    known = set(inspect.signature(UNet2DConditionModel.__init__).parameters) - {"self"}
    ignored = sorted(set(cfg) - known)
    if ignored:
        log.warning("UNet config keys unknown to diffusers %s, ignored: %s", UNet2DConditionModel.__name__, ignored)
    return {k: v for k, v in cfg.items() if k in known}, settings, zero_init_conv_in


class MultiViewUNet(UNet2DConditionModel):
    """`UNet2DConditionModel` + multi-view ``attn1`` processors; the config also holds the multi-view keys.

    Build with `build_unet` (a config dict) or `load_unet` (a diffusers ``unet/`` folder), not with ``__init__``.
    """

    @property
    def settings(self) -> MultiViewSettings:
        keys = MultiViewSettings.__dataclass_fields__
        return MultiViewSettings(**{k: self.config[k] for k in keys if k in self.config})

    def set_multiview(self, settings: MultiViewSettings) -> None:
        self.register_to_config(num_views=settings.num_views, multiview_attention=settings.multiview_attention,
                                sparse_mv_attention=settings.sparse_mv_attention)
        self.set_default_attn_processor()

    def set_default_attn_processor(self) -> None:
        """SDPA everywhere; the multi-view processor on every spatial self-attention (attn1)."""
        s = self.settings
        procs = {name: MultiViewAttnProcessor(s.num_views, s.sparse_mv_attention)
                 if s.multiview_attention and name.endswith("attn1.processor") else AttnProcessor2_0()
                 for name in self.attn_processors}
        self.set_attn_processor(procs)


def build_unet(config: dict, device: torch.device | str | None = None) -> MultiViewUNet:
    """A randomly initialised multi-view UNet from a config dict (FaceLift's keys accepted)."""
    stock, settings, _ = split_config(config)
    with torch.device(device or "cpu"):
        unet = MultiViewUNet.from_config(stock)
    unet.set_multiview(settings)
    return unet


def load_unet(folder: str | Path, overrides: dict | None = None, dtype: torch.dtype = torch.float32) -> MultiViewUNet:
    """Load a diffusers ``unet/`` folder (FaceLift's multi-view UNet or a stock SD2.1-unclip one), local files only.

    ``overrides`` change config keys before building (e.g. ``in_channels: 8, num_views: 6, sparse_mv_attention:
    true`` to start from SD2.1-unclip). A 4-channel checkpoint ``conv_in`` is widened: its weights fill the first
    channels, the new ones are zero when ``zero_init_conv_in`` (default) as FaceLift does. Any other key or shape
    mismatch is an error.
    """
    folder = Path(folder)
    config_file = require_file(folder / "config.json", "MVDiffusion UNet config",
                               "point the config at a diffusers pipeline folder with a unet/ subfolder")
    config = json.loads(config_file.read_text())
    config.update(overrides or {})
    stock, settings, zero_init_conv_in = split_config(config)
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise MissingWeightsError(f"UNet weights not found in {folder} (expected {WEIGHT_FILES[0]} or "
                                  f"{WEIGHT_FILES[1]}); copy the whole pipeline folder including unet/")
    state = load_checkpoint(weights)
    with torch.device("meta"):  # no random init of 870 M parameters that are overwritten anyway
        unet = MultiViewUNet.from_config(stock)
    _widen_conv_in(state, unet.conv_in, zero_init_conv_in, weights)
    expected = unet.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise InputError(weights, f"does not fit the UNet of {folder / 'config.json'}: missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]} (first 5 of each)")
    unet.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    unet.set_multiview(settings)
    log.info("loaded MVDiffusion UNet from %s (%s)", weights, settings)
    return unet.eval()


def _widen_conv_in(state: dict, conv_in: nn.Conv2d, zero_init: bool, path: Path) -> None:
    old = state.get("conv_in.weight")
    if old is None or old.shape[1] >= conv_in.in_channels:
        return
    if old.shape[0] != conv_in.out_channels or old.shape[2:] != conv_in.weight.shape[2:]:
        raise InputError(path, f"conv_in.weight {tuple(old.shape)} cannot be widened to {tuple(conv_in.weight.shape)}")
    fresh = nn.Conv2d(conv_in.in_channels, conv_in.out_channels, conv_in.kernel_size).weight.detach().to(old.dtype)
    fresh[:, :old.shape[1]] = old
    if zero_init:
        fresh[:, old.shape[1]:] = 0  # the new (image-latent) channels start silent: the model begins as the 4-ch one
    state["conv_in.weight"] = fresh
    log.info("conv_in widened from %d to %d input channels (%s new channels)", old.shape[1], conv_in.in_channels,
             "zero" if zero_init else "randomly initialised")
