"""Lightning checkpoints written atomically beside their target and read back with one-sentence errors.

Lightning's own writer (``TorchCheckpointIO``) serialises the whole checkpoint into memory, then has fsspec write it
to a temporary file in the system temp folder and *move* it into place. When that folder is on another file system
(a local /tmp and a network output folder, as on most clusters) the move is a copy, so a run killed during it leaves
a truncated ``last.ckpt`` - the very file a resume reads. Here the checkpoint streams into a hidden temporary file in
the checkpoint folder itself, is flushed to disk, and only then renamed over the target: the rename is atomic on one
file system, so ``last.ckpt`` is always the previous complete checkpoint or the new complete one. A crash leaves at
worst a hidden ``.last.*.tmp`` beside it, which no ``*.ckpt`` pattern (nor Lightning's search for ``last*``) picks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from facelift.atomic import atomic_path
from facelift.errors import InputError
from facelift.weights import read_torch_file

TEMP_SUFFIX = ".tmp"  # the ending of a checkpoint being written


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path, suffix=TEMP_SUFFIX) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it last.ckpt (power loss included)

    def load_checkpoint(self, path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "checkpoint not found")
        return read_torch_file(path, map_location, weights_only)  # a truncated or corrupt file: one sentence
