"""Hydra callback of `conf/hparams_search/*`: the Optuna study's SQLite folder exists before the sweeper opens it.

Hydra calls ``on_multirun_start`` before it builds the sweeper, which opens (and, the first time, creates) the study's
database at once; SQLite makes the file but not its folder, and ``outputs/<task>/optuna/`` does not exist on a fresh
checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SQLITE = "sqlite:///"  # an absolute path follows (sqlite:////abs/file.db) or one relative to the cwd


class StorageFolder(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        storage = config.hydra.sweeper.get("storage")
        if isinstance(storage, str) and storage.startswith(SQLITE):
            Path(storage[len(SQLITE):]).parent.mkdir(parents=True, exist_ok=True)
