"""Optimiser pieces shared by the systems: layer freezing by name pattern, AdamW decay groups, warmup + decay LR."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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


FUSED = ("auto", True, False)  # model.optim.fused


def adamw_with_decay_groups(module: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float,
                            eps: float = 1e-8, fused: bool | str = "auto") -> torch.optim.AdamW:
    """AdamW where weight decay applies to tensors of 2+ dimensions only (not norms or biases), as FaceLift.

    ``fused``: one kernel for all parameters (``auto``: on CUDA; ``True``: wherever torch has it, the CPU too;
    ``False``: torch's per-list foreach kernels). A fused AdamW also takes the step rule's on-device skip."""
    if fused not in FUSED:
        raise ValueError(f"model.optim.fused must be auto, true or false, got {fused!r}")
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if fused == "auto":
        fused = bool(params) and params[0].is_cuda
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)


@dataclass(frozen=True)
class LRSpike:
    """A planted fault: the LR times ``factor`` for ``steps`` optimizer steps from ``at_step`` (config
    ``model.optim.lr_spike``), so that a study can see what the step rule does against a sudden blow-up."""

    at_step: int  # first optimizer step of the spike
    factor: float  # LR multiplier during the spike
    steps: int = 1  # how many optimizer steps it lasts

    def __post_init__(self) -> None:
        if self.at_step < 0 or self.steps < 1 or not self.factor > 0:
            raise ValueError(f"lr_spike needs at_step >= 0, steps >= 1 and factor > 0, got {self}")

    def factor_at(self, step: int) -> float:
        return self.factor if self.at_step <= step < self.at_step + self.steps else 1.0


def warmup_then_decay(optimizer: torch.optim.Optimizer, warmup: int, total: int, schedule: str = "cosine",
                      spike: LRSpike | Mapping | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup`` steps, then ``cosine`` / ``linear`` decay to 0 at ``total``, or ``constant``;
    ``spike`` multiplies that LR inside its window."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {schedule!r} (cosine, linear or constant)")
    if spike is not None and not isinstance(spike, LRSpike):
        try:
            spike = LRSpike(**spike)
        except TypeError as err:
            raise ValueError(f"lr_spike takes at_step, factor and steps: {err}") from None
        log.info("planted LR spike: x%g for %d step(s) from step %d", spike.factor, spike.steps, spike.at_step)

    def factor(step: int) -> float:
        return base(step) * (spike.factor_at(step) if spike is not None else 1.0)

    def base(step: int) -> float:
        if step < warmup:  # starts at 0 like transformers' schedules, which FaceLift uses
            return step / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
