from __future__ import annotations

import math

import pytest

from raysweep.metrics import sape


def test_sape_values():
    assert sape(0.7, 0.7) == 0.0
    assert sape(0.0, 0.0) == 0.0
    assert sape(0.2, 0.6) == pytest.approx(0.5)
    assert sape(0.6, 0.2) == sape(0.2, 0.6)
    assert sape(0.0, 0.9) == 1.0
    assert math.isnan(sape(float("nan"), 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        sape(-0.1, 0.5)
