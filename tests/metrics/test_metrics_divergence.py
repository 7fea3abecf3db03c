from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon

from raysweep.metrics import js_divergence, js_from_logits, softmax, zrf, zrf_reference_code

RNG = np.random.default_rng(0)
A = RNG.normal(0, 3, size=(64, 10))
B = RNG.normal(0, 3, size=(64, 10))


def test_js_identical_is_zero_and_symmetric():
    np.testing.assert_allclose(js_from_logits(A, A), 0.0, atol=1e-12)
    np.testing.assert_allclose(js_from_logits(A, B), js_from_logits(B, A))


def test_js_matches_scipy_per_row():
    p, q = softmax(A), softmax(B)
    want = jensenshannon(p, q, axis=1) ** 2  # scipy returns the distance (sqrt), base e
    np.testing.assert_allclose(js_divergence(p, q), want, rtol=1e-9, atol=1e-12)


def test_js_disjoint_supports_is_ln2():
    p, q = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert js_divergence(p, q)[0] == pytest.approx(math.log(2))


def test_zrf_equal_to_teacher_is_one_and_bounded():
    assert zrf(A, A) == pytest.approx(1.0)
    confident = np.eye(10)[np.arange(64) % 10] * 50
    uniform = np.zeros((64, 10))
    low = zrf(confident, uniform)
    assert 1 - math.log(2) <= low < zrf(A, uniform) < 1.0


def test_zrf_reference_code_matches_torch_reference_formula():
    p = torch.softmax(torch.from_numpy(A), 1)
    q = torch.softmax(torch.from_numpy(B), 1)
    m = (p + q) / 2
    # the reference calls F.kl_div(log p, m) with the default reduction "mean", i.e. the sum
    # over all N * C entries divided by N * C
    ref = 1 - 0.5 * (F.kl_div(torch.log(p), m, reduction="sum")
                     + F.kl_div(torch.log(q), m, reduction="sum")) / p.numel()
    assert zrf_reference_code(A, B) == pytest.approx(float(ref), rel=1e-9)
    assert zrf_reference_code(A, A) == pytest.approx(1.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        js_from_logits(A, B[:10])
