"""``evaluate``: every metric of one model, from its cached outputs.

The result is a flat ``dict[str, float]`` with namespaced keys. A key is present only when it is
defined (its split is non-empty, its reference outputs were given, its attack had enough
samples), so no ``nan`` reaches MLflow or Optuna.

=============================  =================================================================
key                            meaning
=============================  =================================================================
``forget/acc`` ...             top-1 accuracy on D_f, D_r (``retain``), ``val``, ``test``
``forget/loss``, ``test/loss`` mean cross-entropy on D_f / test
``test/acc_retain_classes``    class forgetting only: test accuracy on retained classes
``test/acc_forget_classes``    class forgetting only: test accuracy on forgotten classes
``test/precision_macro`` ...   macro precision / recall / F1 on test (paper 001)
``rel/retain_acc``             paper 000's A_r = A_u / A_b * 100 on D_r (needs ``original``)
``rel/forget_acc``             paper 000's A_f on D_f; also ``rel/test_acc`` on test
``rel/retain_drop``            original retain acc - retain acc (absolute; for the retain floor)
``gap/forget_test``            random/targeted: ``|acc_f - acc_t|``; class forgetting:
                               ``forget/acc`` (accuracy on the forgotten classes' training
                               samples, target 0)
``gap/oracle``                 ``|acc_f - acc_f^RT| + |acc_t - acc_t^RT|`` (needs ``retrain``);
                               for class forgetting ``acc_t`` is ``test/acc_retain_classes``
``mia/lr_acc``, ``mia/lr_auc`` loss-based logistic-regression attack, D_f vs non-members
``mia/lr_n``                   samples per side of that attack
``mia/lr_class_matched``       1 when the non-members are test samples of the forgotten classes
``mia/lr_auc_gap_oracle``      ``|auc - auc^RT|`` (needs ``retrain``; same attack on the oracle)
``mia/member_rate``            paper 000's MIA: share of D_f a loss attack (D_r vs test) calls
                               members
``mia/catboost``               paper 004: TN / |D_f| of a CatBoost attack (``catboost=True``)
``mia/catboost_attack_acc``    held-out accuracy of that attacker on retain vs test
``zrf``                        1 - mean JS(model, random teacher) on D_f (batchmean, nats)
``zrf/reference_code``         ZRF as the incompetent-teacher code computes it (see divergence)
``js/original``                mean JS(model, original) on D_f (paper 004; higher = moved away)
``js/retrain``                 mean JS(model, retrain oracle) on D_f (lower = closer to oracle)
``sape/acc_err_oracle``        SAPE(test acc, oracle test acc)
``sape/acc_dis``               SAPE(forget acc, oracle forget acc)
``sape/acc_err_original``      SAPE(test acc, original test acc)
``time/seconds``               unlearning wall time
``time/ratio``                 ``seconds / retrain_seconds`` (only when the caller measured the
                               retrain time under the same conditions; see the trainable)
``heldout/acc/<split>`` ...    the oracle-referenced terms' raw values, ``dist/...`` their
                               distances to the oracle, ``rel/heldout_drop/<split>`` the drop
                               of held-out accuracy below the lower of the original's and
                               the oracle's: see
                               :mod:`raysweep.metrics.oracle` (``<split>`` is val or test)
=============================  =================================================================

Selection (the objective, the best epoch) reads only ``.../val`` keys and the D_f terms; the
``.../test`` twins and every other test metric are for reporting. Every key, with its direction,
unit and role, is declared once in :mod:`raysweep.metrics.registry` (``raysweep metrics --all``);
a test fails on a key returned here and not declared there.

The MIA non-member choice for class forgetting is explained in :mod:`raysweep.metrics.mia`.
"""

from __future__ import annotations

import math

import numpy as np

from raysweep.metrics._outputs import ModelOutputs
from raysweep.metrics.accuracy import (
    accuracy,
    class_split_accuracy,
    precision_recall_f1,
    relative_accuracy,
)
from raysweep.metrics.divergence import js_from_logits, zrf, zrf_reference_code
from raysweep.metrics.mia import (
    LRAttackResult,
    label_free_features,
    mia_catboost,
    mia_lr,
    mia_member_rate,
    nonmember_mask,
)
from raysweep.metrics.oracle import HELDOUT_SPLITS, heldout_accuracy, oracle_distances, raw_terms
from raysweep.metrics.sape import sape

__all__ = ["evaluate", "evaluate_selection", "oracle_lr_auc", "SELECTION_SPLITS"]

#: The splits that selection reads (see :func:`evaluate_selection`); ``retain`` only as the
#: membership probe's rows under random forgetting
#: (:func:`~raysweep.metrics.oracle.membership_rows`).
SELECTION_SPLITS: tuple[str, ...] = ("forget", "val")


def _put(out: dict[str, float], key: str, value: float | None) -> None:
    if value is not None and math.isfinite(value):
        out[key] = float(value)


def _check_same_samples(name: str, ref: ModelOutputs, outputs: ModelOutputs) -> None:
    for split, own in outputs.splits.items():
        if split in ref.splits and len(ref[split]) != len(own):
            raise ValueError(f"{name} outputs do not match this model's: split {split!r} has "
                             f"{len(ref[split])} rows there and {len(own)} here; both must come "
                             f"from forward_splits over the same UnlearnData")


def _lr_attack(out: ModelOutputs, forget_classes: tuple[int, ...], cv_splits: int,
               seed: int, test_matched: np.ndarray | None = None
               ) -> tuple[LRAttackResult | None, bool]:
    test = out["test"]
    if test_matched is not None and int(np.sum(test_matched)) >= 2 * cv_splits:
        mask, matched = np.asarray(test_matched, dtype=bool), True
    else:
        mask, matched = nonmember_mask(test.labels, forget_classes, min_count=2 * cv_splits)
    return mia_lr(out["forget"].losses(), test.losses()[mask], cv_splits=cv_splits,
                  seed=seed), matched


def evaluate(outputs: ModelOutputs, *, forget_classes: tuple[int, ...] = (),
             original: ModelOutputs | None = None, retrain: ModelOutputs | None = None,
             random_teacher_forget_logits: np.ndarray | None = None,
             seconds: float | None = None, retrain_seconds: float | None = None,
             catboost: bool = True, seed: int = 0, cv_splits: int = 5,
             matched: dict[str, np.ndarray | None] | None = None,
             retrain_raw: dict[str, float] | None = None,
             retrain_lr_auc: float | None = None) -> dict[str, float]:
    """All metrics of one model's outputs; see the module docstring for every key.

    Args:
        outputs: this model's :class:`ModelOutputs` (splits forget, retain, val, test).
        forget_classes: the forgotten classes under class forgetting, else ``()``.
        original: the original model's outputs over the same splits (relative accuracies,
            ``js/original``, ``sape/acc_err_original``, ``rel/retain_drop``).
        retrain: the retrain oracle's outputs (``gap/oracle``, SAPE vs oracle, MIA gap).
        random_teacher_forget_logits: a randomly initialised model's logits on D_f (ZRF).
        seconds: this model's unlearning wall time; ``retrain_seconds`` the oracle's.
        catboost: run the CatBoost attack (about a second; off for quick evaluations).
        seed: seeds the MIA subsampling, folds and CatBoost.
        cv_splits: folds of both attacks.
        matched: per held-out split, the boolean mask of rows matched to the forget set (MIA
            non-members and the probe's target; ``None`` entries = every row, random forgetting).
        retrain_raw: the oracle's :func:`~raysweep.metrics.oracle.raw_terms`, when the caller
            cached them (computed here otherwise).
        retrain_lr_auc: the oracle's LR-attack AUC (:func:`oracle_lr_auc`), when cached.

    Returns:
        A flat dict of finite floats.
    """
    forget_classes = tuple(int(c) for c in forget_classes)
    for name, ref in (("original", original), ("retrain", retrain)):
        if ref is not None:
            _check_same_samples(name, ref, outputs)
    m: dict[str, float] = {}
    f, t = outputs["forget"], outputs["test"]

    # Accuracies and losses.
    for split in ("forget", "retain", "val", "test"):
        if split in outputs:
            s = outputs[split]
            _put(m, f"{split}/acc", accuracy(s.logits, s.labels))
    if len(f):
        _put(m, "forget/loss", float(np.mean(f.losses())))
    if len(t):
        _put(m, "test/loss", float(np.mean(t.losses())))
    if forget_classes:
        acc_rc, acc_fc = class_split_accuracy(t.logits, t.labels, forget_classes)
        _put(m, "test/acc_retain_classes", acc_rc)
        _put(m, "test/acc_forget_classes", acc_fc)
    p, r, f1 = precision_recall_f1(t.logits, t.labels)
    _put(m, "test/precision_macro", p)
    _put(m, "test/recall_macro", r)
    _put(m, "test/f1_macro", f1)
    acc_f = accuracy(f.logits, f.labels)
    acc_t = heldout_accuracy(t, forget_classes)[0]  # test: retained classes only

    # Relative to the original (paper 000) and divergence from it (paper 004).
    if original is not None:
        for split, key in (("retain", "rel/retain_acc"), ("forget", "rel/forget_acc"),
                           ("test", "rel/test_acc")):
            if split in outputs and split in original:
                a_u = accuracy(outputs[split].logits, outputs[split].labels)
                a_b = accuracy(original[split].logits, original[split].labels)
                _put(m, key, relative_accuracy(a_u, a_b))
        if "retain" in outputs and "retain" in original:
            ro, rb = outputs["retain"], original["retain"]
            _put(m, "rel/retain_drop",
                 accuracy(rb.logits, rb.labels) - accuracy(ro.logits, ro.labels))
        if len(f):
            js = js_from_logits(f.logits, original["forget"].logits)
            _put(m, "js/original", float(js.mean()))
        _put(m, "sape/acc_err_original",
             sape(accuracy(t.logits, t.labels),
                  accuracy(original["test"].logits, original["test"].labels)))

    # Forgetting gaps.
    if forget_classes:
        _put(m, "gap/forget_test", acc_f)
    else:
        _put(m, "gap/forget_test", abs(acc_f - accuracy(t.logits, t.labels)))
    if retrain is not None:
        rf, rt = retrain["forget"], retrain["test"]
        acc_f_rt = accuracy(rf.logits, rf.labels)
        _put(m, "gap/oracle",
             abs(acc_f - acc_f_rt) + abs(acc_t - heldout_accuracy(rt, forget_classes)[0]))
        _put(m, "sape/acc_err_oracle", sape(accuracy(t.logits, t.labels),
                                            accuracy(rt.logits, rt.labels)))
        _put(m, "sape/acc_dis", sape(acc_f, acc_f_rt))
        if len(f):
            _put(m, "js/retrain", float(js_from_logits(f.logits, rf.logits).mean()))

    # Oracle-referenced terms (raysweep.metrics.oracle): raw values, distances, held-out drop.
    _oracle_terms(m, outputs, original=original, retrain=retrain, retrain_raw=retrain_raw,
                  forget_classes=forget_classes, matched=matched, seed=seed)

    # Membership inference (the papers' attacks, reported on test).
    test_matched = (matched or {}).get("test")
    lr, matched_lr = _lr_attack(outputs, forget_classes, cv_splits, seed, test_matched)
    if lr is not None:
        _put(m, "mia/lr_acc", lr.accuracy)
        _put(m, "mia/lr_auc", lr.auc)
        _put(m, "mia/lr_n", float(lr.n_per_side))
        _put(m, "mia/lr_class_matched", float(matched_lr))
        if retrain is not None:
            if retrain_lr_auc is None:
                retrain_lr_auc = oracle_lr_auc(retrain, forget_classes=forget_classes,
                                               matched=matched, seed=seed, cv_splits=cv_splits)
            if retrain_lr_auc is not None:
                _put(m, "mia/lr_auc_gap_oracle", abs(lr.auc - retrain_lr_auc))
    if "retain" in outputs and len(f):
        rate = mia_member_rate(outputs["retain"].losses(), t.losses(), f.losses(), seed=seed)
        _put(m, "mia/member_rate", rate)
    if catboost and "retain" in outputs:
        cb = mia_catboost(label_free_features(outputs["retain"]), label_free_features(t),
                          label_free_features(f), cv_splits=cv_splits, seed=seed)
        if cb is not None:
            _put(m, "mia/catboost", cb.value)
            _put(m, "mia/catboost_attack_acc", cb.attack_accuracy)

    # Zero Retrain Forgetting (paper 000).
    if random_teacher_forget_logits is not None and len(f):
        teacher = np.asarray(random_teacher_forget_logits)
        if teacher.shape != f.logits.shape:
            raise ValueError(f"random_teacher_forget_logits must match the forget logits' shape "
                             f"{f.logits.shape}, got {teacher.shape}")
        _put(m, "zrf", zrf(f.logits, teacher))
        _put(m, "zrf/reference_code", zrf_reference_code(f.logits, teacher))

    # Time.
    if seconds is not None:
        _put(m, "time/seconds", seconds)
        if retrain_seconds:
            _put(m, "time/ratio", seconds / retrain_seconds)
    return m


def _oracle_terms(m: dict[str, float], outputs: ModelOutputs, *, original: ModelOutputs | None,
                  retrain: ModelOutputs | None, retrain_raw: dict[str, float] | None,
                  forget_classes: tuple[int, ...],
                  matched: dict[str, np.ndarray | None] | None, seed: int) -> None:
    """The oracle-referenced terms' raw values and distances, and ``rel/heldout_drop/<split>``,
    for every held-out split ``outputs`` has (the selection evaluation has only val)."""
    raw = raw_terms(outputs, forget_classes=forget_classes, matched=matched, seed=seed)
    m.update(raw)
    if retrain is not None:
        if retrain_raw is None:
            retrain_raw = raw_terms(retrain, forget_classes=forget_classes, matched=matched,
                                    seed=seed)
        m.update(oracle_distances(raw, retrain_raw, model_out=outputs, oracle_out=retrain))
    if original is not None:
        for split in HELDOUT_SPLITS:
            if split in outputs and split in original and len(outputs[split]):
                # The floor's reference is the lower of the original's and the oracle's
                # accuracy: forgetting a large random share costs exact unlearning held-out
                # accuracy too, and a floor the oracle itself breaks would rank not unlearning
                # above unlearning exactly.
                # Both accuracies are raw terms computed above (absent when not finite).
                mine = raw.get(f"heldout/acc/{split}")
                ref = heldout_accuracy(original[split], forget_classes)[0]
                oracle_acc = (retrain_raw or {}).get(f"heldout/acc/{split}")
                if oracle_acc is not None:
                    ref = min(ref, oracle_acc)
                _put(m, f"rel/heldout_drop/{split}", None if mine is None else ref - mine)


def oracle_lr_auc(retrain: ModelOutputs, *, forget_classes: tuple[int, ...] = (),
                  matched: dict[str, np.ndarray | None] | None = None, seed: int = 0,
                  cv_splits: int = 5) -> float | None:
    """The oracle's LR-attack AUC on test (what ``mia/lr_auc_gap_oracle`` compares with); the
    same for every model of a workload and seed, so callers cache it."""
    lr, _ = _lr_attack(retrain, tuple(int(c) for c in forget_classes), cv_splits, seed,
                       (matched or {}).get("test"))
    return None if lr is None else float(lr.auc)


def evaluate_selection(outputs: ModelOutputs, *, forget_classes: tuple[int, ...] = (),
                       original: ModelOutputs | None = None,
                       retrain: ModelOutputs | None = None,
                       matched: dict[str, np.ndarray | None] | None = None,
                       retrain_raw: dict[str, float] | None = None,
                       seconds: float | None = None, retrain_seconds: float | None = None,
                       seed: int = 0) -> dict[str, float]:
    """The metrics that selection reads, from D_f and val alone (a sweep's per-epoch evaluation).

    Every key it returns has the value :func:`evaluate` gives it on the full outputs: the D_f
    accuracy and loss, ``val/acc``, the JS divergences on D_f, the oracle-referenced terms on
    ``val`` with their distances, ``rel/heldout_drop/val`` and the time keys. ``outputs`` holds
    ``forget`` and ``val`` and, under random forgetting, ``retain`` cut to the membership
    probe's rows (:func:`~raysweep.metrics.oracle.membership_rows`), which gives the same probe
    as the whole of D_r. Test metrics, the papers' attacks and everything that reads all of D_r
    are left to the full evaluation of the epoch that selection picks.
    """
    forget_classes = tuple(int(c) for c in forget_classes)
    f, v = outputs["forget"], outputs["val"]
    m: dict[str, float] = {}
    if len(f):
        _put(m, "forget/acc", accuracy(f.logits, f.labels))
        _put(m, "forget/loss", float(np.mean(f.losses())))
    if len(v):
        _put(m, "val/acc", accuracy(v.logits, v.labels))
    if original is not None and len(f):
        _put(m, "rel/forget_acc", relative_accuracy(
            accuracy(f.logits, f.labels),
            accuracy(original["forget"].logits, original["forget"].labels)))
        _put(m, "js/original", float(js_from_logits(f.logits, original["forget"].logits).mean()))
    if retrain is not None and len(f):
        _put(m, "js/retrain", float(js_from_logits(f.logits, retrain["forget"].logits).mean()))
    _oracle_terms(m, outputs, original=original, retrain=retrain, retrain_raw=retrain_raw,
                  forget_classes=forget_classes, matched=matched, seed=seed)
    if seconds is not None:
        _put(m, "time/seconds", seconds)
        if retrain_seconds:
            _put(m, "time/ratio", seconds / retrain_seconds)
    return m
