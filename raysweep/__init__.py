"""raysweep: tune and benchmark machine-unlearning methods with Ray Tune, Optuna and MLflow.

The Python API (:mod:`raysweep.api`; loaded on first use, so ``import raysweep`` stays light):

* ``raysweep.run(spec)``           run a sweep (YAML path, dict or SweepSpec) -> its outcome
* ``raysweep.leaderboard(...)``    the leaderboard as a pandas DataFrame of raw values
* ``raysweep.load_sweep(id)``      a sweep's status, spec, leaderboard and Optuna study
* ``raysweep.sweeps()``            every sweep on this machine as a DataFrame

Where things live:

* ``raysweep.data``     datasets (embedded and local-directory loaders) and forget scenarios
* ``raysweep.models``   ``create_model(name, num_classes, ...)`` over timm/torchvision/transformers
* ``raysweep.workload`` original model + retrain oracle, trained once and cached by content hash
* ``raysweep.methods``  one module per unlearning method, registered with ``@register_method``
* ``raysweep.metrics``  accuracies, MIA (logistic regression, CatBoost), ZRF, JS, SAPE, objective
* ``raysweep.sweep``    Ray Tune trainable, Optuna search, MLflow tracking (the only Ray/MLflow
                        code)
* ``raysweep.bench``    regression suites and reports
* ``raysweep.cli``      the ``raysweep`` command
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "run", "leaderboard", "load_sweep", "sweeps"]

_API = frozenset({"run", "leaderboard", "load_sweep", "sweeps"})


def __getattr__(name: str) -> Any:
    # Lazy: the API pulls in MLflow/pandas (and Ray for run) only when first used.
    if name in _API:
        return getattr(importlib.import_module("raysweep.api"), name)
    raise AttributeError(f"module 'raysweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
