from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from raysweep.metrics import ObjectiveConfig, composite_score

M = {"gap/oracle": 0.2, "gap/forget_test": 0.9, "mia/lr_auc": 0.7, "mia/catboost": 0.8,
     "time/ratio": 0.5, "retain/acc": 0.8, "rel/retain_drop": 0.1}


def test_default_weights_and_gap_choice():
    assert composite_score(M) == pytest.approx(0.2 + 0.2 + 0.1 * 0.5)
    no_oracle = {k: v for k, v in M.items() if k != "gap/oracle"}
    assert composite_score(no_oracle) == pytest.approx(0.9 + 0.2 + 0.05)


def test_weights_and_references():
    assert composite_score(M, w_gap=2, w_mia=0, w_time=0) == pytest.approx(0.4)
    assert composite_score(M, w_gap=0, w_time=0, mia_ref=0.6) == pytest.approx(0.1)
    # CatBoost MIA: higher is more private, default reference 1.0
    assert composite_score(M, w_gap=0, w_time=0, mia_key="mia/catboost") == pytest.approx(0.2)
    # missing time ratio: no time term
    assert composite_score({"gap/oracle": 0.1, "mia/lr_auc": 0.5}) == pytest.approx(0.1)


def test_missing_metric_is_a_clear_error():
    with pytest.raises(KeyError, match="mia/lr_auc"):
        composite_score({"gap/oracle": 0.1})
    assert composite_score({"gap/oracle": 0.1}, w_mia=0) == pytest.approx(0.1)


def test_retain_floor_penalty():
    base = composite_score(M)
    # drop 0.9 - 0.8 = 0.1 > floor 0.05: penalty 10 * (1 + 0.05)
    assert composite_score(M, retain_floor=0.05, original_retain=0.9) == pytest.approx(
        base + 10 * 1.05)
    assert composite_score(M, retain_floor=0.2, original_retain=0.9) == pytest.approx(base)
    # falls back to rel/retain_drop from evaluate
    assert composite_score(M, retain_floor=0.05, penalty=100) == pytest.approx(base + 105)
    with pytest.raises(ValueError, match="original_retain"):
        composite_score(M, retain_floor=0.05, retain_key="test/acc_retain_classes")


def test_nan_scores_are_worst():
    assert composite_score({**M, "mia/lr_auc": math.nan}) == math.inf


def test_objective_config_from_yaml_dict():
    cfg = ObjectiveConfig.model_validate({"w_gap": 2.0, "w_time": 0.0, "mia_ref": "oracle",
                                          "retain_floor": 0.05})
    got = cfg.score(M, original_retain=0.82, oracle_metrics={"mia/lr_auc": 0.6})
    assert got == pytest.approx(2 * 0.2 + 0.1)
    with pytest.raises(ValueError, match="oracle"):
        cfg.score(M, original_retain=0.82)
    assert ObjectiveConfig().score(M) == pytest.approx(composite_score(M))


def test_objective_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="extra"):
        ObjectiveConfig(w_gapp=1.0)
    with pytest.raises(ValidationError, match="did you mean 'mia/lr_auc'"):
        ObjectiveConfig(mia_key="mia/lr_au")
    with pytest.raises(ValidationError):
        ObjectiveConfig(w_mia=-1)
    with pytest.raises(ValidationError):
        ObjectiveConfig(retain_floor=2)
