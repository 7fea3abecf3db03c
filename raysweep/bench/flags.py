"""Flags on paper-table cells and rows: values that are not measurements, so never ranked.

A flagged value is printed with its marker (legend under each table) and left out of every
ranking and every claim verdict (:mod:`raysweep.bench.claims`) automatically:

=============  ======  ==================================================================
code           marker  when
=============  ======  ==================================================================
``censored``   ``ᶜ``   cell: ``relearn/epochs`` reached the suite's ``relearn.max_epochs`` on
                       some seed: the run never relearned, the cap is a lower bound, not a
                       measurement
``no-signal``  ``ˢ``   cell: the workload's signal check found no separation between the
                       original and the oracle, on at least half of its seeds, on the term
                       behind this column (recorded by ``bench run`` under
                       ``references.<workload>.signal``), so the column cannot tell a method
                       that unlearned from one that did not
``constant``   ``ᵏ``   row: on some seed the model predicts a single class on test (macro
                       recall is exactly 1/k and macro precision equals accuracy/k, which holds
                       only for a constant predictor; scikit-learn, ``zero_division=0``)
``floor``      ``ᶠ``   row: the workload's original model is under the suite's
                       ``min_test_acc`` on test accuracy (retained classes for class
                       forgetting): every row of the workload is flagged; or the row's own seed
                       mean is: its forgetting and privacy columns are barred, its accuracy
                       columns (``ACCURACY_METRICS``) still rank, last
=============  ======  ==================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raysweep.bench.baseline import Stat, Summary

if TYPE_CHECKING:
    from raysweep.bench.suite import Suite

__all__ = ["Flag", "Flags", "compute_flags", "reference_cell_flags", "is_constant_predictor",
           "FLAG_LEGEND", "MARKERS", "TERM_OF_METRIC", "ACCURACY_METRICS"]

MARKERS = {"censored": "ᶜ", "no-signal": "ˢ", "constant": "ᵏ", "floor": "ᶠ"}
FLAG_LEGEND = ("Flags (left out of every ranking and claim): ᶜ censored (relearn reached its cap "
               "on some seed: a lower bound), ˢ no signal (the workload's signal check cannot "
               "tell the original from the oracle on this column's term), ᵏ constant predictor "
               "(one predicted class on test on some seed), ᶠ below the accuracy floor "
               "(min_test_acc; the row's test accuracy or the workload's original).")

#: Report column -> the oracle-referenced term whose signal check covers it: an attack column
#: has no signal when the matched loss attack cannot separate original from oracle (nothing
#: memorised), a forget-accuracy column when D_f accuracy does not, and so on. Held-out accuracy
#: is left out on purpose: original and oracle often share it (random forgetting), and it still
#: measures utility, which a ranking needs.
TERM_OF_METRIC: dict[str, str] = {
    "mia/lr_auc": "mia", "mia/member_rate": "mia", "mia/catboost": "mia",
    "mia/lr_auc_gap_oracle": "mia", "mia/lr_acc": "mia",
    "forget/acc": "forget", "rel/forget_acc": "forget", "sape/acc_dis": "forget",
    "zrf": "js", "js/original": "js", "js/retrain": "js",
}

#: The cap-censored metric and where its cap lives (suite.config.relearn.max_epochs).
CENSORED_METRIC = "relearn/epochs"


#: Metrics the row-level accuracy floor does not bar: a broken model's accuracy is still a
#: measurement (it ranks last); what it cannot support is a forgetting or privacy column.
ACCURACY_METRICS = frozenset({
    "test/acc", "test/acc_retain_classes", "retain/acc", "val/acc", "rel/retain_acc",
    "rel/test_acc", "sape/acc_err_oracle", "sape/acc_err_original", "test/f1_macro",
    "test/precision_macro", "test/recall_macro"})


@dataclass(frozen=True)
class Flag:
    code: str      # censored | no-signal | constant | floor
    reason: str
    spares: frozenset[str] = frozenset()   # metrics this flag does not bar

    @property
    def marker(self) -> str:
        return MARKERS[self.code]


@dataclass
class Flags:
    """Row flags (entry id -> flags) and cell flags ((entry id, metric) -> flags)."""

    rows: dict[str, list[Flag]]
    cells: dict[tuple[str, str], list[Flag]]

    def of(self, entry: str, metric: str | None = None) -> list[Flag]:
        """Every flag that bars ``entry`` (on ``metric``) from a ranking."""
        out = [f for f in self.rows.get(entry, []) if metric is None or metric not in f.spares]
        if metric is not None:
            out += self.cells.get((entry, metric), [])
        return out

    def markers(self, entry: str, metric: str | None = None) -> str:
        flags = self.rows.get(entry, []) if metric is None else self.cells.get((entry, metric), [])
        return "".join(dict.fromkeys(f.marker for f in flags))


def is_constant_predictor(acc: float, precision: float, recall: float) -> bool:
    """True when test predictions are one class (see the module docstring for the identity)."""
    if not all(math.isfinite(v) for v in (acc, precision, recall)) or recall <= 0:
        return False
    k = round(1.0 / recall)
    return k >= 2 and abs(recall - 1.0 / k) < 1e-9 and abs(precision - acc / k) < 1e-6


def _values(s: Stat | None) -> tuple[float, ...]:
    if s is None:
        return ()
    return s.values or ((s.mean,) if s.n else ())


def _accuracy_key(stats: Mapping[str, Any]) -> str:
    # Class forgetting: the forgotten classes are meant to fail, so the floor reads the rest.
    return "test/acc_retain_classes" if "test/acc_retain_classes" in stats else "test/acc"


def compute_flags(suite: Suite, summary: Summary,
                  references: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Flags:
    """Every flag of every entry of ``suite`` from its seed statistics and reference rows."""
    rows: dict[str, list[Flag]] = {}
    cells: dict[tuple[str, str], list[Flag]] = {}
    floor = suite.config.min_test_acc
    cap = suite.config.relearn.max_epochs if suite.config.relearn is not None else None
    for e in suite.entries:
        stats = summary.get(e.id, {})
        refs = references.get(e.workload.name, {})
        row: list[Flag] = []
        acc, prec, rec = (_values(stats.get(k)) for k in
                          ("test/acc", "test/precision_macro", "test/recall_macro"))
        const = [i for i, (a, p, r) in enumerate(zip(acc, prec, rec))
                 if is_constant_predictor(a, p, r)]
        if const:
            row.append(Flag("constant", f"one predicted class on test on {len(const)} of "
                                        f"{len(acc)} seeds"))
        if floor is not None:
            original = refs.get("original", {})
            okey = _accuracy_key(original)
            if original.get(okey) is not None and float(original[okey]) < floor:
                row.append(Flag("floor", f"the workload's original model has {okey} "
                                         f"{float(original[okey]):.3g} < min_test_acc {floor:g}"))
            else:
                key = _accuracy_key(stats)
                s = stats.get(key)
                if s is not None and s.n and s.mean < floor:
                    row.append(Flag("floor", f"{key} {s.mean:.3g} < min_test_acc {floor:g}",
                                    spares=ACCURACY_METRICS))
        if row:
            rows[e.id] = row
        if cap is not None:
            vals = _values(stats.get(CENSORED_METRIC))
            hit = sum(1 for v in vals if v >= cap)
            if hit:
                cells[(e.id, CENSORED_METRIC)] = [Flag(
                    "censored", f"relearn reached its cap of {cap} epochs on {hit} of "
                                f"{len(vals)} seeds (never relearned: a lower bound)")]
        signal = refs.get("signal", {})
        for metric in stats:
            term = TERM_OF_METRIC.get(metric)
            if term is None:
                continue
            sig = _term_signal(signal, term)
            if sig is not None and sig < 0.5:
                cells.setdefault((e.id, metric), []).append(Flag(
                    "no-signal", f"the workload's signal check: term {term!r} does not separate "
                                 f"the original from the oracle"))
    return Flags(rows, cells)


def _term_signal(signal: Mapping[str, float], term: str) -> float | None:
    """The share of the workload's seeds on which ``term`` had signal (None: not recorded)."""
    v = signal.get(term)
    return None if v is None else float(v)


def reference_cell_flags(suite: Suite, references: Mapping[str, Mapping[str, Mapping[str, float]]],
                         workload: str, ref: str, metric: str) -> str:
    """Markers for a reference row's cell (a censored relearn time of the oracle)."""
    cap = suite.config.relearn.max_epochs if suite.config.relearn is not None else None
    v = references.get(workload, {}).get(ref, {}).get(metric)
    if cap is not None and metric == CENSORED_METRIC and v is not None and float(v) >= cap:
        return MARKERS["censored"]
    return ""
