"""Every pretrained file is resolved here from a local path; nothing is downloaded at run time.

A missing file raises `MissingWeightsError` with one sentence: which file, and how to obtain it (`WeightPath`); a run
that needs several checks them all first and names every missing one in one message (`raise_if_missing`).
Checkpoints are read with ``torch.load(weights_only=True)`` (a downloaded ``.pt`` cannot run code) or as
``.safetensors``; a legacy pickle that needs more than tensors and plain containers is refused with an explanation.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from facelift.errors import InputError, MissingWeightsError


@dataclass(frozen=True)
class WeightPath:
    """One pretrained file (or folder) a run needs: what it is, where the config points, how to obtain it.

    ``how_to_get`` is advice for the file the project expects (FaceLift's name for it, ``expected_name``); a path the
    user pointed elsewhere gets none, since downloading FaceLift's file would not put anything at their path.
    """

    what: str  # e.g. "GS-LRM checkpoint"
    path: str | Path | None
    how_to_get: str  # e.g. "download ... there"
    key: str | None = None  # the config key that sets the path, named in the sentence
    folder: bool = False  # a folder (a diffusers pipeline, a model cache) instead of a file
    expected_name: str | None = None  # the project's file name; None: ``how_to_get`` fits any path

    def problem(self) -> str | None:
        """One sentence on what is wrong with the path, or None when it is usable."""
        key, fix = (f" ({self.key})", f"point {self.key} at") if self.key else ("", "give")
        if self.path is None or str(self.path) in ("", "None", "null"):
            return f"no path is configured for {self.what}{key}; {self.how_to_get}"
        path = Path(self.path).expanduser()
        if path.is_dir() and not self.folder:
            return f"{self.what}: {path} is a folder, not a file; {fix} the file itself"
        if path.is_file() and self.folder:
            return f"{self.what}: {path} is a file, not a folder; {fix} the folder itself"
        if path.exists():
            return None
        if self.expected_name is not None and path.name != self.expected_name:  # the user's own path
            return f"{self.what} not found at {path}{key}; check the path"
        return f"{self.what} not found at {path}{key}; {self.how_to_get}"

    def require(self) -> Path:
        """The existing path, else `MissingWeightsError` with `problem`'s sentence."""
        problem = self.problem()
        if problem is not None:
            raise MissingWeightsError(problem)
        return Path(self.path).expanduser()


def raise_if_missing(problems: list[str]) -> None:
    """One `MissingWeightsError` for every missing weight at once (a run learns all it lacks, not one per try):
    one problem is its sentence; several are a heading line and one line each."""
    if len(problems) == 1:
        raise MissingWeightsError(problems[0])
    if problems:
        raise MissingWeightsError(f"{len(problems)} weights are missing (nothing was run):\n"
                                  + "\n".join(f"  - {p}" for p in problems))


def require_file(path: str | Path | None, what: str, how_to_get: str, key: str | None = None,
                 expected_name: str | None = None) -> Path:
    """Return ``path`` if it is an existing file, else raise one sentence naming it and how to get it."""
    return WeightPath(what, path, how_to_get, key, False, expected_name).require()


def require_dir(path: str | Path | None, what: str, how_to_get: str, key: str | None = None,
                expected_name: str | None = None) -> Path:
    """Like `require_file`, for a folder (a diffusers pipeline folder, a model cache)."""
    return WeightPath(what, path, how_to_get, key, True, expected_name).require()


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
    return read_torch_file(path)


def read_torch_file(path: str | Path, map_location="cpu", weights_only: bool | None = True):
    """``torch.load`` where every way a file can be unreadable is one sentence naming it, not torch's traceback."""
    path = require_complete(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except (RuntimeError, EOFError, OSError) as err:  # a damaged archive: torch's reader fails deep inside
        raise InputError(path, f"checkpoint is corrupt: torch.load cannot read it ({str(err).splitlines()[0][:160]})"
                         ) from None
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):  # not a refused class: the bytes themselves do not parse
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            raise InputError(path, f"checkpoint is corrupt or not a torch file: its contents do not parse "
                                   f"({lines[-2][:160] if len(lines) > 1 else lines[0][:160]})") from None
        raise InputError(
            path,
            f"a pickle that needs more than tensors to load ({str(err).splitlines()[0][:160]}); it is "
            "refused because loading it could run arbitrary code - re-save its state dict with "
            "torch.save({'model': state_dict}) in a trusted environment, or convert it to .safetensors") from None


def require_complete(path: str | Path) -> Path:
    """Refuse an empty or truncated torch file with one sentence naming it.

    ``torch.save`` writes a zip archive whose directory comes last, so a file cut short (a crash or a full disk
    while it was written, an interrupted copy) starts like a zip but has no directory; torch would only say "failed
    finding central directory". The check reads the file's two ends, not its body. Legacy (non-zip) files pass."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise InputError(path, "checkpoint file is empty (cut short while it was written?); use another checkpoint")
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise InputError(path, "checkpoint is truncated (cut short while it was written, by a crash, a full disk or "
                               "an interrupted copy); use an intact copy or another checkpoint, e.g. an earlier "
                               "step_*.ckpt of the same run")
    return path
