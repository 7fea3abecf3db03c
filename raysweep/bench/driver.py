"""``raysweep bench driver``'s entry points; the benchmark is :mod:`raysweep.sweep.driver_bench`
(it drives Ray Tune and Optuna itself, so it lives where Ray does)."""

from __future__ import annotations

from raysweep.sweep.driver_bench import (
    GOAL_SECONDS_PER_TRIAL,
    SAMPLERS,
    measure_sampler,
    run_driver_bench,
    write_driver_report,
)

__all__ = ["SAMPLERS", "GOAL_SECONDS_PER_TRIAL", "measure_sampler", "run_driver_bench",
           "write_driver_report"]
