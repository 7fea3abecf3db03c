"""Synthetic outputs with exactly known accuracies (shared by the metrics tests)."""

from __future__ import annotations

import numpy as np

from raysweep.metrics import ModelOutputs, SplitOutputs


def split_with_acc(labels: np.ndarray, n_correct: int, num_classes: int, *,
                   margin: float = 5.0, seed: int = 0) -> SplitOutputs:
    """Logits whose arg-max is right for the first ``n_correct`` rows and wrong for the rest."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 0.1, size=(len(labels), num_classes)).astype(np.float32)
    target = labels.copy()
    target[n_correct:] = (labels[n_correct:] + 1) % num_classes
    logits[np.arange(len(labels)), target] += margin
    return SplitOutputs(logits, labels)


def outputs_with_acc(acc: dict[str, float], *, sizes: dict[str, int] | None = None,
                     num_classes: int = 4, seed: int = 0,
                     forget_labels: np.ndarray | None = None) -> ModelOutputs:
    """A ``ModelOutputs`` with the given accuracy per split (rounded to whole samples)."""
    sizes = sizes or {"forget": 40, "retain": 120, "val": 40, "test": 80}
    splits = {}
    for i, (name, n) in enumerate(sizes.items()):
        if name == "forget" and forget_labels is not None:
            labels = np.asarray(forget_labels)
        else:
            labels = np.arange(n) % num_classes
        splits[name] = split_with_acc(labels, round(acc[name] * len(labels)), num_classes,
                                      seed=seed + i)
    return ModelOutputs(splits)
