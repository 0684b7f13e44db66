"""`FrozenNet`: base of the pretrained networks a loss uses as fixed measuring instruments (VGG19, LPIPS).

Their weights come from files named in the config, never from training, so such a module
- never asks for gradients (every parameter has ``requires_grad = False``: no optimiser picks them up),
- stays in eval mode whatever ``train()`` says (LPIPS has dropout; Lightning calls ``train()`` on everything),
- is left out of ``state_dict()``, so a training checkpoint holds only what was trained; loading a checkpoint
  without these entries (strictly, as Lightning does) keeps the weights already read from the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor, nn

from facelift.weights import require_file

log = logging.getLogger("facelift")


class FrozenNet(nn.Module):
    def freeze(self) -> "FrozenNet":
        """Call once at the end of a subclass's ``__init__``, when every parameter exists and holds its weights."""
        self.requires_grad_(False)
        self._frozen_names = tuple(self.state_dict(keep_vars=True))  # what the checkpoint would have held
        self.register_state_dict_post_hook(_drop_own_entries)
        self.register_load_state_dict_pre_hook(_supply_own_entries)
        return self.train(False)

    def train(self, mode: bool = True) -> "FrozenNet":
        return super().train(False)


def _drop_own_entries(module: FrozenNet, state_dict: dict, prefix: str, local_metadata) -> None:
    for name in module._frozen_names:
        state_dict.pop(prefix + name, None)


def _supply_own_entries(module: FrozenNet, state_dict: dict, prefix: str, local_metadata, strict, missing_keys,
                        unexpected_keys, error_msgs) -> None:
    # A checkpoint saved by this code lacks these entries; an older one that has them loads them as they are.
    for name in module._frozen_names:
        state_dict.setdefault(prefix + name, _tensor(module, name).detach())


def _tensor(module: nn.Module, name: str) -> Tensor:
    # Looked up at load time: `.to(device)` replaces buffer objects, so references taken earlier go stale.
    owner, _, leaf = name.rpartition(".")
    sub = module.get_submodule(owner)
    return sub._parameters[leaf] if leaf in sub._parameters else sub._buffers[leaf]


def weights_file_or_random(path: str | Path | None, what: str, allow_random_init: bool, how_to_get: str) -> Path | None:
    """The existing weight file, or ``None`` (random weights) only when the config allows it and the file is absent.

    Without ``allow_random_init`` a missing file raises `MissingWeightsError`: one sentence naming it and how to get it.
    """
    absent = path is None or str(path) in ("", "None", "null") or not Path(path).expanduser().is_file()
    if allow_random_init and absent:
        log.warning("%s: no file at %s, so RANDOM weights (allow_random_init is meant for tests only)", what, path)
        return None
    return require_file(path, what, how_to_get)
