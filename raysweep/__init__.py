"""raysweep: tune and benchmark machine-unlearning methods with Ray Tune, Optuna and MLflow.

Where things live:

* ``raysweep.data``     datasets (embedded and local-directory loaders) and forget scenarios
* ``raysweep.models``   ``create_model(name, num_classes, ...)`` over timm/torchvision/transformers
* ``raysweep.workload`` original model + retrain oracle, trained once and cached by content hash
* ``raysweep.methods``  one module per unlearning method, registered with ``@register_method``
* ``raysweep.metrics``  accuracies, MIA (logistic regression, CatBoost), ZRF, JS, SAPE, objective
* ``raysweep.sweep``    Ray Tune trainable, Optuna search, MLflow tracking (the only Ray/MLflow code)
* ``raysweep.bench``    regression suites and reports
* ``raysweep.cli``      the ``raysweep`` command
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
