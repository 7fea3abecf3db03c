"""Forgetting quality from populations of models (pure numpy).

A single unlearned model cannot show that it is distributed like a retrained one; a population
can. Given, for every forget example, a per-example statistic measured on K unlearned models and
on K retrain-from-scratch oracles (``(N, K)`` arrays), this module computes two attacks that
try to tell the populations apart:

**The ε score of the NeurIPS 2023 unlearning challenge** (google-deepmind/unlearning_evaluation).
For each forget example, every threshold on the statistic is an attack "this model is the
unlearned one". From the two samples each threshold has a false-positive rate (oracles flagged)
and a false-negative rate (unlearned models missed); an (ε, δ)-unlearning guarantee would bound
both, so the example's empirical ε is the largest

    log((1 - δ - FPR) / FNR)   and   log((1 - δ - FNR) / FPR)

over the thresholds. As in the challenge, a threshold whose FPR or FNR is 0 gives no finite
bound and is skipped, unless both are 0 (a perfect separation: ε = inf); a ratio whose numerator
is not positive gives no evidence. Unlike the challenge's kit we scan thresholds in both
directions (flag values above *and* below the cut): the attacker does not know on which side the
unlearned models fall. ε under 0 is 0. The ε values are bucketed (``floor(ε / width)``, the last
of ``n_buckets`` holding everything beyond, inf included) and the forgetting quality is
``mean(2 ** -bucket)``: 1 when no example is distinguishable (every ε below one bucket width),
towards 0 (``2 ** -(n_buckets - 1)``) when every example is. The challenge's final score
multiplies it by the utility ratios ``retain_acc(unlearned) / retain_acc(oracle)`` and
``test_acc(unlearned) / test_acc(oracle)`` (means over the populations; not capped at 1).

With few models per side the empirical rates are coarse and some threshold separates two
samples of one distribution by chance, so even the retrain oracle against itself scores under 1.
:func:`permutation_null` measures that finite-K ceiling: the score of the same pooled values
with the labels shuffled per example.

**A U-LiRA-style per-example likelihood-ratio attack** (Hayes et al. 2024, "Inexact unlearning
needs more careful evaluations"). For every example, Gaussians are fitted to the statistic over
half of the unlearned models ("in") and half of the oracles ("out"); each model of the *other*
halves is scored by ``log N(x; in) - log N(x; out)``, then the halves swap roles (two-fold
cross-fitting: every model is scored exactly once, never by a fit it took part in). The scores
of all (example, held-out model) pairs are pooled: the attack's ROC AUC (0.5: the populations
look alike; 1: every unlearned model is recognised) and its advantage ``max(TPR - FPR)``.

The statistic used throughout is :func:`logit_confidence`, the challenge's logit-scaled
confidence of the true class ``log(p_y / (1 - p_y))``, which is close to Gaussian over models
(LiRA's observation) where the raw confidence is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DELTA", "BUCKET_WIDTH", "N_BUCKETS", "ForgettingQuality", "LiraResult", "logit_confidence",
    "epsilon_per_example", "bucket_index", "forgetting_quality", "permutation_null",
    "lira_attack", "utility_score",
]

#: The challenge's defaults: δ of the (ε, δ) bound, the bucket width of ε, the number of buckets.
DELTA = 0.01
BUCKET_WIDTH = 0.5
N_BUCKETS = 13


@dataclass(frozen=True)
class ForgettingQuality:
    """Per-example ε, their buckets and the score ``mean(2 ** -bucket)``."""

    score: float
    epsilons: np.ndarray          # (N,), >= 0, may hold inf
    buckets: np.ndarray           # (N,), int in [0, n_buckets)

    def histogram(self, n_buckets: int = N_BUCKETS) -> list[int]:
        """How many examples fell in each bucket."""
        return np.bincount(self.buckets, minlength=n_buckets).tolist()


@dataclass(frozen=True)
class LiraResult:
    """The pooled likelihood-ratio attack: ROC AUC and advantage over (example, model) pairs."""

    auc: float
    advantage: float
    n_pairs: int


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log(p_y / (1 - p_y))`` of the true class per row, computed stably from the logits.

    Equal to ``z_y - logsumexp(z_j, j != y)``, so it needs no softmax and does not saturate at
    ``p_y`` = 1 the way ``log(p / (1 - p))`` of a rounded probability does.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"logits must be (N, C) and labels (N,), got {z.shape} and {y.shape}")
    if z.shape[1] < 2:
        raise ValueError(f"logit_confidence needs at least 2 classes, got {z.shape[1]}")
    rows = np.arange(len(y))
    true = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1)
    rest = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    return true - rest


def _populations(unlearned: np.ndarray, retrained: np.ndarray,
                 min_models: int = 2) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(unlearned, dtype=np.float64)
    r = np.asarray(retrained, dtype=np.float64)
    for name, a in (("unlearned", u), ("retrained", r)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (examples, models), got shape {a.shape}")
        if a.shape[1] < min_models:
            raise ValueError(f"{name} needs at least {min_models} models (columns), got "
                             f"{a.shape[1]}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} holds {int((~np.isfinite(a)).sum())} non-finite values; "
                             f"the statistic must be finite (use logit_confidence on logits)")
    if u.shape[0] != r.shape[0] or u.shape[0] == 0:
        raise ValueError(f"unlearned and retrained must hold the same examples (rows) and at "
                         f"least one, got {u.shape[0]} and {r.shape[0]}")
    return u, r


def _check_delta(delta: float) -> None:
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta!r}")


def epsilon_per_example(unlearned: np.ndarray, retrained: np.ndarray, *,
                        delta: float = DELTA) -> np.ndarray:
    """The empirical ε of every example (rows of ``(N, K_u)`` and ``(N, K_r)``); see the module."""
    u, r = _populations(unlearned, retrained, min_models=1)
    _check_delta(delta)
    ku, kr = u.shape[1], r.shape[1]
    values = np.concatenate([u, r], axis=1)
    is_u = np.concatenate([np.ones(ku), np.zeros(kr)])
    order = np.argsort(values, axis=1, kind="stable")
    sorted_vals = np.take_along_axis(values, order, axis=1)
    below_u = np.cumsum(is_u[order], axis=1)[:, :-1]            # unlearned values <= the cut
    below_r = np.arange(1, ku + kr)[None, :] - below_u           # oracle values <= the cut
    # A cut only counts between two distinct values: ties cannot be split by a threshold.
    real_cut = sorted_vals[:, 1:] > sorted_vals[:, :-1]
    eps = np.full(real_cut.shape, np.nan)
    for fnr, fpr in ((below_u / ku, 1.0 - below_r / kr),        # flag values above the cut
                     (1.0 - below_u / ku, below_r / kr)):        # flag values at or below it
        eps = np.fmax(eps, _epsilon(fpr, fnr, delta))
    eps = np.where(real_cut & ~np.isnan(eps), eps, -np.inf)   # no evidence: ignored
    return np.maximum(eps.max(axis=1, initial=-np.inf), 0.0)


def _epsilon(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """ε of each (FPR, FNR) pair: inf for a perfect split, NaN where the pair bounds nothing."""
    out = np.full(fpr.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where((1 - delta - fpr > 0) & (fnr > 0), np.log(1 - delta - fpr) - np.log(fnr),
                     np.nan)
        b = np.where((1 - delta - fnr > 0) & (fpr > 0), np.log(1 - delta - fnr) - np.log(fpr),
                     np.nan)
    both = (fpr > 0) & (fnr > 0)
    out[both] = np.fmax(a, b)[both]
    out[(fpr == 0) & (fnr == 0)] = np.inf
    return out


def bucket_index(epsilons: np.ndarray, *, width: float = BUCKET_WIDTH,
                 n_buckets: int = N_BUCKETS) -> np.ndarray:
    """``floor(ε / width)``, everything from ``(n_buckets - 1) * width`` on (inf too) in the
    last."""
    if not width > 0 or not np.isfinite(width):
        raise ValueError(f"width must be a positive number, got {width!r}")
    if int(n_buckets) != n_buckets or n_buckets < 1:
        raise ValueError(f"n_buckets must be a whole number >= 1, got {n_buckets!r}")
    e = np.asarray(epsilons, dtype=np.float64)
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("epsilons must be >= 0 (inf allowed), got NaN or negative values")
    with np.errstate(invalid="ignore"):
        idx = np.floor(np.minimum(e / width, n_buckets - 1))
    return idx.astype(np.int64)


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, *, delta: float = DELTA,
                       width: float = BUCKET_WIDTH,
                       n_buckets: int = N_BUCKETS) -> ForgettingQuality:
    """The challenge's forgetting quality ``mean(2 ** -bucket(ε))`` over the forget examples.

    Args:
        unlearned: ``(N, K_u)`` statistic of each forget example on each unlearned model.
        retrained: ``(N, K_r)`` the same on each retrained oracle.
        delta: δ of the (ε, δ) bound.
        width: bucket width of ε.
        n_buckets: number of buckets; the last holds every larger ε.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> same = forgetting_quality(rng.normal(size=(50, 2000)), rng.normal(size=(50, 2000)))
        >>> round(same.score, 2)
        1.0
    """
    u, r = _populations(unlearned, retrained, min_models=1)
    eps = epsilon_per_example(u, r, delta=delta)
    buckets = bucket_index(eps, width=width, n_buckets=n_buckets)
    return ForgettingQuality(float(np.mean(2.0 ** -buckets)), eps, buckets)


def permutation_null(unlearned: np.ndarray, retrained: np.ndarray, *, rounds: int = 20,
                     seed: int = 0, delta: float = DELTA, width: float = BUCKET_WIDTH,
                     n_buckets: int = N_BUCKETS) -> float:
    """The mean forgetting quality of the pooled values with the labels shuffled per example:
    what two samples of one distribution score at these sample sizes (the finite-K ceiling)."""
    u, r = _populations(unlearned, retrained, min_models=1)
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be a whole number >= 1, got {rounds!r}")
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([u, r], axis=1)
    ku = u.shape[1]
    scores = []
    for _ in range(int(rounds)):
        perm = np.argsort(rng.random(pooled.shape), axis=1)
        shuffled = np.take_along_axis(pooled, perm, axis=1)
        scores.append(forgetting_quality(shuffled[:, :ku], shuffled[:, ku:], delta=delta,
                                         width=width, n_buckets=n_buckets).score)
    return float(np.mean(scores))


def utility_score(quality: float, *, retain_ratio: float, test_ratio: float) -> float:
    """The challenge's final score: forgetting quality times the two utility ratios."""
    for name, v in (("quality", quality), ("retain_ratio", retain_ratio),
                    ("test_ratio", test_ratio)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(quality * retain_ratio * test_ratio)


def lira_attack(unlearned: np.ndarray, retrained: np.ndarray, *, seed: int = 0,
                min_std: float = 1e-3) -> LiraResult:
    """The U-LiRA-style attack (see the module): pooled ROC AUC and advantage.

    Each population needs at least 4 models, so that both halves fit a Gaussian from 2.
    ``min_std`` floors the fitted standard deviations (in units of the statistic): with a few
    models per half a near-constant example would otherwise give an unbounded ratio.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> far = lira_attack(rng.normal(5, 1, (40, 8)), rng.normal(0, 1, (40, 8)))
        >>> far.auc > 0.95
        True
    """
    u, r = _populations(unlearned, retrained, min_models=4)
    if not min_std > 0:
        raise ValueError(f"min_std must be > 0, got {min_std!r}")
    rng = np.random.default_rng(seed)
    halves_u = np.array_split(rng.permutation(u.shape[1]), 2)
    halves_r = np.array_split(rng.permutation(r.shape[1]), 2)
    pos, neg = [], []
    for fit, held in ((0, 1), (1, 0)):
        mu_in, sd_in = _gaussian(u[:, halves_u[fit]], min_std)
        mu_out, sd_out = _gaussian(r[:, halves_r[fit]], min_std)

        def llr(x: np.ndarray, mu_in: np.ndarray = mu_in, sd_in: np.ndarray = sd_in,
                mu_out: np.ndarray = mu_out, sd_out: np.ndarray = sd_out) -> np.ndarray:
            return (_log_normal(x, mu_in[:, None], sd_in[:, None])
                    - _log_normal(x, mu_out[:, None], sd_out[:, None]))

        pos.append(llr(u[:, halves_u[held]]).ravel())
        neg.append(llr(r[:, halves_r[held]]).ravel())
    p, n = np.concatenate(pos), np.concatenate(neg)
    return LiraResult(_auc(p, n), _advantage(p, n), int(len(p) + len(n)))


def _gaussian(x: np.ndarray, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=1), np.maximum(x.std(axis=1, ddof=1), min_std)


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)   # the shared -log(sqrt(2 pi)) cancels


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC: P(score of a positive > a negative), ties counted half."""
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # Tied scores share their average rank.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    n_p, n_n = len(pos), len(neg)
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n))


def _advantage(pos: np.ndarray, neg: np.ndarray) -> float:
    """``max over thresholds of TPR - FPR`` (flag scores above the threshold)."""
    cuts = np.unique(np.concatenate([pos, neg]))
    tpr = 1.0 - np.searchsorted(np.sort(pos), cuts, side="right") / len(pos)
    fpr = 1.0 - np.searchsorted(np.sort(neg), cuts, side="right") / len(neg)
    # Flagging every score (a cut below all of them) gives TPR = FPR = 1: advantage 0.
    return float(max(0.0, np.max(tpr - fpr)))
