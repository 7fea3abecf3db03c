"""A test-only unlearning method that fails on demand (loaded through ``RAYSWEEP_PLUGINS``).

``mode``: ``ok`` (a harmless epoch), ``raise`` (an exception), ``nan`` (a NaN loss),
``sleep`` (``seconds`` of work per epoch, to exceed a time budget). It never changes the model,
so the trials that survive evaluate the original quickly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from raysweep.methods import EpochEnd, MethodConfig, register_method


class FaultyConfig(MethodConfig):
    mode: Literal["ok", "raise", "nan", "sleep"] = Field("ok", description="the fault to inject")
    seconds: float = Field(2.0, ge=0, description="sleep per epoch in mode sleep")
    epochs: int = Field(2, ge=1, description="epochs")


class InjectedFault(RuntimeError):
    """The exception of mode ``raise``."""


@register_method("faulty", config=FaultyConfig, paper="test fixture")
def faulty(model, data, cfg: FaultyConfig, ctx) -> Iterator[EpochEnd]:  # noqa: ANN001
    """Fails on demand (tests only)."""
    for epoch in range(1, cfg.epochs + 1):
        if cfg.mode == "raise":
            raise InjectedFault(f"injected fault at epoch {epoch}")
        if cfg.mode == "sleep":
            time.sleep(cfg.seconds)
        loss = float("nan") if cfg.mode == "nan" else 0.1
        yield EpochEnd(epoch, {"loss": loss})
