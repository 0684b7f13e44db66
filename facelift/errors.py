"""Errors meant for the user: one line naming the file (or setting) and the problem, never a traceback."""

from __future__ import annotations

import functools
import sys
from pathlib import Path


class InputError(Exception):
    """Bad input data: a corrupt or missing image, a malformed camera file, a degenerate rig, a NaN batch..."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)

    def __reduce__(self):  # rebuilt from (path, problem), so it crosses process boundaries (worker pools) intact
        return type(self), (self.path, self.problem)


class MissingWeightsError(Exception):
    """A pretrained file the config points to is absent; the message says which file and how to obtain it."""


class ConfigError(Exception):
    """A config value that cannot work, found before any work starts: ``data.num_input_views=9: <problem>``."""

    def __init__(self, key: str, value, problem: str):
        self.key, self.value, self.problem = key, value, problem
        super().__init__(f"{key}={value}: {problem}")


def exit_on_user_error(main):
    """Wrap a CLI entry point: user errors print one line on stderr and exit with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - only user errors are caught; anything else is re-raised
            user_error = _user_error_in(err)
            if user_error is None:
                raise
            print(f"error: {user_error}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def _user_error_in(err: BaseException | None) -> Exception | None:
    """The user error ``err`` is or wraps: Hydra's instantiate wraps what a constructor raises, once per level."""
    while err is not None:
        if isinstance(err, (InputError, MissingWeightsError, ConfigError)):
            return err
        err = err.__cause__
    return None
