from __future__ import annotations

import math

import numpy as np
import pytest

from raysweep.metrics import (
    accuracy,
    class_split_accuracy,
    confusion_matrix,
    per_class_accuracy,
    precision_recall_f1,
    relative_accuracy,
)

LABELS = np.array([0, 0, 1, 1, 2, 2])
PREDS = np.array([0, 1, 1, 1, 2, 0])
LOGITS = np.eye(3)[PREDS]


def test_accuracy_and_per_class():
    assert accuracy(LOGITS, LABELS) == pytest.approx(4 / 6)
    np.testing.assert_allclose(per_class_accuracy(LOGITS, LABELS, 4)[:3], [0.5, 1.0, 0.5])
    assert math.isnan(per_class_accuracy(LOGITS, LABELS, 4)[3])
    assert math.isnan(accuracy(np.zeros((0, 3)), np.zeros(0)))


def test_class_split_accuracy():
    retained, forgotten = class_split_accuracy(LOGITS, LABELS, (2,))
    assert retained == pytest.approx(3 / 4)
    assert forgotten == pytest.approx(1 / 2)


def test_precision_recall_f1_hand_computed():
    # class 0: P 1/2 R 1/2; class 1: P 2/3 R 1; class 2: P 1 R 1/2
    p, r, f = precision_recall_f1(LOGITS, LABELS)
    assert p == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert r == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert f == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_never_predicted_class_has_zero_precision():
    labels = np.array([0, 1, 1])
    p, _, _ = precision_recall_f1(np.eye(2)[[1, 1, 1]], labels)
    assert p == pytest.approx((0 + 2 / 3) / 2)


def test_relative_accuracy_paper_000():
    assert relative_accuracy(0.6, 0.8) == pytest.approx(75.0)
    assert math.isnan(relative_accuracy(0.5, 0.0))


def test_confusion_matrix():
    cm = confusion_matrix(LOGITS, LABELS, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
