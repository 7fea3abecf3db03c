"""What a trial hands to Ray Tune per epoch, and how the driver reads it back.

Tune keeps, for every trial, a running analysis (max, min, mean, last, last-5 and last-10
means, with their windows) of every numeric key of its results, and writes all of it into
its experiment snapshot. A trial reports about 200 keys (every metric and its ``best/`` copy),
which made the snapshot about 90 KB per trial: 50 MB at 550 trials, rewritten every few
seconds and copied by the last-good keeper (``raysweep bench driver``). So a trial reports
as numbers only what Tune and the searcher read (:func:`tune_keys`); the whole result
travels as one JSON string under :data:`RESULT_KEY`, which Tune stores once and does not
analyse, and every reader on the driver (MLflow logging, the outcome) goes through
:func:`full_result`. No Ray, no torch: the zero-compute driver benchmark uses it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RESULT_KEY", "ALWAYS_NUMERIC", "tune_keys", "tune_result", "full_result"]

#: The key of the whole result, as a JSON string.
RESULT_KEY = "rs/result"
#: Numbers the driver reads from Tune's own copy of a result: the epoch (ASHA's time
#: attribute, the MLflow step), the chosen epoch, the budget stop and the per-trial seconds
#: (progress, timeline), and whether the chosen epoch's full evaluation is in.
ALWAYS_NUMERIC = ("epoch", "best_epoch", "budget/over", "rs/final", "rs/trial_seconds",
                  "rs/method_seconds")


def tune_keys(objective_keys: Iterable[str]) -> tuple[str, ...]:
    """The numeric keys a trial reports to Tune: :data:`ALWAYS_NUMERIC`, each objective's key
    (the multi-objective searcher and ASHA read it) and its ``best/`` copy (the single-objective
    searcher and the progress line read that)."""
    keys = list(ALWAYS_NUMERIC)
    for k in objective_keys:
        keys += [k, f"best/{k}"]
    return tuple(dict.fromkeys(keys))


def tune_result(result: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``result`` as Tune should keep it: the numbers in ``keys`` (see :func:`tune_keys`), its
    strings (a node id), and the whole of it as JSON under :data:`RESULT_KEY`."""
    out = {k: result[k] for k in keys if k in result}
    out.update({k: v for k, v in result.items() if isinstance(v, str)})
    # NaN and inf survive (json writes them as NaN/Infinity and reads them back).
    out[RESULT_KEY] = json.dumps(dict(result), default=float)
    return out


def full_result(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """A result as Tune returns it (its own keys: ``trial_id``, ``timestamp``, ...) with the
    trial's whole result merged back; a result without :data:`RESULT_KEY` (or a torn one)
    comes back as it is."""
    if not result:
        return {}
    out = {k: v for k, v in result.items() if k != RESULT_KEY}
    blob = result.get(RESULT_KEY)
    if isinstance(blob, str):
        try:
            inner = json.loads(blob)
        except ValueError:
            inner = None
        if isinstance(inner, dict):
            out.update(inner)
    return out
