"""Oracle-referenced terms (raysweep.metrics.oracle): fixed-direction attack, matched
non-members, the representation probe, spreads, and the workload's matched masks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from raysweep.metrics import (
    ModelOutputs,
    SplitOutputs,
    loss_auc,
    oracle_distances,
    raw_terms,
    representation_probe,
    term_spread,
)
from raysweep.metrics.mia import label_free_features


def test_loss_auc_is_the_roc_auc_of_minus_loss_and_cannot_flip():
    rng = np.random.default_rng(0)
    members, non = rng.exponential(0.5, 300), rng.exponential(1.0, 200)
    y = np.r_[np.ones(300), np.zeros(200)]
    assert loss_auc(members, non) == pytest.approx(roc_auc_score(y, -np.r_[members, non]))
    assert loss_auc(members, non) > 0.6          # lower member losses: above chance
    assert loss_auc(non, members) < 0.4          # the other way round: below, never mirrored
    assert loss_auc(np.ones(5), np.ones(5)) == 0.5
    assert loss_auc(np.array([np.inf]), np.array([1.0])) == 0.0
    assert loss_auc(np.array([]), np.ones(3)) is None


def _split(n, num_classes, rng, *, correct=True, features=None, labels=None):
    labels = rng.integers(0, num_classes, n) if labels is None else labels
    logits = rng.normal(0, 1, (n, num_classes)).astype(np.float32)
    if correct:
        logits[np.arange(n), labels] += 6
    return SplitOutputs(logits, labels, features)


def test_class_forgetting_attack_uses_only_matched_non_members():
    rng = np.random.default_rng(1)
    # D_f: class 0 with low loss. Held-out: class 0 has HIGH loss, other classes low loss.
    forget = _split(50, 3, rng, labels=np.zeros(50, np.int64))
    val_labels = np.r_[np.zeros(40, np.int64), np.ones(60, np.int64)]
    val = _split(100, 3, rng, labels=val_labels)
    val.logits[:40, 0] -= 12                                   # class 0 held-out: wrong
    out = ModelOutputs({"forget": forget, "retain": _split(80, 3, rng), "val": val,
                        "test": _split(30, 3, rng)})
    matched = {"val": val_labels == 0, "test": None}
    m = raw_terms(out, forget_classes=(0,), matched=matched)
    assert m["mia/auc/val"] > 0.95                             # members vs class-0 held-out
    unmatched = raw_terms(out, forget_classes=(0,), matched={"val": None, "test": None})
    assert unmatched["mia/auc/val"] < m["mia/auc/val"]         # diluted by other classes


def test_probe_sees_through_a_logit_edit_and_the_oracle_is_the_reference():
    rng = np.random.default_rng(2)
    n, d = 200, 8
    # the forgotten kind (target 1) is linearly visible in the original's features
    held_target = rng.integers(0, 2, n)
    held_feats = rng.normal(0, 1, (n, d)) + 3.0 * held_target[:, None]
    forget_feats = rng.normal(0, 1, (60, d)) + 3.0
    p_orig = representation_probe(forget_feats, held_feats, held_target)
    assert p_orig.mean() > 0.9
    # an oracle whose features do not carry the kind
    oracle_held = rng.normal(0, 1, (n, d))
    oracle_forget = rng.normal(0, 1, (60, d))
    p_oracle = representation_probe(oracle_forget, oracle_held, held_target)
    assert abs(p_orig.mean() - p_oracle.mean()) > 0.3
    assert representation_probe(forget_feats, held_feats, np.zeros(n)) is None  # one class only


def _outputs(rng, *, shift=0.0):
    fl = np.zeros(40, np.int64)
    feats = lambda k, off: rng.normal(off, 1, (k, 6)).astype(np.float32)  # noqa: E731
    forget = _split(40, 3, rng, labels=fl, features=feats(40, 2.0))
    forget.logits[:, 0] += shift
    mk = lambda k: _split(k, 3, rng, features=feats(k, 0.0))  # noqa: E731
    val = mk(90)
    test = mk(60)
    return ModelOutputs({"forget": forget, "retain": mk(100), "val": val, "test": test})


def test_distances_are_zero_against_itself_and_symmetric():
    rng = np.random.default_rng(3)
    a = _outputs(rng)
    matched = {"val": a["val"].labels == 0, "test": a["test"].labels == 0}
    ra = raw_terms(a, forget_classes=(0,), matched=matched)
    d = oracle_distances(ra, ra, model_out=a, oracle_out=a)
    assert d and all(v == pytest.approx(0.0, abs=1e-9) for v in d.values())
    assert {"dist/forget_acc", "dist/heldout_acc/val", "dist/heldout_acc/test",
            "dist/mia_auc/val", "dist/mia_auc/test", "dist/js", "dist/probe/val",
            "dist/probe/test"} <= set(d)


def test_term_spread_is_positive_and_shrinks_with_more_samples():
    rng = np.random.default_rng(4)
    a = _outputs(rng)
    s = term_spread(a, forget_classes=(0,), matched={"val": a["val"].labels == 0}, seed=0,
                    reference=a)
    assert s["mia/auc/val"] > 0 and s["forget/acc"] >= 0 and "probe/val" in s


def test_label_free_attack_features_ignore_which_class_is_which():
    rng = np.random.default_rng(5)
    s = _split(20, 4, rng)
    perm = np.array([2, 0, 3, 1])
    permuted = SplitOutputs(s.logits[:, perm], np.argsort(perm)[s.labels])
    assert np.allclose(label_free_features(s), label_free_features(permuted), atol=1e-5)


def _toy_dataset():
    from raysweep.data import LoadedDataset

    rng = np.random.default_rng(6)
    train_y = np.repeat(np.arange(3), 40)
    test_y = np.repeat(np.arange(3), 10)
    return LoadedDataset(
        name="toy", kind="image", train_x=rng.random((120, 1, 4, 4)).astype(np.float32),
        train_y=train_y, test_x=rng.random((30, 1, 4, 4)).astype(np.float32), test_y=test_y,
        class_names=["a", "b", "c"], group_names=["g0", "g1"],
        train_groups=(np.arange(120) % 2), test_groups=(np.arange(30) % 2))


@pytest.mark.parametrize("scenario,expect_val,expect_test", [
    ({"kind": "class", "classes": [1]}, lambda ds, v: ds.train_y[v] == 1,
     lambda ds: ds.test_y == 1),
    ({"kind": "subclass", "group": "g1"}, lambda ds, v: ds.train_groups[v] == 1,
     lambda ds: ds.test_groups == 1),
    ({"kind": "random", "fraction": 0.2}, None, None),
])
def test_workload_matches_non_members_to_the_scenario(scenario, expect_val, expect_test):
    from types import SimpleNamespace

    from pydantic import TypeAdapter

    from raysweep.data.scenarios import Scenario
    from raysweep.workload import matched_masks

    ds = _toy_dataset()
    sc = TypeAdapter(Scenario).validate_python(scenario)
    idx = {"val": np.arange(0, 120, 4)}
    masks = matched_masks(SimpleNamespace(scenario=sc, seed=0), ds, idx)
    if expect_val is None:
        assert masks == {"val": None, "test": None}
        return
    assert np.array_equal(masks["val"], expect_val(ds, idx["val"]))
    assert np.array_equal(masks["test"], expect_test(ds))


def test_targeted_selector_is_applied_to_held_out_rows_with_its_threshold():
    from types import SimpleNamespace

    from pydantic import TypeAdapter

    from raysweep.data.scenarios import Scenario
    from raysweep.workload import matched_masks

    ds = _toy_dataset()
    sc = TypeAdapter(Scenario).validate_python(
        {"kind": "targeted", "selector": "brightness", "params": {"count": 24}})
    idx = {"val": np.arange(0, 120, 4)}
    masks = matched_masks(SimpleNamespace(scenario=sc, seed=0), ds, idx)
    full = sc.forget_mask(ds, seed=0)
    assert np.array_equal(masks["val"], full[idx["val"]])   # the training threshold, exactly
    assert masks["test"].sum() == 6                          # count scaled to the test set


def test_random_forgetting_probe_asks_member_or_not_on_retain_vs_held_out():
    # Random forgetting (matched None): the probe is fitted on D_r rows (members, 1) against
    # held-out rows (0); D_f rows that look like members score high. An original that still
    # separates members shows it, an oracle whose D_f looks held out does not.
    rng = np.random.default_rng(7)
    member = lambda k: rng.normal(2.0, 1, (k, 6)).astype(np.float32)  # noqa: E731
    outside = lambda k: rng.normal(0.0, 1, (k, 6)).astype(np.float32)  # noqa: E731

    def outputs(forget_feats):
        return ModelOutputs({"forget": _split(40, 3, rng, features=forget_feats),
                             "retain": _split(120, 3, rng, features=member(120)),
                             "val": _split(90, 3, rng, features=outside(90)),
                             "test": _split(60, 3, rng, features=outside(60))})

    unforgotten = raw_terms(outputs(member(40)), matched={"val": None, "test": None})
    oracle = raw_terms(outputs(outside(40)), matched={"val": None, "test": None})
    assert unforgotten["probe/val"] > 0.8 and oracle["probe/val"] < 0.2
    assert {"probe/val", "probe/test"} <= set(oracle)
