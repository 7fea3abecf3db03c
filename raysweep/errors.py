"""Exceptions that mean "the user asked for something wrong".

The CLI turns every :class:`UserError` into one line on stderr and exit code 2, with no
traceback; anything else is a bug or a runtime failure (exit code 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["UserError", "ConfigError", "DataError", "did_you_mean", "format_validation_error",
           "pick_error", "error_location", "error_message"]


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


# -- pydantic's errors as one line --------------------------------------------------------------
# Every file raysweep validates (sweeps, workloads, suites, stored specs and states, method
# configs) reports the first problem the same way: ``source: field.path: rule (got value)``.
# Duck-typed on ``exc.errors()`` so that this module does not import pydantic.

#: Pydantic puts union member and validator names into locations; they are not field names.
_LOC_NOISE = ("int", "float", "str", "bool", "none", "MethodSpace", "constrained-float")


def pick_error(errors: list[Any]) -> Any:
    """The error to report: a union (``float | int | bool | str``) yields one error per member
    for the same field; report the member the value's own type belongs to (NaN in a float
    field: "finite number", not "valid boolean")."""
    first = errors[0]
    if "input" not in first:
        return first
    same = [e for e in errors
            if e.get("input") is first["input"] and e["loc"][:-1] == first["loc"][:-1]]
    for e in same:
        if e["type"] == "finite_number":
            return e
    kind = type(first["input"]).__name__
    return next((e for e in same if e["loc"] and str(e["loc"][-1]) == kind), first)


def error_location(err: Any) -> str:
    """``a.b.0.c``: the dotted field path of one pydantic error, without union member names."""
    parts = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    return ".".join(p for p in parts if p and not p.startswith(("list[", "dict["))
                    and p not in _LOC_NOISE)


def error_message(err: Any) -> str:
    """The rule an error states, without pydantic's ``Value error, `` prefixes."""
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def format_validation_error(exc: Any, source: str, *, schema: str = "") -> str:
    """One line for a pydantic ``ValidationError``: ``source: field.path: rule (got value)``.

    ``schema`` names where the valid keys are documented (added to unknown-key errors).
    """
    err = pick_error(exc.errors())
    loc = error_location(err)
    if err["type"] == "extra_forbidden":
        parent, _, key = loc.rpartition(".")
        see = f" (see {schema})" if schema else ""
        return (f"{source}: unknown key {key!r}{' in ' + parent if parent else ''}; remove it or "
                f"check the spelling{see}")
    if err["type"] == "missing":
        return f"{source}: missing required field {loc!r}"
    got = err.get("input")
    got_s = ("" if isinstance(got, (dict, list)) or err["type"] == "value_error"
             else f" (got {got!r})")
    return f"{source}: {loc + ': ' if loc else ''}{error_message(err)}{got_s}"
