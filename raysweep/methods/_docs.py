"""The README's method table, rendered from the registry (``raysweep methods table --markdown``).

``tests/test_docs.py`` compares README.md's table with :func:`readme_table`; after adding a
method or changing a registration, regenerate it with ``raysweep methods table --markdown
--write README.md`` (or paste the output of ``raysweep methods table --markdown``).
"""

from __future__ import annotations

import re
from pathlib import Path

from raysweep.methods._base import MethodInfo, get_method, list_methods

__all__ = ["readme_table", "replace_readme_table", "README_TABLE_HEADER", "REGENERATE"]

README_TABLE_HEADER = "| method | what it does | source | checked against | models |"
REGENERATE = "raysweep methods table --markdown --write README.md"
# A method table in README.md: its header row (starting "| method | what it does |"), the
# separator row, then one row per method.
_TABLE = re.compile(r"^\| method \| what it does \|.*\n\|[-| :]+\|\n(?:\| `.*\n)*", re.M)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def checked_against(info: MethodInfo) -> str:
    """The reference and, after it, every intended difference (one cell of the table)."""
    ref = info.reference or "—"
    if not info.differences:
        return ref
    return f"{ref}; intended differences: " + "; ".join(
        d.rstrip(".") for d in info.differences)


def models_cell(info: MethodInfo) -> str:
    """The kinds of model a method runs on: image and text classifiers, language models."""
    kinds = []
    if "classify" in info.tasks:
        kinds.append("image + text classifiers" if info.supports_text else "image classifiers")
    if "generate" in info.tasks:
        kinds.append("language models")
    return ", ".join(kinds)


def readme_table(names: list[str] | None = None) -> str:
    """The markdown table of the registered methods (all, or ``names``), ending in a newline."""
    rows = [README_TABLE_HEADER, "|---|---|---|---|---|"]
    for name in names if names is not None else list_methods():
        info = get_method(name)
        cells = [f"`{info.name}`", info.summary, info.paper, checked_against(info),
                 models_cell(info)]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def find_readme_table(text: str) -> str | None:
    """README.md's method table as it stands (``None`` if there is none)."""
    m = _TABLE.search(text)
    return m.group(0) if m else None


def replace_readme_table(path: str | Path, table: str | None = None) -> bool:
    """Replace the method table in ``path`` with ``table`` (default: :func:`readme_table`).

    Returns whether the file changed; raises ``ValueError`` when it has no method table.
    """
    path = Path(path)
    text = path.read_text()
    m = _TABLE.search(text)
    if m is None:
        raise ValueError(f"{path}: no method table (a line starting '| method | what it does |') "
                         f"to replace")
    new = text[:m.start()] + (table if table is not None else readme_table()) + text[m.end():]
    if new == text:
        return False
    path.write_text(new)
    return True
