"""SIGTERM handled like Ctrl-C, for every long-running command (sweeps, suites)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["sigterm_as_sigint"]


@contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``, a pod's shutdown) raises ``KeyboardInterrupt`` as Ctrl-C
    does, so the command ends its MLflow runs and saves its state instead of vanishing."""
    def handler(signum: int, frame: Any) -> None:
        signal.raise_signal(signal.SIGINT)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
