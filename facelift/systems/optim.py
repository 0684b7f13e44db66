"""Optimiser pieces shared by the systems: layer freezing by name pattern, AdamW decay groups, warmup + decay LR."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger("facelift")

SCHEDULES = ("cosine", "linear", "constant")  # what follows the warmup


def _pattern_to_regex(pattern: str) -> re.Pattern:
    """``transformer_layers.0-11`` -> matches parameters of layers 0..11; ``*`` is a wildcard; a prefix matches its subtree."""
    def expand(match: re.Match) -> str:
        lo, hi = int(match.group(1)), int(match.group(2))
        return "(?:" + "|".join(str(i) for i in range(lo, hi + 1)) + ")"

    parts = re.split(r"(\d+-\d+|\*)", pattern)
    regex = "".join(expand(re.match(r"(\d+)-(\d+)", p)) if re.fullmatch(r"\d+-\d+", p)
                    else ".*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(rf"^{regex}(?:\..*)?$")


def freeze_parameters(module: nn.Module, patterns: list[str],
                      alias: Callable[[str], str | None] | None = None) -> list[str]:
    """Set ``requires_grad=False`` on parameters whose names match any pattern; returns the frozen names.

    ``alias`` gives a second name a pattern may match (FaceLift's checkpoint names for GS-LRM, so that the fork's
    ``transformer_layers.0-11`` works as written).
    """
    regexes = [_pattern_to_regex(p) for p in patterns]
    used, frozen = set(), []
    for name, p in module.named_parameters():
        names = [n for n in (name, alias(name) if alias else None) if n]
        hits = {i for i, r in enumerate(regexes) if any(r.match(n) for n in names)}
        if hits:
            p.requires_grad_(False)
            frozen.append(name)
            used |= hits
    unused = [pat for i, pat in enumerate(patterns) if i not in used]
    if unused:
        raise ValueError(f"freeze patterns {unused} match no parameter (names look like "
                         f"'{next(iter(dict(module.named_parameters())))}')")
    if frozen:
        log.info("froze %d parameter tensors (%s)", len(frozen), ", ".join(patterns))
    return frozen


def adamw_with_decay_groups(module: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float,
                            eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW where weight decay applies to tensors of 2+ dimensions only (not norms or biases), as FaceLift."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = bool(params) and params[0].is_cuda
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)


def warmup_then_decay(optimizer: torch.optim.Optimizer, warmup: int, total: int,
                      schedule: str = "cosine") -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup`` steps, then ``cosine`` / ``linear`` decay to 0 at ``total``, or ``constant``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {schedule!r} (cosine, linear or constant)")

    def factor(step: int) -> float:
        if step < warmup:  # starts at 0 like transformers' schedules, which FaceLift uses
            return step / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
