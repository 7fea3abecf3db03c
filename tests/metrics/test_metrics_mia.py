from __future__ import annotations

import numpy as np
import pytest

from raysweep.metrics import mia_catboost, mia_lr, nonmember_mask

RNG = np.random.default_rng(0)


def test_lr_memorised_forget_set_is_detected():
    members = RNG.exponential(0.01, 300)           # near-zero loss: memorised
    nonmembers = RNG.lognormal(0.5, 0.4, 300)      # unseen: loss around 1.6
    res = mia_lr(members, nonmembers, seed=0)
    assert res is not None
    assert res.accuracy > 0.95 and res.auc > 0.97


def test_lr_same_distribution_is_chance():
    members = RNG.lognormal(0.0, 0.5, 400)
    nonmembers = RNG.lognormal(0.0, 0.5, 400)
    res = mia_lr(members, nonmembers, seed=0)
    assert abs(res.accuracy - 0.5) < 0.08
    assert abs(res.auc - 0.5) < 0.1


def test_lr_balances_by_subsampling_and_is_seeded():
    members = RNG.exponential(1.0, 50)
    nonmembers = RNG.exponential(2.0, 1000)
    a = mia_lr(members, nonmembers, seed=3)
    b = mia_lr(members, nonmembers, seed=3)
    assert a.n_per_side == 50
    assert a == b


def test_lr_non_finite_losses_are_handled_and_tiny_sides_skipped():
    members = np.array([0.0, 0.01, np.inf, 0.02, np.nan, 0.0])
    nonmembers = np.array([2.0, 3.0, 2.5, 4.0, 3.3, 2.2])
    assert mia_lr(members, nonmembers, cv_splits=3).accuracy > 0.6
    assert mia_lr(np.array([0.1]), nonmembers) is None
    with pytest.raises(ValueError, match="cv_splits"):
        mia_lr(members, nonmembers, cv_splits=1)


def test_nonmember_mask_class_matched_when_enough():
    labels = np.array([0] * 12 + [1] * 30)
    mask, matched = nonmember_mask(labels, (0,), min_count=10)
    assert matched and mask.sum() == 12 and not mask[12:].any()
    mask, matched = nonmember_mask(labels, (0,), min_count=20)
    assert not matched and mask.all()
    mask, matched = nonmember_mask(labels, (), min_count=10)
    assert not matched and mask.all()


def _logits(n, shift):
    x = RNG.normal(0, 1, size=(n, 6)).astype(np.float32)
    x[:, 0] += shift
    return x


def test_catboost_separable_members():
    members, nonmembers = _logits(150, 4.0), _logits(150, 0.0)
    # D_f that still looks like training data: judged members, TN/|D_f| near 0
    kept = mia_catboost(members, nonmembers, _logits(60, 4.0), seed=0)
    # D_f that looks unseen: judged non-members, near 1
    forgotten = mia_catboost(members, nonmembers, _logits(60, 0.0), seed=0)
    assert kept.attack_accuracy > 0.9 and kept.n_per_side == 150
    assert kept.value < 0.1
    assert forgotten.value > 0.9


def test_catboost_degenerate_inputs():
    same = np.ones((20, 3), np.float32)
    assert mia_catboost(same, same, same).value == 0.5
    assert mia_catboost(same, same, np.zeros((0, 3))) is None


def test_member_rate_paper000() -> None:
    """A model whose D_f looks like D_r (low entropy) is called member; one that forgot is not."""
    import numpy as np

    from raysweep.metrics import mia_member_rate

    rng = np.random.default_rng(0)
    members = rng.uniform(0.0, 0.2, 500)       # confident on training data
    nonmembers = rng.uniform(0.5, 2.0, 500)    # unsure on unseen data
    remembered = rng.uniform(0.0, 0.2, 100)
    forgotten = rng.uniform(0.8, 2.0, 100)
    assert mia_member_rate(members, nonmembers, remembered) > 0.95
    assert mia_member_rate(members, nonmembers, forgotten) < 0.05
    assert mia_member_rate(members, nonmembers, np.array([])) is None
