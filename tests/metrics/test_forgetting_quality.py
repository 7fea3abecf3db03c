"""The challenge's ε score and the U-LiRA attack on synthetic statistics with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from raysweep.metrics.forgetting_quality import (
    N_BUCKETS,
    bucket_index,
    epsilon_per_example,
    forgetting_quality,
    lira_attack,
    logit_confidence,
    permutation_null,
    utility_score,
)


def _normal(rng: np.random.Generator, mean: float, n: int, k: int) -> np.ndarray:
    return rng.normal(mean, 1.0, size=(n, k))


def test_identical_distributions_score_one_with_many_models() -> None:
    # With thousands of models per side the empirical rates are exact enough that no threshold
    # bounds ε above one bucket width: every example is in bucket 0.
    rng = np.random.default_rng(0)
    fq = forgetting_quality(_normal(rng, 0, 40, 3000), _normal(rng, 0, 40, 3000))
    assert fq.score == 1.0
    assert fq.histogram()[0] == 40


def test_separated_distributions_score_near_zero() -> None:
    rng = np.random.default_rng(1)
    fq = forgetting_quality(_normal(rng, 8, 60, 32), _normal(rng, 0, 60, 32))
    assert np.isinf(fq.epsilons).all()            # every example perfectly separated
    assert fq.score == pytest.approx(2.0 ** -(N_BUCKETS - 1))


def test_direction_does_not_matter() -> None:
    # The attacker scans thresholds on both sides: lower or higher unlearned values leak alike.
    rng = np.random.default_rng(2)
    r = _normal(rng, 0, 30, 16)
    up = forgetting_quality(_normal(rng, 6, 30, 16), r).score
    down = forgetting_quality(_normal(rng, -6, 30, 16), r).score
    assert up < 0.01 and down < 0.01


def test_score_falls_as_the_shift_grows() -> None:
    rng = np.random.default_rng(3)
    r = _normal(rng, 0, 80, 64)
    scores = [forgetting_quality(_normal(rng, s, 80, 64), r).score for s in (0.0, 1.0, 3.0)]
    assert scores[0] > scores[1] > scores[2]


def test_permutation_null_matches_the_score_of_one_distribution() -> None:
    # At small K the score of two samples of one distribution is well under 1; the permutation
    # null measures that ceiling, and a shifted population falls far below it.
    rng = np.random.default_rng(4)
    u, r = _normal(rng, 0, 200, 16), _normal(rng, 0, 200, 16)
    null = permutation_null(u, r, rounds=10, seed=0)
    assert 0.0 < null < 1.0
    assert forgetting_quality(u, r).score == pytest.approx(null, abs=0.05)
    far = forgetting_quality(_normal(rng, 5, 200, 16), r).score
    assert far < null / 10


def test_epsilon_of_a_hand_computed_case() -> None:
    # Unlearned {1, 2, 3, 4}, oracles {0, 5, 6, 7}. The cut between 4 and 5, flagging values at
    # or below it, misses no unlearned model (FNR 0) and flags one oracle (FPR 1/4): skipped.
    # The cut between 3 and 4: FNR 1/4, FPR 1/4 -> log((0.99 - 0.25) / 0.25). The cut between
    # 0 and 1 flagging above: FNR 0 (skipped). Nothing gives more than log(0.74 / 0.25).
    u = np.array([[1.0, 2.0, 3.0, 4.0]])
    r = np.array([[0.0, 5.0, 6.0, 7.0]])
    eps = epsilon_per_example(u, r, delta=0.01)
    assert eps[0] == pytest.approx(np.log(0.74 / 0.25))


def test_ties_cannot_be_split() -> None:
    # Every model gives the same value: no threshold separates anything, ε = 0.
    eps = epsilon_per_example(np.ones((3, 5)), np.ones((3, 5)))
    assert (eps == 0).all()


def test_buckets() -> None:
    b = bucket_index(np.array([0.0, 0.49, 0.5, 1.2, 100.0, np.inf]), width=0.5, n_buckets=13)
    assert b.tolist() == [0, 0, 1, 2, 12, 12]
    with pytest.raises(ValueError, match="width must be a positive number"):
        bucket_index(np.zeros(2), width=0.0)
    with pytest.raises(ValueError, match="epsilons must be >= 0"):
        bucket_index(np.array([-1.0]))


def test_lira_identical_is_chance_and_separated_is_perfect() -> None:
    rng = np.random.default_rng(5)
    same = lira_attack(_normal(rng, 0, 300, 16), _normal(rng, 0, 300, 16), seed=0)
    assert same.auc == pytest.approx(0.5, abs=0.03)
    assert same.advantage < 0.08
    far = lira_attack(_normal(rng, 6, 300, 16), _normal(rng, 0, 300, 16), seed=0)
    assert far.auc > 0.99 and far.advantage > 0.95
    assert far.n_pairs == 300 * 32                       # every model scored exactly once


def test_lira_sees_a_variance_difference_a_mean_test_would_miss() -> None:
    # Same mean, different spread: the likelihood ratio (not a threshold on the mean) sees it.
    rng = np.random.default_rng(6)
    u = rng.normal(0.0, 0.1, size=(200, 16))
    r = rng.normal(0.0, 3.0, size=(200, 16))
    assert lira_attack(u, r, seed=0).auc > 0.9


def test_logit_confidence_is_stable_and_exact() -> None:
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 800.0, -800.0], [-1000.0, 0.0, 0.0]])
    got = logit_confidence(logits, np.array([0, 1, 0]))
    p = np.exp(2.0) / (np.exp(2.0) + 2.0)
    assert got[0] == pytest.approx(np.log(p / (1 - p)))
    assert got[1] == pytest.approx(800.0)                 # log(p / (1 - p)) with p = 1 - e^-800
    assert got[2] == pytest.approx(-1000.0 - np.log(2.0))
    assert np.isfinite(got).all()


def test_utility_score() -> None:
    assert utility_score(0.5, retain_ratio=0.9, test_ratio=1.0) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="retain_ratio must be a finite number"):
        utility_score(0.5, retain_ratio=float("nan"), test_ratio=1.0)


@pytest.mark.parametrize("bad, match", [
    (lambda u, r: (u[:, :1], r), "unlearned needs at least 4 models"),
    (lambda u, r: (u, r[:3]), "same examples"),
    (lambda u, r: (u[0], r), "2-D array"),
    (lambda u, r: (np.where(u > 1, np.nan, u), r), "non-finite values"),
])
def test_bad_inputs_are_named(bad, match) -> None:
    rng = np.random.default_rng(7)
    u, r = bad(_normal(rng, 0, 5, 8), _normal(rng, 0, 5, 8))
    with pytest.raises(ValueError, match=match):
        lira_attack(u, r)


def test_bad_delta() -> None:
    with pytest.raises(ValueError, match=r"delta must be in \[0, 1\)"):
        forgetting_quality(np.zeros((2, 4)), np.zeros((2, 4)), delta=1.0)
