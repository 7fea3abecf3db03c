"""Quote values for the two interpreters raysweep writes text for: MLflow filters and shells.

Ids, names and tag values can come from the command line or back from an MLflow store that
someone else writes to. Placed unquoted into a filter string they change the query; placed
unquoted into a printed command (``raysweep show``'s reproduce line) they become a second
command when the line is pasted. Everything goes through :func:`filter_literal`,
:func:`tag_equals` or :func:`shell_join` instead.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

from raysweep.errors import UserError

__all__ = ["filter_literal", "tag_equals", "tag_filter", "printable", "read_tags", "shell_join"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def filter_literal(value: object, what: str = "value") -> str:
    """``value`` as a string literal of MLflow's filter grammar.

    MLflow takes a literal in single or double quotes and has no escape inside either, so a
    value holding one kind of quote is wrapped in the other. A value holding both kinds, or
    control characters, cannot be searched for: :class:`UserError` names it.

    >>> filter_literal("ab12")
    "'ab12'"
    >>> filter_literal("it's")
    '"it\\'s"'
    """
    text = str(value)
    if _CONTROL.search(text):
        raise UserError(f"{what} {text!r}: control characters cannot be searched for in MLflow; "
                        f"give the id as printed by raysweep leaderboard")
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise UserError(f"{what} {text!r}: holds both kinds of quote and cannot be searched for in "
                    f"MLflow; give the id as printed by raysweep leaderboard")


def tag_equals(key: str, value: object, what: str | None = None) -> str:
    """One ``tags.`key` = 'value'`` clause, both parts quoted."""
    if "`" in key or _CONTROL.search(key):
        raise UserError(f"MLflow tag name {key!r}: backquotes and control characters are not "
                        f"allowed")
    return f"tags.`{key}` = {filter_literal(value, what or f'tag {key}')}"


def tag_filter(tags: Mapping[str, object]) -> str:
    """Clauses joined with ``and`` (MLflow's grammar has no ``or``)."""
    return " and ".join(tag_equals(k, v) for k, v in tags.items())


def printable(value: object) -> str:
    """``value`` with control characters (newlines, terminal escapes) shown as ``\\xNN``
    escapes, so that text read from a store cannot rewrite what the terminal shows."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", str(value))


def read_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags as read back from MLflow, with control characters in raysweep's own tags escaped
    (:func:`printable`): they end up in tables, ids and commands. MLflow's tags (a run's
    description may span lines) are left as they are."""
    return {k: printable(v) if k.startswith("raysweep.") else v for k, v in tags.items()}


def shell_join(argv: Iterable[object]) -> str:
    """A command line that a POSIX shell splits back into exactly ``argv``; control characters
    are escaped first (a pasted newline would end the command)."""
    return " ".join(shlex.quote(printable(a)) for a in argv)
