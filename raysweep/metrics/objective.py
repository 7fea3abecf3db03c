"""The composite objective of a sweep (DESIGN.md section 5); lower is better.

::

    score = w_gap * gap + w_mia * |MIA - MIA_ref| + w_time * time/ratio
            + penalty * (1 + excess)        if the retain-accuracy drop exceeds retain_floor

* ``gap``: ``gap/oracle`` when the metrics have it (a retrain oracle exists), else
  ``gap/forget_test`` (see :func:`raysweep.metrics.evaluate` for both definitions).
* ``MIA``: ``metrics[mia_key]``. The reference ``mia_ref`` defaults to chance level, 0.5, for
  the logistic-regression attack (``mia/lr_auc``, ``mia/lr_acc``), and to 1.0 for
  ``mia/catboost``, whose value is a share of D_f judged non-members (paper 004: higher is more
  private; 0.5 would mean nothing there). Best practice is the retrain oracle's own value:
  ``ObjectiveConfig(mia_ref="oracle")`` reads it from the oracle's metrics.
* ``time/ratio`` is unlearning time / retrain time; when it is missing the term is 0.
* Retain floor: ``retain_floor`` is the largest allowed *absolute* drop of ``retain_key``
  accuracy below the original model's (e.g. 0.05 = five points). The drop is
  ``original_retain - metrics[retain_key]`` or, for ``retain/acc`` without ``original_retain``,
  the ``rel/retain_drop`` metric that :func:`~raysweep.metrics.evaluate` reports. A violation
  adds ``penalty * (1 + excess)``: larger than any regular term (gap <= 2, MIA term <= 1) and
  still graded, so a search can climb back towards feasibility.
* A non-finite score (NaN metrics from a diverged model) becomes ``inf``, the worst value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from raysweep.errors import did_you_mean

__all__ = ["MIA_KEYS", "DEFAULT_MIA_REF", "composite_score", "ObjectiveConfig"]

#: MIA metrics the objective can use, with their default reference values.
# member_rate has no chance level: its natural target is the oracle ("oracle"); 0 is the
# fallback (a model that forgot D_f calls none of it a member).
DEFAULT_MIA_REF: dict[str, float] = {"mia/lr_auc": 0.5, "mia/lr_acc": 0.5, "mia/catboost": 1.0,
                                     "mia/member_rate": 0.0}
MIA_KEYS: tuple[str, ...] = tuple(DEFAULT_MIA_REF)


def _get(metrics: Mapping[str, float], key: str, why: str) -> float:
    if key not in metrics:
        raise KeyError(f"the objective needs metric {key!r} ({why}) but it is missing"
                       f"{did_you_mean(key, metrics)}; available: {', '.join(sorted(metrics))}")
    return float(metrics[key])


def composite_score(metrics: Mapping[str, float], *, w_gap: float = 1.0, w_mia: float = 1.0,
                    w_time: float = 0.1, mia_key: str = "mia/lr_auc",
                    mia_ref: float | None = None, retain_floor: float | None = None,
                    retain_key: str = "retain/acc", original_retain: float | None = None,
                    penalty: float = 10.0) -> float:
    """The composite objective (lower is better); see the module docstring.

    Args:
        metrics: the flat dict from :func:`raysweep.metrics.evaluate`.
        w_gap, w_mia, w_time: term weights (a zero weight skips the term and its metric).
        mia_key: which MIA metric to use.
        mia_ref: the MIA target; ``None`` = :data:`DEFAULT_MIA_REF` of ``mia_key`` (0.5 for LR).
        retain_floor: the largest allowed absolute drop of retain accuracy; ``None`` = no floor.
        retain_key: the accuracy the floor applies to.
        original_retain: the original model's ``retain_key`` accuracy.
        penalty: the base penalty added when the floor is violated.

    Example:
        >>> composite_score({"gap/oracle": 0.1, "mia/lr_auc": 0.6, "time/ratio": 0.5})
        0.25
    """
    score = 0.0
    if w_gap:
        key = "gap/oracle" if "gap/oracle" in metrics else "gap/forget_test"
        score += w_gap * _get(metrics, key, "the forgetting gap")
    if w_mia:
        ref = mia_ref if mia_ref is not None else DEFAULT_MIA_REF.get(mia_key, 0.5)
        score += w_mia * abs(_get(metrics, mia_key, "the MIA term") - ref)
    if w_time and "time/ratio" in metrics:
        score += w_time * float(metrics["time/ratio"])
    if retain_floor is not None:
        if original_retain is not None:
            drop = float(original_retain) - _get(metrics, retain_key, "the retain floor")
        elif retain_key == "retain/acc" and "rel/retain_drop" in metrics:
            drop = float(metrics["rel/retain_drop"])
        else:
            raise ValueError(f"retain_floor={retain_floor} needs the original model's "
                             f"{retain_key!r}: pass original_retain=..., or evaluate with "
                             f"original=... so that the metrics carry 'rel/retain_drop'")
        excess = drop - retain_floor
        if excess > 0:
            score += penalty * (1.0 + excess)
    return score if math.isfinite(score) else float("inf")


class ObjectiveConfig(BaseModel):
    """The composite objective's settings, as written in a search-space YAML ``objective:``.

    ``mia_ref: oracle`` uses the retrain oracle's value of ``mia_key`` as the MIA target.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    w_gap: float = Field(1.0, ge=0, description="weight of the forgetting gap")
    w_mia: float = Field(1.0, ge=0, description="weight of |MIA - mia_ref|")
    w_time: float = Field(0.1, ge=0, description="weight of unlearning time / retrain time")
    mia_key: str = Field("mia/lr_auc", description=f"one of {', '.join(MIA_KEYS)}")
    mia_ref: float | Literal["oracle"] | None = Field(
        None, description="MIA target: a number, 'oracle', or null for the key's default")
    retain_floor: float | None = Field(
        None, ge=0, le=1, description="largest allowed absolute drop of retain accuracy")
    retain_key: str = Field("retain/acc", description="accuracy the retain floor applies to")
    penalty: float = Field(10.0, gt=0, description="base penalty when the floor is violated")

    @field_validator("mia_key")
    @classmethod
    def _known_mia_key(cls, v: str) -> str:
        if v not in MIA_KEYS:
            raise ValueError(f"unknown MIA metric {v!r}{did_you_mean(v, MIA_KEYS)} "
                             f"(choose from: {', '.join(MIA_KEYS)})")
        return v

    @field_validator("retain_key")
    @classmethod
    def _accuracy_key(cls, v: str) -> str:
        if "/acc" not in v:
            raise ValueError(f"retain_key must name an accuracy metric such as 'retain/acc' or "
                             f"'test/acc_retain_classes', got {v!r}")
        return v

    def score(self, metrics: Mapping[str, float], *, original_retain: float | None = None,
              oracle_metrics: Mapping[str, float] | None = None) -> float:
        """:func:`composite_score` with these settings; ``oracle_metrics`` resolves "oracle"."""
        ref: float | None
        if self.mia_ref == "oracle":
            if oracle_metrics is None or self.mia_key not in oracle_metrics:
                raise ValueError(f"objective.mia_ref is 'oracle' but no retrain-oracle value of "
                                 f"{self.mia_key!r} was given (pass oracle_metrics=...)")
            ref = float(oracle_metrics[self.mia_key])
        else:
            ref = self.mia_ref
        return composite_score(metrics, w_gap=self.w_gap, w_mia=self.w_mia, w_time=self.w_time,
                               mia_key=self.mia_key, mia_ref=ref, retain_floor=self.retain_floor,
                               retain_key=self.retain_key, original_retain=original_retain,
                               penalty=self.penalty)
