"""Sweeps: the only package that imports Ray (and, in ``tracking``, MLflow).

* :mod:`~raysweep.sweep.space`       the sweep / search-space YAML schema (no Ray, no Optuna)
* :mod:`~raysweep.sweep.search`      YAML -> OptunaSearch (samplers, seeds, concurrency), ASHA
* :mod:`~raysweep.sweep.trainable`   the Ray Tune function trainable: the run engine
                                     (:mod:`raysweep.engine`) plus checkpoints and failure markers
* :mod:`~raysweep.sweep.tasks`       plain Ray tasks (suite runs with ``--address``)
* :mod:`~raysweep.sweep.timeline`    trial time stamps for the overhead benchmark
* :mod:`~raysweep.sweep.driver_bench` ``raysweep bench driver`` (zero-compute trials through Tune)
* :mod:`~raysweep.sweep.tracking`    MLflow runs, batched logging, leaderboard queries
* :mod:`~raysweep.sweep.leaderboard` leaderboard aggregation (mean +- std over seeds, Pareto)
* :mod:`~raysweep.sweep.runner`      run / resume / status of a sweep (Tuner, Tuner.restore)
* :mod:`~raysweep.sweep.plots`       Optuna visualisations of a stored study
* :mod:`~raysweep.sweep.local_ray`   a local Ray on 127.0.0.1 with token auth, or a cluster
* :mod:`~raysweep.sweep.jobs`        submit sweeps to a cluster through the Ray Jobs API

Importing this package is cheap: submodules load Ray only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SweepSpec", "load_sweep", "run_sweep", "resume_sweep", "sweep_status"]

_LAZY = {"SweepSpec": "raysweep.sweep.space", "load_sweep": "raysweep.sweep.space",
         "run_sweep": "raysweep.sweep.runner", "resume_sweep": "raysweep.sweep.runner",
         "sweep_status": "raysweep.sweep.runner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'raysweep.sweep' has no attribute {name!r}")
