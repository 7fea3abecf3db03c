"""The oracle-referenced composite objective (raysweep.metrics.objective)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from raysweep.metrics import ObjectiveConfig, composite_score

M = {"dist/forget_acc": 0.2, "dist/heldout_acc/val": 0.05, "dist/heldout_acc/test": 0.5,
     "dist/mia_auc/val": 0.1, "dist/mia_auc/test": 0.9, "dist/js": 0.03,
     "dist/probe/val": 0.02, "dist/probe/test": 0.8, "rel/heldout_drop/val": 0.01,
     "rel/heldout_drop/test": 0.01, "cost/ratio": 0.4}


def test_default_sums_every_distance_on_val_only():
    assert composite_score(M) == pytest.approx(0.2 + 0.05 + 0.1 + 0.03 + 0.02)
    # the test twins are read only when asked for (reporting)
    assert composite_score(M, split="test") == pytest.approx(0.2 + 0.5 + 0.9 + 0.03 + 0.8)


def test_the_oracle_scores_exactly_zero():
    oracle = {k: 0.0 for k in M if k.startswith("dist/")}
    oracle.update({"rel/heldout_drop/val": -0.01, "rel/heldout_drop/test": 0.0})
    assert composite_score(oracle) == 0.0
    assert ObjectiveConfig().score(oracle, split="test") == 0.0


def test_cost_is_off_by_default_and_paid_by_the_oracle_when_weighted():
    assert composite_score(M, w_cost=0.5) == pytest.approx(composite_score(M) + 0.2)
    oracle = {k: 0.0 for k in M if k.startswith("dist/")} | {"rel/heldout_drop/val": 0.0,
                                                             "cost/ratio": 1.0}
    assert composite_score(oracle, w_cost=0.5) == pytest.approx(0.5)


def test_retain_floor_is_on_by_default_and_graded():
    worse = {**M, "rel/heldout_drop/val": 0.15}
    assert composite_score(worse) == pytest.approx(composite_score(M) + 10 * (1 + 0.10))
    assert composite_score(worse, retain_floor=None) == pytest.approx(composite_score(M))
    with pytest.raises(KeyError, match="rel/heldout_drop/val"):
        composite_score({k: v for k, v in M.items() if not k.startswith("rel/")})


def test_missing_weighted_metric_is_a_clear_error_and_zero_weight_skips_it():
    partial = {k: v for k, v in M.items() if k != "dist/probe/val"}
    with pytest.raises(KeyError, match="dist/probe/val"):
        composite_score(partial)
    assert composite_score(partial, w_probe=0) == pytest.approx(0.2 + 0.05 + 0.1 + 0.03)


def test_non_finite_becomes_worst():
    assert composite_score({**M, "dist/js": math.nan}) == math.inf


@pytest.mark.parametrize("field,value", [("w_mia", math.nan), ("w_forget", math.inf),
                                         ("w_js", -1), ("retain_floor", 2.0),
                                         ("penalty", 0), ("w_cost", 1e9)])
def test_config_rejects_bad_numbers(field, value):
    with pytest.raises(ValidationError):
        ObjectiveConfig(**{field: value})


@pytest.mark.parametrize("old", ["w_gap", "w_time", "mia_key", "mia_ref", "retain_key"])
def test_old_objective_fields_fail_with_the_replacement(old):
    with pytest.raises(ValidationError, match="replaced by"):
        ObjectiveConfig(**{old: 1.0})


def test_describe_names_terms_splits_and_floor():
    text = ObjectiveConfig(w_probe=0, w_cost=0.1).describe()
    assert "probe" not in text and "0.1*cost" in text and "val" in text and "test" in text
