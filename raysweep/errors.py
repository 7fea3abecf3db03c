"""Exceptions that mean "the user asked for something wrong".

The CLI turns every :class:`UserError` into one line on stderr and exit code 2, with no
traceback; anything else is a bug or a runtime failure (exit code 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UserError", "ConfigError", "DataError", "did_you_mean"]


class UserError(Exception):
    """A mistake in the user's input: a bad value, a missing file, an unknown name."""


class ConfigError(UserError, ValueError):
    """A configuration value (YAML field, CLI option, method config) is invalid."""


class DataError(UserError):
    """A dataset is missing, corrupt, or cannot produce the requested split."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
