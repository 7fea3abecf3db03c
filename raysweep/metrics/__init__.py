"""Evaluation metrics for unlearning (pure numpy / torch / scikit-learn / CatBoost).

One forward pass per split (:func:`forward_splits`) gives a :class:`ModelOutputs`; every metric
reads those cached logits. :func:`evaluate` returns all of them as one flat dict with namespaced
keys (``forget/acc``, ``mia/lr_auc``, ``zrf``, ...; the full table is in
:mod:`raysweep.metrics._evaluate`). Definitions and the choices the papers leave open are
documented in each family's module:

* :mod:`~raysweep.metrics.accuracy`   accuracies, relative A_r / A_f, precision / recall / F1
* :mod:`~raysweep.metrics.mia`        MIA-LR (loss feature) and MIA-CatBoost (logits, TN/|D_f|)
* :mod:`~raysweep.metrics.divergence` Jensen-Shannon divergence, ZRF (batchmean reduction)
* :mod:`~raysweep.metrics.sape`       symmetric absolute percentage error
* :mod:`~raysweep.metrics.relearn`    relearn time (trains a copy; not part of ``evaluate``)
* :mod:`~raysweep.metrics.oracle`     the objective's terms: distances to the retrain oracle
* :mod:`~raysweep.metrics.objective`  the composite objective and its config
* :mod:`~raysweep.metrics.registry`   every metric key declared once: meaning, direction, unit,
  selection or report, the module that computes it (``metric_info``, ``METRICS``)

This package never imports Ray or MLflow.
"""

from __future__ import annotations

from raysweep.metrics._evaluate import SELECTION_SPLITS, evaluate, evaluate_selection
from raysweep.metrics._outputs import (
    SPLITS,
    ModelOutputs,
    SplitOutputs,
    cross_entropy,
    feature_layer,
    forward_splits,
    log_softmax,
    softmax,
)
from raysweep.metrics.accuracy import (
    accuracy,
    class_split_accuracy,
    confusion_matrix,
    per_class_accuracy,
    precision_recall_f1,
    relative_accuracy,
)
from raysweep.metrics.divergence import js_divergence, js_from_logits, zrf, zrf_reference_code
from raysweep.metrics.mia import (
    CatBoostAttackResult,
    LRAttackResult,
    balanced_subsample,
    mia_catboost,
    mia_lr,
    mia_member_rate,
    nonmember_mask,
    prediction_entropy,
)
from raysweep.metrics.objective import (
    REPORT_SPLIT,
    SELECTION_SPLIT,
    ObjectiveConfig,
    composite_score,
)
from raysweep.metrics.oracle import (
    HELDOUT_SPLITS,
    TERMS,
    loss_auc,
    membership_rows,
    oracle_distances,
    raw_terms,
    representation_probe,
    term_spread,
)
from raysweep.metrics.registry import (
    METRICS,
    MetricInfo,
    UnknownMetricError,
    metric_info,
    register_metric,
)
from raysweep.metrics.relearn import relearn_time
from raysweep.metrics.sape import sape

__all__ = [
    # outputs
    "SPLITS", "SplitOutputs", "ModelOutputs", "forward_splits", "feature_layer", "softmax",
    "log_softmax", "cross_entropy",
    # all metrics at once; the ones selection reads
    "evaluate", "evaluate_selection", "SELECTION_SPLITS",
    # accuracy
    "accuracy", "per_class_accuracy", "class_split_accuracy", "relative_accuracy",
    "precision_recall_f1", "confusion_matrix",
    # membership inference
    "mia_lr", "mia_catboost", "mia_member_rate", "prediction_entropy", "nonmember_mask",
    "balanced_subsample", "LRAttackResult", "CatBoostAttackResult",
    # divergences
    "js_divergence", "js_from_logits", "zrf", "zrf_reference_code",
    # SAPE, relearn time
    "sape", "relearn_time",
    # objective
    "composite_score", "ObjectiveConfig", "SELECTION_SPLIT", "REPORT_SPLIT",
    # oracle-referenced terms
    "TERMS", "HELDOUT_SPLITS", "raw_terms", "oracle_distances", "term_spread", "loss_auc",
    "membership_rows", "representation_probe",
    # the metric registry
    "METRICS", "MetricInfo", "metric_info", "register_metric", "UnknownMetricError",
]
