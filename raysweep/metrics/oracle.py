"""Quality terms measured against the retrain oracle, the same way on both models.

The question every term asks is "how far is this model from the model retrained without D_f?",
so the oracle itself scores exactly 0 on every term and a model that did not unlearn (the
original, or an edit that only hides what it knows) scores what its distance to the oracle is.

Each term comes in a *raw* form (the model's own value, also computed for the oracle) and a
*distance* ``|raw(model) - raw(oracle)|``. Terms that read held-out data are computed twice:
on ``val`` (``.../val``: what selection reads - Optuna, the best-epoch pick) and on ``test``
(``.../test``: what leaderboards and suites report). ``test`` is never read by selection.

=========================  =====================================================================
raw key                    meaning (distance key: ``dist/<name>``)
=========================  =====================================================================
``forget/acc``             accuracy on D_f (``dist/forget_acc``)
``heldout/acc/<split>``    held-out accuracy; class forgetting: the *sum* of the distances on
                           retained and on forgotten classes (``dist/heldout_acc/<split>``)
``mia/auc/<split>``        loss-threshold membership attack: AUC of ``-loss`` separating D_f
                           (members) from *matched* held-out non-members (below); a rank
                           statistic with a fixed direction (lower loss = member), so it cannot
                           flip the way a fitted attack on raw loss can (``dist/mia_auc/<split>``)
``js/retrain``             mean Jensen-Shannon divergence to the oracle's outputs on D_f; already
                           a distance (``dist/js``)
``probe/<split>``          representation probe (below) (``dist/probe/<split>``)
=========================  =====================================================================

**Matched non-members.** Members are D_f. Non-members are held-out samples that the scenario
would have selected: the forgotten classes' samples (class forgetting), the sub-class group's
samples (subclass), the samples passing the same selector (targeted), every held-out sample
(random). With unmatched non-members the attack learns "is this a forgotten class?" rather than
"was this sample trained on?" (the oracle then scores far from 0.5 and a model that suppresses
the class looks private).

**Representation probe ("forgotten or hidden?").** A logistic regression on the frozen
penultimate features (the input of the last linear layer), trained on held-out data only, then
applied to D_f's features:

* class / subclass / targeted forgetting: the probe learns "is this a sample of the forgotten
  kind?" (the matched mask) on the held-out split; ``probe`` is the share of D_f it recognises.
  Editing the head or the logits leaves the features, so this stays at the original's value;
* random forgetting: the probe learns membership (a sample of D_r vs held-out) on features;
  ``probe`` is the share of D_f it calls members.

The oracle's value is the reference; the distance is the term.

**Spread.** :func:`term_spread` gives the standard error of each raw value from resampling
(bootstrap of the attack's and the probe's evaluation samples; binomial for accuracies), which
the workload's signal check uses to say whether a term separates original from oracle at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from raysweep.metrics._outputs import ModelOutputs, SplitOutputs
from raysweep.metrics.accuracy import accuracy, class_split_accuracy
from raysweep.metrics.divergence import js_from_logits

__all__ = ["HELDOUT_SPLITS", "TERMS", "LM_TERMS", "terms_for", "floor_key", "Term", "loss_auc",
           "representation_probe", "raw_terms", "oracle_distances", "term_spread",
           "membership_rows"]

#: Held-out splits: ``val`` for selection, ``test`` for reporting.
HELDOUT_SPLITS: tuple[str, ...] = ("val", "test")


@dataclass(frozen=True)
class Term:
    """One oracle-referenced quality term of the objective."""

    name: str           # the ObjectiveConfig weight is ``w_<name>``
    raw: str            # raw-value key ("{split}" is replaced by val/test)
    dist: str           # distance key ("{split}" likewise)
    meaning: str

    def raw_key(self, split: str) -> str:
        return self.raw.format(split=split)

    def dist_key(self, split: str) -> str:
        return self.dist.format(split=split)


#: The objective's quality terms, in display order.
TERMS: tuple[Term, ...] = (
    Term("forget", "forget/acc", "dist/forget_acc", "|accuracy on D_f - oracle's|"),
    Term("heldout", "heldout/acc/{split}", "dist/heldout_acc/{split}",
         "|held-out accuracy - oracle's| (class forgetting: retained + forgotten classes)"),
    Term("mia", "mia/auc/{split}", "dist/mia_auc/{split}",
         "|loss-attack AUC (D_f vs matched held-out) - oracle's|"),
    Term("js", "js/retrain", "dist/js", "mean JS divergence to the oracle's outputs on D_f"),
    Term("probe", "probe/{split}", "dist/probe/{split}",
         "|linear probe on frozen features recovering D_f - oracle's|"),
)

#: The objective's quality terms on a text-generation workload (:mod:`raysweep.lm.metrics`):
#: accuracies are next-token accuracies, JS is over next-token distributions, and verbatim
#: memorisation takes the probe's place (a language model has no class features to probe).
LM_TERMS: tuple[Term, ...] = (
    Term("forget", "forget/acc", "dist/forget_acc", "|next-token accuracy on D_f - oracle's|"),
    Term("heldout", "heldout/acc/{split}", "dist/heldout_acc/{split}",
         "|held-out next-token accuracy - oracle's| (source forgetting: retained + forgotten "
         "sources)"),
    Term("mia", "mia/auc/{split}", "dist/mia_auc/{split}",
         "|loss-attack AUC (D_f vs held-out text of the same sources) - oracle's|"),
    Term("js", "js/retrain", "dist/js",
         "mean JS divergence to the oracle's next-token distributions on D_f"),
    Term("verbatim", "forget/verbatim", "dist/forget_verbatim",
         "|verbatim continuation rate on D_f - oracle's|"),
)


def terms_for(task: str) -> tuple[Term, ...]:
    """The objective's terms for a workload task (``classify`` or ``generate``)."""
    return LM_TERMS if task == "generate" else TERMS


def floor_key(task: str, split: str) -> str:
    """The drop the retain floor reads (below the lower of the original's and the oracle's):
    held-out accuracy for a classifier; for a language model, next-token accuracy on D_r (a model
    that memorises its training text generalises little, so held-out accuracy would not see a
    method wreck what it knows of D_r)."""
    return "rel/retain_drop" if task == "generate" else f"rel/heldout_drop/{split}"


_MIN_PROBE = 4  # samples per probe class below which the probe is not fitted


def loss_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float | None:
    """P(member loss < non-member loss), ties counted half: the AUC of the score ``-loss``.

    ``None`` when either side is empty. Infinite losses (underflowed probabilities) rank last.
    """
    a = np.asarray(member_losses, dtype=np.float64).reshape(-1)
    b = np.asarray(nonmember_losses, dtype=np.float64).reshape(-1)
    if len(a) == 0 or len(b) == 0:
        return None
    a = np.nan_to_num(a, nan=np.inf)
    b = np.nan_to_num(b, nan=np.inf)
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([-a, -b]))  # higher score (lower loss) = higher rank
    u = ranks[: len(a)].sum() - len(a) * (len(a) + 1) / 2.0
    return float(u / (len(a) * len(b)))


def _standardise(fit: np.ndarray, *apply: np.ndarray) -> list[np.ndarray]:
    mu = fit.mean(axis=0)
    sd = fit.std(axis=0) + 1e-6
    return [(x - mu) / sd for x in (fit, *apply)]


def representation_probe(forget: np.ndarray, heldout: np.ndarray, heldout_target: np.ndarray,
                         *, seed: int = 0) -> np.ndarray | None:
    """Per-row probe probabilities of the positive target on ``forget`` features, from a
    logistic-regression probe fitted on held-out features.

    ``heldout_target`` is the binary target of each held-out row. ``None`` when either target
    class has fewer than a handful of rows (nothing to learn from).
    """
    y = np.asarray(heldout_target).astype(np.int64).reshape(-1)
    if len(forget) == 0 or min(int(y.sum()), int(len(y) - y.sum())) < _MIN_PROBE:
        return None
    from sklearn.linear_model import LogisticRegression

    x_fit, x_f = _standardise(np.asarray(heldout, np.float64), np.asarray(forget, np.float64))
    # Newton-Cholesky reaches the same optimum as lbfgs (the problem is strictly convex) in a
    # handful of iterations when rows far outnumber features, as they do here.
    probe = LogisticRegression(class_weight="balanced", C=1.0, max_iter=500,
                               solver="newton-cholesky", random_state=seed % (2**32))
    probe.fit(x_fit, y)
    return probe.predict_proba(x_f)[:, 1]


def _probe_rows(out: ModelOutputs, split: str, matched: np.ndarray | None,
                seed: int) -> np.ndarray | None:
    """The probe's probability for every D_f row, fitted on ``split`` (see the module
    docstring)."""
    f, h = out["forget"], out[split]
    if f.features is None or h.features is None:
        return None
    if matched is not None:  # "is this a sample of the forgotten kind?"
        return representation_probe(f.features, h.features, matched, seed=seed)
    r = out.splits.get("retain")
    if r is None or r.features is None or len(r) == 0:
        return None
    # Membership: D_r (1) vs held-out (0), balanced, as many members as non-members.
    rows = membership_rows(len(r), len(h), seed)
    k = len(rows)
    x = np.concatenate([r.features[rows], h.features])
    y = np.concatenate([np.ones(k, np.int64), np.zeros(len(h), np.int64)])
    return representation_probe(f.features, x, y, seed=seed)


def membership_rows(n_retain: int, n_heldout: int, seed: int) -> np.ndarray:
    """The D_r rows the membership probe (random forgetting) fits on: ``min(n_retain,
    n_heldout)`` distinct rows, sorted, drawn with ``seed``.

    Evaluating only these rows of D_r gives the same probe: on a D_r already cut to them, the
    draw takes every row in order (what per-epoch selection evaluation relies on).
    """
    rng = np.random.default_rng(seed)
    k = min(n_retain, n_heldout)
    return np.sort(rng.choice(n_retain, size=k, replace=False))


def _matched(split_out: SplitOutputs, matched: np.ndarray | None) -> SplitOutputs:
    return split_out if matched is None else split_out.subset(np.asarray(matched, dtype=bool))


def heldout_accuracy(split_out: SplitOutputs,
                     forget_classes: tuple[int, ...]) -> tuple[float, ...]:
    """``(accuracy,)``; under class forgetting ``(retained classes, forgotten classes)``."""
    if forget_classes:
        return class_split_accuracy(split_out.logits, split_out.labels, forget_classes)
    return (accuracy(split_out.logits, split_out.labels),)


def raw_terms(out: ModelOutputs, *, forget_classes: tuple[int, ...] = (),
              matched: Mapping[str, np.ndarray | None] | None = None,
              seed: int = 0) -> dict[str, float]:
    """The raw value of every term for one model (the same function runs on the oracle).

    ``matched[split]`` is the boolean mask of held-out rows matched to the forget set (``None``
    for random forgetting: every row). Keys whose data is missing are left out.
    """
    matched = dict(matched or {})
    f = out["forget"]
    m: dict[str, float] = {}
    if len(f):
        m["forget/acc"] = accuracy(f.logits, f.labels)
    for split in HELDOUT_SPLITS:
        if split not in out or len(out[split]) == 0:
            continue
        h = out[split]
        accs = heldout_accuracy(h, forget_classes)
        for i, a in enumerate(accs):
            if np.isfinite(a):
                m[f"heldout/acc{'' if i == 0 else '_forgotten'}/{split}"] = float(a)
        mask = matched.get(split)
        nonmembers = _matched(h, mask)
        auc = loss_auc(f.losses(), nonmembers.losses()) if len(f) else None
        if auc is not None:
            m[f"mia/auc/{split}"] = auc
            m[f"mia/auc_n/{split}"] = float(min(len(f), len(nonmembers)))
        verdict = _probe_rows(out, split, mask, seed)
        if verdict is not None:
            m[f"probe/{split}"] = float(verdict.mean())
    return m


def oracle_distances(model_raw: Mapping[str, float], oracle_raw: Mapping[str, float], *,
                     model_out: ModelOutputs, oracle_out: ModelOutputs) -> dict[str, float]:
    """``dist/...`` keys: the distance of each raw value to the oracle's (see module table)."""
    d: dict[str, float] = {}

    def gap(key: str) -> float | None:
        if key in model_raw and key in oracle_raw:
            return abs(float(model_raw[key]) - float(oracle_raw[key]))
        return None

    if (v := gap("forget/acc")) is not None:
        d["dist/forget_acc"] = v
    for split in HELDOUT_SPLITS:
        parts = [gap(f"heldout/acc/{split}"), gap(f"heldout/acc_forgotten/{split}")]
        if parts[0] is not None:
            d[f"dist/heldout_acc/{split}"] = float(sum(p for p in parts if p is not None))
        for name in ("mia/auc", "probe"):
            if (v := gap(f"{name}/{split}")) is not None:
                key = "dist/mia_auc" if name == "mia/auc" else "dist/probe"
                d[f"{key}/{split}"] = v
    f, rf = model_out["forget"], oracle_out["forget"]
    if len(f) and len(rf) == len(f):
        d["dist/js"] = float(js_from_logits(f.logits, rf.logits).mean())
    return d


def term_spread(out: ModelOutputs, *, forget_classes: tuple[int, ...] = (),
                matched: Mapping[str, np.ndarray | None] | None = None, split: str = "val",
                reference: ModelOutputs | None = None, n_boot: int = 200,
                seed: int = 0) -> dict[str, float]:
    """Standard error of each raw value on ``split`` (keys as :func:`raw_terms`; ``dist/js``).

    Accuracies: binomial ``sqrt(p (1 - p) / n)``. Attack AUC: standard deviation over
    ``n_boot`` bootstrap resamples of members and non-members. Probe: standard error of the
    mean D_f probability (the probe itself is fitted once). ``dist/js`` (needs ``reference``, the
    oracle's outputs): standard error of the mean per-sample divergence.
    """
    matched = dict(matched or {})
    rng = np.random.default_rng(seed)
    f, h = out["forget"], out[split]
    s: dict[str, float] = {}

    def binom(p: float, n: int) -> float:
        return float(np.sqrt(max(p * (1 - p), 0.0) / max(n, 1)))

    if len(f):
        s["forget/acc"] = binom(accuracy(f.logits, f.labels), len(f))
    if forget_classes:
        fc = np.isin(h.labels, np.asarray(forget_classes))
        accs = heldout_accuracy(h, forget_classes)
        s[f"heldout/acc/{split}"] = binom(accs[0], int((~fc).sum()))
        if np.isfinite(accs[1]):
            s[f"heldout/acc_forgotten/{split}"] = binom(accs[1], int(fc.sum()))
    elif len(h):
        s[f"heldout/acc/{split}"] = binom(heldout_accuracy(h, ())[0], len(h))
    non = _matched(h, matched.get(split))
    if len(f) and len(non):
        lf, ln = f.losses(), non.losses()
        boots = [loss_auc(lf[rng.integers(0, len(lf), len(lf))],
                          ln[rng.integers(0, len(ln), len(ln))]) for _ in range(n_boot)]
        s[f"mia/auc/{split}"] = float(np.std([b for b in boots if b is not None]))
    verdict = _probe_rows(out, split, matched.get(split), seed)
    if verdict is not None:
        s[f"probe/{split}"] = float(np.std(verdict) / np.sqrt(len(verdict)))
    if reference is not None and len(f):
        js = js_from_logits(f.logits, reference["forget"].logits)
        s["dist/js"] = float(np.std(js) / np.sqrt(len(js)))
    return s
