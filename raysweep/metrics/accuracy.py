"""Accuracies, relative accuracies (paper 000) and precision/recall/F1 (paper 001).

* ``accuracy`` is top-1 accuracy in ``[0, 1]``; an empty split has no accuracy (``nan``), and
  :func:`raysweep.metrics.evaluate` then leaves the key out rather than logging ``nan``.
* ``relative_accuracy(a_u, a_b) = a_u / a_b * 100`` is paper 000's A_r (on D_r) and A_f (on
  D_f): the unlearned model's accuracy as a percentage of the original (baseline) model's.
* Precision, recall and F1 are scikit-learn's macro averages over the classes that occur in
  the labels or the predictions (scikit-learn's default label set), with ``zero_division=0``:
  a class that is never predicted, such as a forgotten one, has precision 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["accuracy", "per_class_accuracy", "class_split_accuracy", "relative_accuracy",
           "precision_recall_f1", "confusion_matrix"]


def _preds(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    if len(logits) == 0:
        return np.zeros(0, np.int64)
    return logits.argmax(axis=1)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in ``[0, 1]``; ``nan`` when there are no samples."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(_preds(logits) == labels))


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class (recall per class), ``nan`` for classes without samples."""
    labels = np.asarray(labels)
    hits = _preds(logits) == labels
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        sel = labels == c
        if sel.any():
            out[c] = hits[sel].mean()
    return out


def class_split_accuracy(logits: np.ndarray, labels: np.ndarray,
                         forget_classes: Iterable[int]) -> tuple[float, float]:
    """``(accuracy on retained classes, accuracy on forgotten classes)``; ``nan`` if empty."""
    labels = np.asarray(labels)
    forgotten = np.isin(labels, np.asarray(list(forget_classes), dtype=np.int64))
    logits = np.asarray(logits)
    return (accuracy(logits[~forgotten], labels[~forgotten]),
            accuracy(logits[forgotten], labels[forgotten]))


def relative_accuracy(a_u: float, a_b: float) -> float:
    """Paper 000's relative accuracy ``a_u / a_b * 100``; ``nan`` when ``a_b`` is 0 or nan."""
    if not np.isfinite(a_b) or a_b == 0 or not np.isfinite(a_u):
        return float("nan")
    return float(a_u / a_b * 100.0)


def precision_recall_f1(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """Macro precision, recall and F1 (scikit-learn, ``zero_division=0``); nan if empty."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan"), float("nan"), float("nan")
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(labels, _preds(logits), average="macro",
                                                 zero_division=0)
    return float(p), float(r), float(f)


def confusion_matrix(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: rows are true labels, columns predictions."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(out, (labels, _preds(logits)), 1)
    return out
