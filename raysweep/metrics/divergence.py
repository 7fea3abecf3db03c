"""Jensen-Shannon divergence between output distributions: ZRF (paper 000), JS to original (004).

Definitions (natural logarithm; ``p``, ``q`` are softmax outputs of one sample):

* ``JS(p, q) = 0.5 * KL(p || m) + 0.5 * KL(q || m)`` with ``m = (p + q) / 2``; ``0 <= JS <= ln 2``.
* **Reduction**: JS is computed per sample (summed over classes) and then averaged over the
  samples, i.e. PyTorch's ``reduction="batchmean"``. This is exactly paper 000's Eq. 4,
  ``ZRF = 1 - (1/n_f) * sum_i JS(M(x_i), T_d(x_i))``, so ``ZRF`` lies in ``[1 - ln 2, 1]``
  (about ``[0.307, 1]``): 1 means the model's forget-set outputs equal the random teacher's.
* ``js/original`` (paper 004) is the same per-sample mean of JS between the unlearned model and
  the original model over D_f: 0 means no change; higher means the outputs on D_f moved away.

The reference code of the incompetent-teacher paper (and the many repositories that copy it)
computes ``0.5 * F.kl_div(log p, m) + 0.5 * F.kl_div(log q, m)`` with the default
``reduction="mean"``: that is ``KL(m || p)`` (the reverse direction, not a JS divergence, and
unbounded) averaged over all ``N * C`` entries, i.e. divided by the number of classes too, which
pushes the score towards 1 as C grows. :func:`zrf_reference_code` reproduces that number for
comparison with published tables (reported as ``zrf/reference_code``); ``zrf`` is the paper's
formula and the one to optimise.
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

from raysweep.metrics._outputs import softmax

__all__ = ["js_divergence", "js_from_logits", "zrf", "zrf_reference_code"]

_EPS = 1e-12


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"the two output arrays must have the same shape (same samples, same "
                         f"classes), got {a.shape} and {b.shape}")


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row Jensen-Shannon divergence (nats) between probability arrays ``(N, C)``."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    _check_pair(p, q)
    m = 0.5 * (p + q)
    # rel_entr(x, y) = x log(x / y) with 0 log 0 = 0, so no clipping is needed.
    js = 0.5 * rel_entr(p, m).sum(axis=1) + 0.5 * rel_entr(q, m).sum(axis=1)
    return np.clip(js, 0.0, np.log(2.0))


def js_from_logits(logits_a: np.ndarray, logits_b: np.ndarray) -> np.ndarray:
    """Per-sample JS divergence between ``softmax(logits_a)`` and ``softmax(logits_b)``."""
    _check_pair(np.asarray(logits_a), np.asarray(logits_b))
    return js_divergence(softmax(logits_a), softmax(logits_b))


def zrf(model_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Zero Retrain Forgetting: ``1 - mean_i JS(M(x_i), T_d(x_i))`` over D_f (batchmean)."""
    js = js_from_logits(model_logits, teacher_logits)
    if len(js) == 0:
        return float("nan")
    return float(1.0 - js.mean())


def zrf_reference_code(model_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """ZRF as the incompetent-teacher reference code computes it (see the module docstring).

    ``1 - [0.5 * mean_{i,c} m log(m / p) + 0.5 * mean_{i,c} m log(m / q)]``, with ``p`` and
    ``q`` clipped at 1e-12 before the logarithm (the reference code would give ``inf``).
    """
    _check_pair(np.asarray(model_logits), np.asarray(teacher_logits))
    if len(model_logits) == 0:
        return float("nan")
    p, q = softmax(model_logits), softmax(teacher_logits)
    m = 0.5 * (p + q)
    kl_mp = (m * (np.log(np.maximum(m, _EPS)) - np.log(np.maximum(p, _EPS)))).mean()
    kl_mq = (m * (np.log(np.maximum(m, _EPS)) - np.log(np.maximum(q, _EPS)))).mean()
    return float(1.0 - (0.5 * kl_mp + 0.5 * kl_mq))
