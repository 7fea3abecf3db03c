"""The composite objective of a sweep (DESIGN.md section 5); lower is better; the oracle scores 0.

::

    score = w_forget  * |acc(D_f)           - oracle's|
          + w_heldout * |acc(held-out)      - oracle's|   (class forgetting: retained + forgotten)
          + w_mia     * |attack AUC         - oracle's|   (D_f vs matched held-out non-members)
          + w_js      * mean JS(model, oracle) on D_f
          + w_probe   * |feature probe on D_f - oracle's|
          + w_cost    * cost/ratio                       (sample-passes / the oracle's; 0 = off)
          + penalty * (1 + excess)   if held-out accuracy dropped more than retain_floor
                                     below the lower of the original's and the oracle's

On a text-generation workload (a causal language model, :mod:`raysweep.lm.metrics`) the terms
are :data:`~raysweep.metrics.oracle.LM_TERMS`: the accuracies are next-token accuracies, JS is
over next-token distributions, ``w_verbatim * |verbatim continuation rate on D_f - oracle's|``
takes the feature probe's place, and the retain floor reads the drop of next-token accuracy on
D_r (:func:`~raysweep.metrics.oracle.floor_key`). :meth:`ObjectiveConfig.for_task` selects
them; the run engine does it for every run on such a workload.

Every quality term is a distance to the retrain oracle measured the same way on both models
(:mod:`raysweep.metrics.oracle`), so the oracle scores exactly 0 on quality, and the original or
an edit that only hides what the model knows (suppressing a logit, re-initialising the head)
pays for every way it differs from a model that never saw D_f. Cost is a budget
(``budget.max_cost_ratio``); if it is also weighted, the oracle pays it too (its ratio is 1).

Held-out terms are read on one split: ``val`` for selection (the default everywhere a search or
a best-epoch pick happens) and ``test`` for reporting (``objective/test``). A non-finite score
(NaN metrics from a diverged model) becomes ``inf``, the worst value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from raysweep.errors import did_you_mean
from raysweep.metrics.oracle import TERMS, Term, floor_key, terms_for

__all__ = ["composite_score", "ObjectiveConfig", "SELECTION_SPLIT", "REPORT_SPLIT",
           "LEGACY_FIELDS"]

#: The split selection reads (Optuna, best epoch) and the one results are reported on.
SELECTION_SPLIT = "val"
REPORT_SPLIT = "test"

#: Fields of the old objective (before oracle-referenced terms) and what replaced them.
LEGACY_FIELDS: dict[str, str] = {
    "w_gap": "w_forget and w_heldout (distances of D_f and held-out accuracy to the oracle's)",
    "w_time": "w_cost (sample-passes / the oracle's; wall time is logged, not optimised) and "
              "budget.max_cost_ratio",
    "mia_key": "w_mia (the loss-attack AUC on matched non-members, distance to the oracle's)",
    "mia_ref": "w_mia (the reference is always the oracle's value)",
    "retain_key": "retain_floor (it applies to held-out accuracy on the selection split)",
}


def composite_score(metrics: Mapping[str, float], *, split: str = SELECTION_SPLIT,
                    w_forget: float = 1.0, w_heldout: float = 1.0, w_mia: float = 1.0,
                    w_js: float = 1.0, w_probe: float = 1.0, w_cost: float = 0.0,
                    retain_floor: float | None = 0.05, penalty: float = 10.0,
                    w_verbatim: float = 1.0, terms: tuple[Term, ...] = TERMS,
                    floor: str = "rel/heldout_drop/{split}") -> float:
    """The composite objective (lower is better); see the module docstring.

    Args:
        metrics: the flat dict from :func:`raysweep.metrics.evaluate` (with a retrain oracle),
            plus ``cost/ratio`` when ``w_cost`` is non-zero.
        split: the held-out split the held-out terms read (``val`` to select, ``test`` to report).
        w_forget, w_heldout, w_mia, w_js, w_probe, w_cost: term weights; a zero weight skips the
            term and its metric.
        retain_floor: the largest allowed drop of held-out accuracy below the lower of the
            original's and the oracle's
            (``rel/heldout_drop/<split>``); ``None`` = no floor.
        penalty: the base penalty added when the floor is violated.
        w_verbatim: the verbatim-memorisation term's weight (language-model terms only).
        terms: the task's terms (:func:`~raysweep.metrics.oracle.terms_for`).
        floor: the key of the drop the retain floor reads (``{split}``: the split's);
            :func:`~raysweep.metrics.oracle.floor_key` gives the task's.

    Raises:
        KeyError: a weighted term's metric is missing (the message lists what is there).

    Example:
        >>> composite_score({"dist/forget_acc": 0.1, "dist/heldout_acc/val": 0.02,
        ...                  "dist/mia_auc/val": 0.05, "dist/js": 0.03, "dist/probe/val": 0.0,
        ...                  "rel/heldout_drop/val": 0.01})
        0.2
    """
    weights = {"forget": w_forget, "heldout": w_heldout, "mia": w_mia, "js": w_js,
               "probe": w_probe, "verbatim": w_verbatim}
    score = 0.0
    for term in terms:
        w = weights[term.name]
        if w:
            score += w * _get(metrics, term.dist_key(split), f"the {term.name} term")
    if w_cost:
        score += w_cost * _get(metrics, "cost/ratio", "the cost term")
    if retain_floor is not None:
        drop = _get(metrics, floor.format(split=split), "the retain floor")
        excess = drop - retain_floor
        if excess > 0:
            score += penalty * (1.0 + excess)
    score = round(score, 12)  # sums of exact zeros stay exactly 0 for the oracle
    return score if math.isfinite(score) else float("inf")


def _get(metrics: Mapping[str, float], key: str, why: str) -> float:
    if key not in metrics:
        raise KeyError(f"the objective needs metric {key!r} ({why}) but it is missing"
                       f"{did_you_mean(key, metrics)}; available: {', '.join(sorted(metrics))}")
    return float(metrics[key])


class _WeightBounds(TypedDict):
    ge: int
    le: int
    allow_inf_nan: bool


_W: _WeightBounds = {"ge": 0, "le": 1000, "allow_inf_nan": False}


class ObjectiveConfig(BaseModel):
    """The composite objective's settings, as written in a search-space YAML ``objective:``."""

    # Strict: a YAML boolean is not a weight; no NaN/inf anywhere (every trial would score it).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    w_forget: float = Field(1.0, **_W, description="weight of |acc(D_f) - oracle's|")
    w_heldout: float = Field(1.0, **_W, description="weight of |held-out acc - oracle's|")
    w_mia: float = Field(1.0, **_W, description="weight of |attack AUC - oracle's|")
    w_js: float = Field(1.0, **_W, description="weight of JS(model, oracle) on D_f")
    w_probe: float = Field(1.0, **_W, description="weight of |feature probe - oracle's|")
    w_verbatim: float = Field(1.0, **_W, description="weight of |verbatim continuation rate on "
                                                     "D_f - oracle's| (language-model "
                                                     "workloads)")
    w_cost: float = Field(0.0, **_W, description="weight of sample-passes / the oracle's "
                                                 "(the oracle pays it too; 0 = a budget only)")
    retain_floor: float | None = Field(
        0.05, ge=0, le=1, allow_inf_nan=False,
        description="largest allowed drop of held-out accuracy below the lower of the "
                    "original's and the oracle's (null = off)")
    penalty: float = Field(10.0, gt=0, le=1e6, allow_inf_nan=False,
                           description="base penalty when the floor is violated")
    #: The workload task whose terms the score sums (set by :meth:`for_task`, not by YAML).
    _task: str = PrivateAttr("classify")

    def for_task(self, task: str) -> ObjectiveConfig:
        """These settings over ``task``'s terms (``classify`` or ``generate``)."""
        out = self.model_copy()
        out._task = task
        return out

    @property
    def task(self) -> str:
        return self._task

    @property
    def terms(self) -> tuple[Term, ...]:
        return terms_for(self._task)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            old = [k for k in data if k in LEGACY_FIELDS]
            if old:
                k = old[0]
                raise ValueError(f"objective.{k} belongs to the old objective; it was replaced "
                                 f"by {LEGACY_FIELDS[k]}: remove it (see README, 'Objective')")
        return data

    def weights(self) -> dict[str, float]:
        """``{term name: weight}``, the cost term included as ``cost``."""
        names = {t.name for t in self.terms}
        every = {"forget": self.w_forget, "heldout": self.w_heldout, "mia": self.w_mia,
                 "js": self.w_js, "probe": self.w_probe, "verbatim": self.w_verbatim}
        return {**{k: w for k, w in every.items() if k in names}, "cost": self.w_cost}

    def weighted_keys(self, split: str = SELECTION_SPLIT) -> list[str]:
        """The metric keys the score reads on ``split`` (for checks before a sweep starts)."""
        keys = [t.dist_key(split) for t in self.terms if self.weights()[t.name]]
        if self.w_cost:
            keys.append("cost/ratio")
        if self.retain_floor is not None:
            keys.append(floor_key(self._task, split))
        return keys

    def describe(self) -> str:
        """One line: the non-zero terms and the floor."""
        parts = [f"{w:g}*{name}" for name, w in self.weights().items() if w]
        floor = ("off" if self.retain_floor is None else f"{self.retain_floor:g}")
        return (f"oracle-referenced composite: {' + '.join(parts) or '0'}; retain floor {floor}; "
                f"selection on {SELECTION_SPLIT}, reported on {REPORT_SPLIT}")

    def score(self, metrics: Mapping[str, float], *, split: str = SELECTION_SPLIT) -> float:
        """:func:`composite_score` with these settings on ``split``."""
        return composite_score(metrics, split=split, w_forget=self.w_forget,
                               w_heldout=self.w_heldout, w_mia=self.w_mia, w_js=self.w_js,
                               w_probe=self.w_probe, w_cost=self.w_cost,
                               retain_floor=self.retain_floor, penalty=self.penalty,
                               w_verbatim=self.w_verbatim, terms=self.terms,
                               floor=floor_key(self._task, "{split}"))

