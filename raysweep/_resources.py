"""Where the bundled YAML lives (sweeps, search spaces, workloads, suites).

In a checkout (and an editable install) it is the repository's top-level ``search_spaces/``;
a wheel ships the same tree as ``raysweep/search_spaces/`` (``pyproject.toml`` maps it), so a
plain ``pip install`` finds every bundled name too.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["search_spaces_dir"]

_PACKAGE = Path(__file__).resolve().parent


def search_spaces_dir() -> Path:
    """The directory of the bundled YAML: the wheel's copy, else the checkout's."""
    packaged = _PACKAGE / "search_spaces"
    return packaged if packaged.is_dir() else _PACKAGE.parent / "search_spaces"
