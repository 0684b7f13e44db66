"""Hyper-parameters as plain containers, so that checkpoints load with ``torch.load(weights_only=True)``.

Hydra hands systems OmegaConf nodes; pickled into a checkpoint they would need ``weights_only=False`` to load back,
which lets a downloaded file run code. Converted to dicts and lists (resolved), they load safely.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from omegaconf import DictConfig, ListConfig, OmegaConf


def make_plain(hparams: MutableMapping) -> None:
    """Replace every OmegaConf node among ``hparams``' values by its resolved plain container, in place."""
    for key, value in hparams.items():
        if isinstance(value, (DictConfig, ListConfig)):
            hparams[key] = OmegaConf.to_container(value, resolve=True)
