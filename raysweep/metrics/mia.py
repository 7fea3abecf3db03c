"""Membership-inference attacks (MIA) on the forget set.

Two attacks, both computed from cached logits:

**MIA-LR** (papers 000 and 002, the NeurIPS 2023 starting kit). The feature is the per-sample
cross-entropy loss; forget samples are labelled 1 ("member") and non-member samples 0. The
larger side is subsampled (without replacement, seeded) to the size of the smaller, so chance
level is exactly 0.5. A logistic regression (after standardising the loss, which only helps the
solver: the attack is monotone in the loss either way) is scored by ``StratifiedKFold``
cross-validation (shuffled, seeded, ``min(cv_splits, n_per_side)`` folds) with scikit-learn's
``cross_validate``; the results are the mean fold accuracy and the mean fold ROC AUC. Ideal is
the retrain oracle's value (about 0.5 for random forgetting); 1.0 means D_f is still recognisable.

**Which non-members (the 0 side)?** Random or targeted forgetting: the whole test set. Class
forgetting: the test samples *of the forgotten classes*, when there are at least
``2 * cv_splits`` of them (otherwise the whole test set, and ``mia/lr_class_matched`` is 0).
Reason: with the whole test set the attack mostly learns "is this a forgotten class?", because
a model that forgot a class (the retrain oracle included) has a high loss on every sample of it,
in training or not. Matching the class makes the attack ask the membership question proper:
do the training images of the forgotten class look different from unseen images of that class?
Then the oracle scores about 0.5 and an unlearned model that still separates them leaks. The
retrain oracle's value is computed with the same choice, so ``mia/lr_auc_gap_oracle`` compares
like with like.

**MIA member rate** (paper 000, after Chundawat et al. 2023): a logistic regression learns
"member" from a per-sample feature on a balanced sample of D_r (members, 1) vs test
(non-members, 0) and is then applied to D_f; ``mia/member_rate`` is the share of D_f it calls
members. The original model scores high (D_f looks like training data); a model that forgot
D_f scores near the retrain oracle. This is the "MIA" column of paper 000's tables. The
reference code feeds the prediction *entropy*; we feed the cross-entropy *loss* (the
``feature`` argument keeps entropy available). Entropy is label-blind: a retrain oracle that
confidently calls every forgotten "Trouser" a "Dress" has low entropy on D_f and is judged to
have memorised it, which inverts the metric under class forgetting (measured on
Fashion-MNIST: original 0.06 vs oracle 0.19 with entropy).

**MIA-CatBoost** (paper 004). Features are the *label-free* view of the logit vectors
(:func:`label_free_features`: the log-probabilities sorted in decreasing order, plus the loss on
the true label). Paper 004 feeds the raw logits; then, under class forgetting, the attacker
learns class identity (D_r holds no forgotten-class sample, so "forgotten class" reads as
"non-member" for the original and the oracle alike: measured 1.000 on an original whose
attacker was at chance). Sorting removes which class is which and keeps the confidence profile
that membership shows in. A balanced sample of D_r
(members, label 1) and test (non-members, label 0) - the smaller of the two sizes, capped at
``max_per_side`` rows each for speed - trains a CatBoost classifier in each of
``StratifiedKFold(cv_splits)`` folds; each fold's attacker is applied to every D_f sample and the
score is ``TN / |D_f|``, the share of forget samples judged non-members, averaged over the folds
(``mia/catboost``). The held-out fold accuracy of the attacker is reported as
``mia/catboost_attack_acc``: near 0.5 means the attack is too weak to say anything. Higher
``mia/catboost`` = more privacy; compare with the retrain oracle. The attacker is trained on
retain vs the whole test set in every scenario, as in the paper: D_r holds no sample of a
forgotten class, so there is no class-matched member set to train on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from raysweep.metrics._outputs import SplitOutputs, log_softmax

__all__ = ["LRAttackResult", "CatBoostAttackResult", "mia_lr", "mia_catboost", "mia_member_rate",
           "nonmember_mask", "balanced_subsample", "label_free_features"]


@dataclass(frozen=True)
class LRAttackResult:
    """Mean cross-validated accuracy and ROC AUC of the loss-based attack."""

    accuracy: float
    auc: float
    n_per_side: int


@dataclass(frozen=True)
class CatBoostAttackResult:
    """``value`` = TN/|D_f|, the share of D_f judged non-members.

    ``attack_accuracy`` is the attacker's accuracy on its held-out folds (retain vs test).
    """

    value: float
    attack_accuracy: float
    n_per_side: int


def label_free_features(split: SplitOutputs) -> np.ndarray:
    """Per-row attack features that carry no class identity: sorted log-probs and the loss."""
    if len(split) == 0:
        return np.zeros((0, split.logits.shape[1] + 1), np.float32)
    lp = np.sort(log_softmax(split.logits), axis=1)[:, ::-1]
    return np.concatenate([lp, split.losses()[:, None]], axis=1).astype(np.float32)


def balanced_subsample(n_a: int, n_b: int, rng: np.random.Generator,
                       cap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices drawing the same number of rows from two sets: ``min(n_a, n_b, cap)`` each."""
    k = min(n_a, n_b) if cap is None else min(n_a, n_b, cap)
    ia = np.sort(rng.choice(n_a, size=k, replace=False)) if k < n_a else np.arange(n_a)
    ib = np.sort(rng.choice(n_b, size=k, replace=False)) if k < n_b else np.arange(n_b)
    return ia, ib


def nonmember_mask(test_labels: np.ndarray, forget_classes: Iterable[int],
                   min_count: int) -> tuple[np.ndarray, bool]:
    """Test rows used as MIA-LR non-members, and whether they are class-matched.

    With ``forget_classes`` non-empty and at least ``min_count`` test samples of those classes,
    only those rows; otherwise every test row. See the module docstring for why.
    """
    test_labels = np.asarray(test_labels)
    classes = np.asarray(list(forget_classes), dtype=np.int64)
    if len(classes):
        mask = np.isin(test_labels, classes)
        if int(mask.sum()) >= min_count:
            return mask, True
    return np.ones(len(test_labels), dtype=bool), False


def _cv(n_per_side: int, cv_splits: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=min(cv_splits, n_per_side), shuffle=True,
                           random_state=seed % (2**32))


def mia_lr(member_losses: np.ndarray, nonmember_losses: np.ndarray, *, cv_splits: int = 5,
           seed: int = 0) -> LRAttackResult | None:
    """Loss-based logistic-regression attack (members = 1, non-members = 0).

    Returns ``None`` when either side has fewer than 2 samples (no cross-validation possible).
    """
    if cv_splits < 2:
        raise ValueError(f"cv_splits must be >= 2, got {cv_splits}")
    member_losses = np.asarray(member_losses, dtype=np.float64).reshape(-1)
    nonmember_losses = np.asarray(nonmember_losses, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    im, inn = balanced_subsample(len(member_losses), len(nonmember_losses), rng)
    k = len(im)
    if k < 2:
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([member_losses[im], nonmember_losses[inn]])
    # Infinite losses (probability underflow) become the largest finite loss.
    finite = np.isfinite(x)
    if not finite.all():
        x = np.where(finite, x, np.max(x[finite]) if finite.any() else 0.0)
    x = x[:, None]
    y = np.concatenate([np.ones(k, np.int64), np.zeros(k, np.int64)])
    attack = make_pipeline(StandardScaler(), LogisticRegression())
    scores = cross_validate(attack, x, y, cv=_cv(k, cv_splits, seed),
                            scoring=("accuracy", "roc_auc"))
    return LRAttackResult(float(np.mean(scores["test_accuracy"])),
                          float(np.mean(scores["test_roc_auc"])), k)


def mia_catboost(member_logits: np.ndarray, nonmember_logits: np.ndarray,
                 target_logits: np.ndarray, *, cv_splits: int = 5, seed: int = 0,
                 iterations: int = 100, depth: int = 4, learning_rate: float = 0.2,
                 max_per_side: int | None = 2500) -> CatBoostAttackResult | None:
    """Paper 004's attack: train on members vs non-members (logits), apply to ``target_logits``.

    Returns ``None`` when there is no target sample or either side has fewer than 2 samples.
    Kept fast on purpose (few shallow trees, one thread); the defaults separate retain from test
    logits as well as the paper's full-size model on the workloads here.
    """
    if cv_splits < 2:
        raise ValueError(f"cv_splits must be >= 2, got {cv_splits}")
    member_logits = np.asarray(member_logits, dtype=np.float32)
    nonmember_logits = np.asarray(nonmember_logits, dtype=np.float32)
    target_logits = np.asarray(target_logits, dtype=np.float32)
    rng = np.random.default_rng(seed)
    im, inn = balanced_subsample(len(member_logits), len(nonmember_logits), rng, max_per_side)
    k = len(im)
    if k < 2 or len(target_logits) == 0:
        return None
    from catboost import CatBoostClassifier

    x = np.concatenate([member_logits[im], nonmember_logits[inn]])
    y = np.concatenate([np.ones(k, np.int64), np.zeros(k, np.int64)])
    if np.all(x == x[0]):
        # Identical outputs everywhere: nothing to learn (CatBoost refuses constant features);
        # the attacker can only guess, so report the coin-flip expectation.
        return CatBoostAttackResult(0.5, 0.5, k)
    tn_rates, accs = [], []
    for fold, (tr, te) in enumerate(_cv(k, cv_splits, seed).split(x, y)):
        clf = CatBoostClassifier(iterations=iterations, depth=depth, learning_rate=learning_rate,
                                 random_seed=(seed + fold) % (2**31), thread_count=1,
                                 verbose=False, allow_writing_files=False)
        clf.fit(x[tr], y[tr])
        accs.append(float(np.mean(clf.predict(x[te]).astype(np.int64).reshape(-1) == y[te])))
        pred = clf.predict(target_logits).astype(np.int64).reshape(-1)
        tn_rates.append(float(np.mean(pred == 0)))
    return CatBoostAttackResult(float(np.mean(tn_rates)), float(np.mean(accs)), k)


def mia_member_rate(member_feature: np.ndarray, nonmember_feature: np.ndarray,
                    target_feature: np.ndarray, *, seed: int = 0,
                    max_per_side: int | None = 5000) -> float | None:
    """Paper 000's MIA: fit members vs non-members on a per-sample feature (loss or entropy),
    return the share of ``target`` predicted member. ``None`` when a side is empty.
    """
    member = _finite(member_feature)
    nonmember = _finite(nonmember_feature)
    target = _finite(target_feature)
    if len(member) == 0 or len(nonmember) == 0 or len(target) == 0:
        return None
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    im, inn = balanced_subsample(len(member), len(nonmember), rng, cap=max_per_side)
    x = np.concatenate([member[im], nonmember[inn]])[:, None]
    y = np.concatenate([np.ones(len(im), np.int64), np.zeros(len(inn), np.int64)])
    attack = LogisticRegression(class_weight="balanced").fit(x, y)
    return float(attack.predict(target[:, None]).mean())


def _finite(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = np.isfinite(x)
    if not ok.all():  # an underflowed probability gives an infinite loss: clip to the largest
        x = np.where(ok, x, np.max(x[ok]) if ok.any() else 0.0)
    return x


def prediction_entropy(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the softmax of each row of ``logits``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)
