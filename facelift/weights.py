"""Every pretrained file is resolved here from a local path; nothing is downloaded at run time.

A missing file raises `MissingWeightsError` with one sentence: which file, and how to obtain it.
Checkpoints are read with ``torch.load(weights_only=True)`` (a downloaded ``.pt`` cannot run code) or as
``.safetensors``; a legacy pickle that needs more than tensors and plain containers is refused with an explanation.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from facelift.errors import InputError, MissingWeightsError


def require_file(path: str | Path | None, what: str, how_to_get: str) -> Path:
    """Return ``path`` if it is an existing file, else raise one sentence naming it and how to get it."""
    if path is None or str(path) in ("", "None", "null"):
        raise MissingWeightsError(f"No path is configured for {what}; {how_to_get}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"{what} not found at {path}; {how_to_get}")
    return path


def require_dir(path: str | Path | None, what: str, how_to_get: str) -> Path:
    """Like `require_file`, for a folder (a diffusers pipeline folder, a model cache)."""
    if path is None or str(path) in ("", "None", "null"):
        raise MissingWeightsError(f"No path is configured for {what}; {how_to_get}")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingWeightsError(f"{what} not found at {path}; {how_to_get}")
    return path


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder: every file below it in sorted order, each as its relative path then its
    bytes (so renaming or editing any file changes the hash). Identifies the weights a result came from."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(path: str | Path) -> dict:
    """Load a ``.pt``/``.pth``/``.ckpt`` (weights only) or ``.safetensors`` file into a dict of tensors/containers."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(
            path,
            f"a pickle that needs more than tensors to load ({str(err).splitlines()[0][:160]}); it is "
            "refused because loading it could run arbitrary code - re-save its state dict with "
            "torch.save({'model': state_dict}) in a trusted environment, or convert it to .safetensors") from None
