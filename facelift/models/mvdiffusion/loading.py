"""Make an `MVDiffusionPipeline`: from a local diffusers pipeline folder (FaceLift's ``pipeckpts/`` or SD2.1-unclip),
or with random weights from architecture configs (tests, benchmarks; only when a config says so explicitly).

Nothing is downloaded: every component is read from its subfolder with ``local_files_only=True``; a missing
subfolder raises `MissingWeightsError` naming it. The text encoder is never loaded: the per-view prompt embeddings
are fixed tensors read from a file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from facelift.errors import InputError, MissingWeightsError
from facelift.models.mvdiffusion import architecture
from facelift.models.mvdiffusion.pipeline import ClipPreprocess, MVDiffusionPipeline
from facelift.models.mvdiffusion.unet import build_unet, load_unet
from facelift.weights import load_checkpoint, require_dir, require_file

log = logging.getLogger("facelift")

HOW_TO_GET = ("copy the complete diffusers pipeline folder there (FaceLift's checkpoints/mvdiffusion/pipeckpts from "
              "the Hugging Face repo wlyu/OpenFaceLift, or stabilityai/stable-diffusion-2-1-unclip to train from SD)")
PROMPT_EMBEDS_HOW_TO_GET = "copy FaceLift's mvdiffusion/data/fixed_prompt_embeds_6view/clr_embeds.pt there"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def load_prompt_embeds(path: str | Path) -> Tensor:
    """The fixed per-view prompt embeddings ``[V, T, D]`` (FaceLift: clr_embeds.pt, float16 [6, 77, 1024]) as fp32."""
    path = require_file(path, "MVDiffusion per-view prompt embeddings", PROMPT_EMBEDS_HOW_TO_GET)
    embeds = load_checkpoint(path)
    if not isinstance(embeds, Tensor) or embeds.dim() != 3:
        raise InputError(path, f"expected one tensor [views, tokens, dim], got {type(embeds).__name__} "
                               f"{tuple(getattr(embeds, 'shape', ()))}")
    return embeds.float()


def load_pipeline(folder: str | Path, prompt_embeds: str | Path, unet_dir: str | Path | None = None,
                  unet_overrides: dict | None = None, scheduler_class: str | None = None, dtype: str = "float32",
                  noise_level: int = 0) -> MVDiffusionPipeline:
    """Every component from ``folder``'s subfolders, local files only.

    ``unet_dir``: take the UNet from another ``unet/`` folder (a fine-tuned one exported by training).
    ``unet_overrides``: UNet config changes, e.g. to turn SD2.1-unclip's UNet into the 6-view one.
    ``scheduler_class``: a diffusers scheduler class name to sample with instead of the folder's (same config).
    """
    folder = require_dir(folder, "MVDiffusion pipeline folder", HOW_TO_GET)
    dt = torch_dtype(dtype)

    def sub(name: str) -> Path:
        return require_dir(folder / name, f"MVDiffusion pipeline component {name}/ of {folder}", HOW_TO_GET)

    try:
        vae = AutoencoderKL.from_pretrained(sub("vae"), local_files_only=True, torch_dtype=dt)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(sub("image_encoder"), local_files_only=True,
                                                                      dtype=dt)
        normalizer = StableUnCLIPImageNormalizer.from_pretrained(sub("image_normalizer"), local_files_only=True)
        noising = DDPMScheduler.from_pretrained(sub("image_noising_scheduler"), local_files_only=True)
    except OSError as err:  # a subfolder without its weights or config
        raise MissingWeightsError(f"incomplete MVDiffusion pipeline folder {folder} ({str(err).splitlines()[0]}); "
                                  f"{HOW_TO_GET}") from None
    scheduler = load_scheduler(sub("scheduler"), scheduler_class)
    clip = read_clip_preprocess(sub("feature_extractor"))
    unet = load_unet(unet_dir if unet_dir else sub("unet"), unet_overrides, dt)
    log.info("MVDiffusion pipeline from %s: sampler %s, %s", folder, type(scheduler).__name__, dt)
    return MVDiffusionPipeline(unet, vae.eval(), image_encoder.eval(), normalizer.eval(), noising, scheduler,
                               load_prompt_embeds(prompt_embeds), clip, noise_level)


def load_scheduler(folder: Path, class_name: str | None = None) -> SchedulerMixin:
    """The folder's scheduler class (from its ``_class_name``) or ``class_name``, with the folder's config."""
    config_file = require_file(folder / "scheduler_config.json", "MVDiffusion scheduler config", HOW_TO_GET)
    config = json.loads(config_file.read_text())
    name = class_name or config.get("_class_name", "DDIMScheduler")
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ValueError(f"{name!r} is not a diffusers scheduler class (from {config_file} or scheduler_class)")
    return cls.from_config(config)


def read_clip_preprocess(folder: Path) -> ClipPreprocess:
    path = require_file(folder / "preprocessor_config.json", "CLIP preprocessing config", HOW_TO_GET)
    cfg = json.loads(path.read_text())
    crop = cfg.get("crop_size", 224)
    size = crop["height"] if isinstance(crop, dict) else int(crop)
    return ClipPreprocess(size=size, mean=tuple(cfg["image_mean"]), std=tuple(cfg["image_std"]))


def build_random_pipeline(unet: dict, vae: dict, image_encoder: dict, allow_random_init: bool = False,
                          scheduler: dict | None = None, prompt_tokens: int = architecture.PROMPT_TOKENS,
                          seed: int = 0, dtype: str = "float32") -> MVDiffusionPipeline:
    """A pipeline with RANDOM weights from architecture configs (no file read): tests and benchmarks only.

    The prompt embeddings are random too ([num_views, prompt_tokens, cross_attention_dim]), which is honest for a
    random UNet: they only need to differ per view.
    """
    if not allow_random_init:
        raise ValueError("build_random_pipeline makes random weights; set allow_random_init: true to mean it "
                         "(tests and benchmarks only)")
    log.warning("MVDiffusion pipeline with RANDOM weights (allow_random_init)")
    dt = torch_dtype(dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_unet(dict(unet))
        autoencoder = AutoencoderKL(**dict(vae))
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**dict(image_encoder)))
    gen = torch.Generator().manual_seed(seed)
    views = net.settings.num_views
    prompts = torch.randn(views, prompt_tokens, net.config.cross_attention_dim, generator=gen)
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=encoder.config.projection_dim)
    sampler = DDIMScheduler(**dict(scheduler or architecture.SCHEDULER))
    noising = DDPMScheduler(**architecture.IMAGE_NOISING_SCHEDULER)
    clip = ClipPreprocess(size=encoder.config.image_size)
    pipe = MVDiffusionPipeline(net.eval(), autoencoder.eval(), encoder.eval(), normalizer.eval(), noising, sampler,
                               prompts, clip)
    return pipe if dt == torch.float32 else pipe.to(dtype=dt)
