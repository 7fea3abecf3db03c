"""What a trial hands to Tune: few numbers, the whole result once as JSON."""

from __future__ import annotations

import math
from numbers import Number

from raysweep.sweep._result import RESULT_KEY, full_result, tune_keys, tune_result


def test_tune_sees_only_the_numbers_it_reads_and_the_driver_gets_everything_back() -> None:
    result = {"epoch": 3, "best_epoch": 2, "objective": 0.4, "best/objective": 0.3,
              "forget/acc": 0.1, "best/forget/acc": 0.2, "mia/auc/val": math.nan,
              "js/retrain": math.inf, "rs/node": "abc", "rs/trial_seconds": 1.5}
    keys = tune_keys(["objective"])
    handed = tune_result(result, keys)
    numbers = {k for k, v in handed.items() if isinstance(v, Number)}
    # Tune keeps a running analysis of every number: only these reach it.
    assert numbers == {"epoch", "best_epoch", "objective", "best/objective", "rs/trial_seconds"}
    assert handed["rs/node"] == "abc" and isinstance(handed[RESULT_KEY], str)
    tune_adds = {**handed, "trial_id": "t1", "training_iteration": 3}
    back = full_result(tune_adds)
    assert back["trial_id"] == "t1" and back["training_iteration"] == 3
    assert back["forget/acc"] == 0.1 and back["best/forget/acc"] == 0.2
    assert math.isnan(back["mia/auc/val"]) and back["js/retrain"] == math.inf
    assert RESULT_KEY not in back


def test_plain_and_empty_results_read_as_they_are() -> None:
    assert full_result(None) == {} and full_result({}) == {}
    plain = {"best/objective": 0.3, "epoch": 2}
    assert full_result(plain) == plain
    torn = {"epoch": 1, RESULT_KEY: '{"forget/acc": 0.'}
    assert full_result(torn) == {"epoch": 1}


def test_multi_objective_keys_stay_numeric() -> None:
    keys = tune_keys(["objective", "cost/ratio"])
    assert {"objective", "best/objective", "cost/ratio", "best/cost/ratio"} <= set(keys)
    assert len(keys) == len(set(keys))
