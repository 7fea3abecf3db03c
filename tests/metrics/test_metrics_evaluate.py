from __future__ import annotations

import math

import numpy as np
import pytest
from _metrics_synth import outputs_with_acc, split_with_acc

from raysweep.metrics import ModelOutputs, SplitOutputs, evaluate

ORIG = {"forget": 1.0, "retain": 0.9, "val": 0.8, "test": 0.8}
UNLEARNED = {"forget": 0.5, "retain": 0.75, "val": 0.7, "test": 0.7}
ORACLE = {"forget": 0.6, "retain": 0.9, "val": 0.75, "test": 0.75}


def test_keys_only_when_defined():
    m = evaluate(outputs_with_acc(UNLEARNED), catboost=False)
    for key in ("forget/acc", "retain/acc", "val/acc", "test/acc", "test/precision_macro",
                "test/recall_macro", "test/f1_macro", "gap/forget_test", "mia/lr_acc",
                "mia/lr_auc"):
        assert key in m
    for key in ("rel/retain_acc", "gap/oracle", "js/original", "zrf", "mia/catboost",
                "time/seconds", "test/acc_retain_classes"):
        assert key not in m
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())


def test_random_forgetting_accuracies_rel_gaps_sape_time():
    out = outputs_with_acc(UNLEARNED, seed=1)
    m = evaluate(out, original=outputs_with_acc(ORIG, seed=2),
                 retrain=outputs_with_acc(ORACLE, seed=3), seconds=3.0, retrain_seconds=12.0,
                 catboost=False)
    assert m["forget/acc"] == pytest.approx(0.5)
    assert m["retain/acc"] == pytest.approx(0.75)
    assert m["rel/retain_acc"] == pytest.approx(0.75 / 0.9 * 100)
    assert m["rel/forget_acc"] == pytest.approx(50.0)
    assert m["rel/retain_drop"] == pytest.approx(0.15)
    assert m["gap/forget_test"] == pytest.approx(abs(0.5 - 0.7))
    assert m["gap/oracle"] == pytest.approx(abs(0.5 - 0.6) + abs(0.7 - 0.75))
    assert m["sape/acc_err_oracle"] == pytest.approx(0.05 / 1.45)
    assert m["sape/acc_dis"] == pytest.approx(0.1 / 1.1)
    assert m["sape/acc_err_original"] == pytest.approx(0.1 / 1.5)
    assert m["time/seconds"] == 3.0 and m["time/ratio"] == pytest.approx(0.25)
    assert "mia/lr_auc_gap_oracle" in m


def test_identical_models_have_zero_distances():
    out = outputs_with_acc(UNLEARNED)
    m = evaluate(out, original=out, retrain=out,
                 random_teacher_forget_logits=out["forget"].logits, catboost=False)
    assert m["js/original"] == pytest.approx(0.0, abs=1e-12)
    assert m["js/retrain"] == pytest.approx(0.0, abs=1e-12)
    assert m["zrf"] == pytest.approx(1.0)
    for key in ("sape/acc_err_oracle", "sape/acc_dis", "sape/acc_err_original", "gap/oracle",
                "mia/lr_auc_gap_oracle", "rel/retain_drop"):
        assert m[key] == pytest.approx(0.0), key
    assert m["rel/retain_acc"] == pytest.approx(100.0)


def _class_forgetting(forget_acc: float, test_forget_acc: float, test_retain_acc: float,
                      seed: int = 0) -> ModelOutputs:
    """4 classes, class 0 forgotten; test has 20 samples of class 0 and 60 of the others."""
    out = outputs_with_acc({"forget": forget_acc, "retain": 0.9, "val": 0.8, "test": 0.0},
                           forget_labels=np.zeros(30, np.int64), seed=seed)
    fc = split_with_acc(np.zeros(20, np.int64), round(test_forget_acc * 20), 4, seed=seed)
    rc = split_with_acc(np.arange(60) % 3 + 1, round(test_retain_acc * 60), 4, seed=seed + 1)
    out.splits["test"] = SplitOutputs(np.concatenate([fc.logits, rc.logits]),
                                      np.concatenate([fc.labels, rc.labels]))
    return out


def test_class_forgetting_gaps_use_forgotten_and_retained_classes():
    out = _class_forgetting(forget_acc=0.1, test_forget_acc=0.05, test_retain_acc=0.8)
    oracle = _class_forgetting(forget_acc=0.0, test_forget_acc=0.0, test_retain_acc=0.9, seed=5)
    m = evaluate(out, forget_classes=(0,), retrain=oracle, catboost=False)
    assert m["test/acc_forget_classes"] == pytest.approx(0.05)
    assert m["test/acc_retain_classes"] == pytest.approx(0.8)
    assert m["test/acc"] == pytest.approx((1 + 48) / 80)
    assert m["gap/forget_test"] == pytest.approx(0.1)          # forget accuracy, target 0
    assert m["gap/oracle"] == pytest.approx(0.1 + abs(0.8 - 0.9))
    assert m["mia/lr_class_matched"] == 1.0                     # 20 class-0 test samples >= 10
    assert m["mia/lr_n"] == 20.0


def _memorisation_outputs(memorised: bool) -> ModelOutputs:
    rng = np.random.default_rng(7)

    def split(n: int, margin_mean: float) -> SplitOutputs:
        labels = np.arange(n) % 4
        logits = rng.normal(0, 0.5, size=(n, 4)).astype(np.float32)
        logits[np.arange(n), labels] += rng.normal(margin_mean, 1.0, size=n)
        return SplitOutputs(logits, labels)

    test_margin = 1.5
    return ModelOutputs({"forget": split(200, 12.0 if memorised else test_margin),
                         "retain": split(200, 12.0), "val": split(40, test_margin),
                         "test": split(200, test_margin)})


def test_mia_memorised_vs_never_seen():
    seen = evaluate(_memorisation_outputs(True), catboost=True)
    unseen = evaluate(_memorisation_outputs(False), catboost=True)
    assert seen["mia/lr_auc"] > 0.95 and seen["mia/lr_acc"] > 0.9
    assert abs(unseen["mia/lr_auc"] - 0.5) < 0.1 and abs(unseen["mia/lr_acc"] - 0.5) < 0.1
    # CatBoost trained on retain (memorised) vs test, applied to D_f
    assert seen["mia/catboost"] < 0.2
    assert unseen["mia/catboost"] > 0.8
    assert seen["mia/catboost_attack_acc"] > 0.9


def test_mismatched_reference_outputs_are_rejected():
    out = outputs_with_acc(UNLEARNED)
    other = outputs_with_acc(UNLEARNED, sizes={"forget": 10, "retain": 120, "val": 40, "test": 80})
    with pytest.raises(ValueError, match="split 'forget'"):
        evaluate(out, original=other, catboost=False)
    with pytest.raises(ValueError, match="random_teacher_forget_logits"):
        evaluate(out, random_teacher_forget_logits=np.zeros((3, 4)), catboost=False)


def test_empty_split_is_left_out():
    out = outputs_with_acc(UNLEARNED)
    out.splits["val"] = SplitOutputs(np.zeros((0, 0)), np.zeros(0))
    m = evaluate(out, catboost=False)
    assert "val/acc" not in m and "test/acc" in m


def test_the_retain_floor_never_penalises_the_oracle() -> None:
    """When forgetting costs exact unlearning held-out accuracy (a large random share), the floor
    reads the drop below the oracle's accuracy, not the original's: the oracle scores 0 on the
    default objective and the untouched original scores worse."""
    from raysweep.metrics.objective import ObjectiveConfig

    orig = {"forget": 1.0, "retain": 1.0, "val": 0.85, "test": 0.85}
    oracle = {"forget": 0.7, "retain": 1.0, "val": 0.72, "test": 0.72}   # 13 points below
    kw = {"original": outputs_with_acc(orig, seed=2), "retrain": outputs_with_acc(oracle, seed=3),
          "catboost": False}
    m_oracle = evaluate(outputs_with_acc(oracle, seed=3), **kw)
    m_orig = evaluate(outputs_with_acc(orig, seed=2), **kw)
    m_broken = evaluate(outputs_with_acc({**oracle, "val": 0.6, "test": 0.6}, seed=4), **kw)
    assert m_oracle["rel/heldout_drop/val"] == pytest.approx(0.0)
    assert m_orig["rel/heldout_drop/val"] < 0                  # above the reference
    assert m_broken["rel/heldout_drop/val"] == pytest.approx(0.12, abs=0.02)
    objective = ObjectiveConfig(w_probe=0)   # these synthetic outputs carry no features
    assert objective.score(m_oracle) == 0.0
    assert objective.score(m_orig) > objective.score(m_oracle)
    assert objective.score(m_broken) > 10                     # the floor still bites
