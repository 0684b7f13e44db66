"""GS-LRM: posed views -> tokens -> transformer -> Gaussians. It does not render and knows no losses.

Function and weights are FaceLift's (see ``../shared/design/gslrm_spec.md``); module names are this project's,
`facelift.models.gslrm.checkpoint` maps them to and from FaceLift's checkpoint keys.
Training and inference differ only in gradient checkpointing and, when enabled, ``clip_xyz`` (a training-only clamp).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from facelift.gaussians import Gaussians
from facelift.models.gslrm.heads import GaussianHeads, pixels_in_patch_order, to_gaussians
from facelift.models.gslrm.tokenizer import PatchTokenizer, posed_image_channels
from facelift.models.gslrm.transformer import AttentionBackend, Transformer
from facelift.views import Views


@dataclass(frozen=True)
class GSLRMConfig:
    """The architecture; the defaults are the official checkpoint's (303.6 M parameters)."""

    patch_size: int = 8  # pixels per patch side; each image token yields patch_size² Gaussians
    d: int = 1024  # token width
    d_head: int = 64  # attention head width (d / d_head heads)
    n_layer: int = 24  # transformer blocks
    n_gaussians: int = 2  # learned tokens, each decoded into one free Gaussian
    sh_degree: int = 0  # colour SH degree of the predicted Gaussians
    hard_pixelalign: bool = True  # pixel Gaussians lie on their pixel's ray
    clip_xyz: bool = False  # in training, clamp pixel-aligned positions to [-1, 1] (FaceLift's training never does)
    gradient_checkpointing: bool = True  # in training, recompute each block in the backward pass
    checkpoint_keeps_attention: bool = True  # ...but keep its attention output (B·N·d per block) to skip recomputing it
    attention_backend: AttentionBackend = "auto"  # auto|cudnn|flash|efficient|math (SDPA kernel)


class GSLRM(nn.Module):
    def __init__(self, config: GSLRMConfig | None = None, **arch):
        """Either a `GSLRMConfig` or its fields as keywords (what Hydra passes)."""
        super().__init__()
        if config is not None and arch:
            raise TypeError("GSLRM takes a GSLRMConfig or keyword fields, not both")
        cfg = self.config = config if config is not None else GSLRMConfig(**arch)
        # registration order = FaceLift's state-dict order, so converted checkpoints list keys as the original
        self.learned_tokens = nn.Parameter(torch.empty(cfg.n_gaussians, cfg.d))  # [G, d]
        self.tokenizer = PatchTokenizer(cfg.patch_size, cfg.d)
        self.transformer = Transformer(cfg.d, cfg.d_head, cfg.n_layer, cfg.attention_backend,
                                       cfg.gradient_checkpointing, cfg.checkpoint_keeps_attention)
        self.heads = GaussianHeads(cfg.d, cfg.patch_size, cfg.sh_degree)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """FaceLift's initialisation: N(0, 0.02) Linear weights, truncated N(0, 0.02) learned tokens, unit norms."""
        nn.init.trunc_normal_(self.learned_tokens, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)

    def forward(self, views: Views, clip_xyz: bool | None = None) -> Gaussians:
        """``views`` [B, V] -> ``n_gaussians + V·H·W`` Gaussians per sample (learned ones first).

        ``clip_xyz``: None = the config's ``clip_xyz`` in training only; a bool overrides it (FaceLift's points-dist
        warmup trains without the clamp).
        """
        cfg = self.config
        b, v, _, h, w = views.images.shape
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(f"GS-LRM needs images whose sides are multiples of patch_size={cfg.patch_size}; "
                             f"got {w}x{h}")
        image_tokens = self.tokenizer(posed_image_channels(views))  # [B, V·h·w, d]
        learned = self.learned_tokens.expand(b, -1, -1)  # [B, G, d]
        tokens = self.transformer(torch.cat([learned, image_tokens], dim=1))  # [B, G + V·h·w, d]
        params = self.heads(*tokens.split([cfg.n_gaussians, tokens.shape[1] - cfg.n_gaussians], dim=1))

        rays_o, rays_d = (pixels_in_patch_order(r.float(), cfg.patch_size) for r in views.cameras.rays())
        return to_gaussians(params, rays_o, rays_d, cfg.n_gaussians, cfg.sh_degree, cfg.hard_pixelalign,
                            clip_xyz=cfg.clip_xyz and self.training if clip_xyz is None else clip_xyz)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
