"""Shared CLI helpers: output formats and printing."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=False, width=200)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=_default))


def _default(o: Any) -> Any:
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)
