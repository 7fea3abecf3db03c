"""stderr output for progress and logs (stdout is kept for tables and machine-readable results)."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False)


def info(message: str) -> None:
    console.print(message)
