"""Every registered method passes every named conformance check (tiny MLP and tiny BERT, CPU).

One test per (method, check), so a failure names both, e.g.
``test_conformance[scrub-check_deterministic]``. The checks of one method share their runs
(:mod:`raysweep.testing` caches them), so the cases are ordered method by method.
"""

from __future__ import annotations

import pytest

from raysweep.methods import list_methods
from raysweep.testing import CHECKS, CheckSkipped

_BY_NAME = {c.__name__: c for c in CHECKS}
CASES = [(m, c.__name__) for m in list_methods() for c in CHECKS]


@pytest.mark.parametrize(("method", "check"), CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_conformance(method: str, check: str) -> None:
    try:
        _BY_NAME[check](method)
    except CheckSkipped as exc:
        pytest.skip(str(exc))
