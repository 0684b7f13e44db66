"""Errors meant for the user: one line naming the file (or setting) and the problem, never a traceback."""

from __future__ import annotations

import functools
import re
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


class InputError(Exception):
    """Bad input data: a corrupt or missing image, a malformed camera file, a degenerate rig, a NaN batch..."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)

    def __reduce__(self):  # rebuilt from (path, problem), so it crosses process boundaries (worker pools) intact
        return type(self), (self.path, self.problem)


class MissingWeightsError(Exception):
    """A pretrained file the config points to is absent; the message says which file and how to obtain it."""


class SetupError(Exception):
    """What this machine cannot do for the config (a GPU trainer without CUDA), said with the fix."""


class ConfigError(Exception):
    """A config value that cannot work, found before any work starts: ``data.num_input_views=9: <problem>``."""

    def __init__(self, key: str, value, problem: str):
        self.key, self.value, self.problem = key, value, problem
        super().__init__(f"{key}={value}: {problem}")


def exit_on_user_error(main):
    """Wrap a CLI entry point (``main(cfg)`` of Hydra, or an argparse ``main()``): a mandatory key left unset (``???``) or a user error prints one line on
    stderr and exits with status 2; a run folder that holds nothing of the run yet is removed (an error during
    set-up leaves no empty run behind)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            cfg = args[0] if args else None  # a Hydra entry point's config; scripts with argparse pass none
            missing = sorted(OmegaConf.missing_keys(cfg)) if isinstance(cfg, DictConfig) else []
            if missing:
                raise ConfigError(missing[0], "???", f"must be given on the command line ({_usage(main)})")
            return main(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - only user errors are caught; anything else is re-raised
            user_error = _user_error_in(err)
            if user_error is None:
                raise
            _remove_unused_run_folder()
            print(f"error: {user_error}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def _usage(main) -> str:
    """The entry point's command line as its module docstring writes it in backquotes (``python eval.py ...``)."""
    doc = sys.modules[main.__module__].__doc__ or ""
    found = re.search(r"`(python [^`]+)`", doc)
    return f"usage: {found.group(1)}" if found else "add KEY=VALUE"


_USER_ERRORS = (InputError, MissingWeightsError, ConfigError, SetupError)
# torch re-raises an error of a DataLoader worker as "Caught <Name> in DataLoader worker process <n>.\nOriginal
# Traceback ...", a RuntimeError when the class cannot be rebuilt from that text; the last line is the original's
_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+")


def _user_error_in(err: BaseException | None) -> Exception | None:
    """The user error ``err`` is or wraps: Hydra's instantiate wraps what a constructor raises, once per level; a
    DataLoader worker's comes back as text, of which the original's own line is kept."""
    while err is not None:
        found = _WORKER_ERROR.match(str(err))
        if found and found.group(1) in {cls.__name__ for cls in _USER_ERRORS}:
            last = [line for line in str(err).splitlines() if line.strip()][-1]  # "module.Name: the message"
            return InputError(None, last.split(": ", 1)[1] if ": " in last else last)
        if isinstance(err, _USER_ERRORS):
            return err
        err = err.__cause__
    return None


def _remove_unused_run_folder() -> None:
    """Delete this Hydra job's output folder when it holds only Hydra's and Lightning's set-up files (the saved
    config, the job's log, a logger's hparams.yaml): the run wrote nothing of its own yet. Anything else (a
    checkpoint, metrics, renders) keeps the folder."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    out = Path(HydraConfig.get().runtime.output_dir)
    if not out.is_dir():
        return
    files = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    if all(f.parts[0] == ".hydra" or f.suffix == ".log" or f.name == "hparams.yaml" for f in files):
        shutil.rmtree(out, ignore_errors=True)
        for parent in out.parents[:2]:  # outputs/<task>/ (and a multirun's multirun/) when this run was its only one
            try:
                parent.rmdir()  # only an empty folder goes (another run may have just written into it)
            except OSError:
                break
