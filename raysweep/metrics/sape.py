"""Symmetric absolute percentage error between accuracies (paper 004).

``SAPE(a, b) = |b - a| / (a + b)``, in ``[0, 1]`` for non-negative accuracies; defined as 0 when
``a + b == 0`` (two zero accuracies agree perfectly). Paper 004 uses it three ways, all lower is
better (reported by :func:`raysweep.metrics.evaluate`):

* ``sape/acc_err_oracle``   = SAPE(Acc(D_t) of the unlearned model, Acc(D_t) of the retrain oracle)
* ``sape/acc_dis``          = SAPE(Acc(D_f) of the unlearned model, Acc(D_f) of the oracle)
* ``sape/acc_err_original`` = SAPE(Acc(D_t) of the unlearned model, Acc(D_t) of the original)
"""

from __future__ import annotations

import math

__all__ = ["sape"]


def sape(a: float, b: float) -> float:
    """``|b - a| / (a + b)``; 0 when ``a + b == 0``; nan if either input is nan."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return float("nan")
    if a < 0 or b < 0:
        raise ValueError(f"SAPE is defined for non-negative values, got a={a}, b={b}")
    total = a + b
    return 0.0 if total == 0 else abs(b - a) / total
