"""A test-only unlearning method that fails on demand (loaded through ``RAYSWEEP_PLUGINS``).

``mode``: ``ok`` (a harmless epoch), ``raise`` (an exception), ``nan`` (a NaN loss),
``sleep`` (``seconds`` of work per epoch, to exceed a time budget), ``oserror`` (the first
attempt of each trial fails with "No space left on device", as a full disk does; the flag
files live in ``$RS_FAULT_DIR``, keyed by ``seconds``). It never changes the model,
so the trials that survive evaluate the original quickly.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from raysweep.methods import EpochEnd, MethodConfig, register_method


class FaultyConfig(MethodConfig):
    mode: Literal["ok", "raise", "nan", "sleep", "oserror"] = Field(
        "ok", description="the fault to inject")
    seconds: float = Field(2.0, ge=0, description="sleep per epoch in mode sleep")
    epochs: int = Field(2, ge=1, description="epochs")


class InjectedFault(RuntimeError):
    """The exception of mode ``raise``."""


@register_method("faulty", config=FaultyConfig, paper="test fixture")
def faulty(model, data, cfg: FaultyConfig, ctx) -> Iterator[EpochEnd]:
    """Fails on demand (tests only)."""
    for epoch in range(1, cfg.epochs + 1):
        if cfg.mode == "raise":
            raise InjectedFault(f"injected fault at epoch {epoch}")
        if cfg.mode == "sleep":
            time.sleep(cfg.seconds)
        if cfg.mode == "oserror":
            flag = Path(os.environ["RS_FAULT_DIR"]) / f"oserror-{cfg.seconds:g}"
            if not flag.exists():
                flag.write_text("failed once")
                raise OSError(errno.ENOSPC, "No space left on device")
        loss = float("nan") if cfg.mode == "nan" else 0.1
        yield EpochEnd(epoch, {"loss": loss})
