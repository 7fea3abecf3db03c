"""Forget scenarios: which training samples the model must forget.

Every scenario turns a :class:`LoadedDataset` into a boolean mask over the training set
(``True`` = in the forget set D_f). The rest of the training set is the retain set D_r.

* ``class``: one or several whole classes (paper 000 full-class, paper 003 multi-class)
* ``subclass``: one fine group inside a coarse class (CIFAR-100 "rocket", Fashion-MNIST "Shirt")
* ``random``: a uniformly random fraction of the training set (papers 000, 002, 004)
* ``targeted``: a feature predicate chosen from :data:`SELECTORS` (paper 002's "reddest" images,
  texts containing a word); predicates are registered Python functions, never strings to eval.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from raysweep.data._base import LoadedDataset
from raysweep.errors import ConfigError, did_you_mean

__all__ = [
    "ClassScenario", "SubclassScenario", "RandomScenario", "TargetedScenario",
    "Scenario", "SELECTORS", "register_selector",
]


class _ScenarioBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def forget_mask(self, ds: LoadedDataset, seed: int) -> np.ndarray:
        mask = self._mask(ds, seed)
        n = int(mask.sum())
        if n == 0:
            raise ConfigError(f"scenario {self.describe()} selects an empty forget set "
                              f"on {ds.name}")
        if n == len(mask):
            raise ConfigError(f"scenario {self.describe()} selects every training sample "
                              f"of {ds.name}; "
                              f"nothing would remain to retain")
        return mask

    def forget_classes(self, ds: LoadedDataset) -> tuple[int, ...]:
        """Classes removed entirely (empty unless this is class forgetting)."""
        return ()

    def _mask(self, ds: LoadedDataset, seed: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        return self.model_dump_json(exclude_none=True)


def _class_index(ds: LoadedDataset, value: int | str, names: list[str], what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(names):
            return value
        raise ConfigError(f"{what} {value} is not in {ds.name} (valid: 0..{len(names) - 1})")
    if value in names:
        return names.index(value)
    lowered = [n.lower() for n in names]
    if str(value).lower() in lowered:
        return lowered.index(str(value).lower())
    raise ConfigError(f"{what} {value!r} is not in {ds.name}{did_you_mean(str(value), names)} "
                      f"(valid: {', '.join(names)})")


class ClassScenario(_ScenarioBase):
    """Forget every sample of one or more classes (by index or name)."""

    kind: Literal["class"] = "class"
    classes: list[int | str] = Field(min_length=1)

    def forget_classes(self, ds: LoadedDataset) -> tuple[int, ...]:
        idx = tuple(sorted({_class_index(ds, c, ds.class_names, "class") for c in self.classes}))
        if len(idx) >= ds.num_classes:
            raise ConfigError(f"scenario forgets all {ds.num_classes} classes of {ds.name}; "
                              f"keep at least one")
        return idx

    def _mask(self, ds: LoadedDataset, seed: int) -> np.ndarray:
        return np.isin(ds.train_y, self.forget_classes(ds))


class SubclassScenario(_ScenarioBase):
    """Forget one fine group (sub-class) while its coarse class stays learnable."""

    kind: Literal["subclass"] = "subclass"
    group: int | str

    def _mask(self, ds: LoadedDataset, seed: int) -> np.ndarray:
        if ds.group_names is None or ds.train_groups is None:
            raise ConfigError(f"subclass scenario needs a dataset with sub-class groups; "
                              f"{ds.name} has none "
                              f"(use cifar100 or fashion-mnist with options.labels: coarse)")
        g = _class_index(ds, self.group, ds.group_names, "group")
        return ds.train_groups == g


class RandomScenario(_ScenarioBase):
    """Forget a uniformly random fraction of the training set."""

    kind: Literal["random"] = "random"
    fraction: float

    @field_validator("fraction")
    @classmethod
    def _in_unit_interval(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {v}")
        return v

    def _mask(self, ds: LoadedDataset, seed: int) -> np.ndarray:
        n = len(ds.train_y)
        k = round(self.fraction * n)
        mask = np.zeros(n, dtype=bool)
        mask[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
        return mask


Selector = Callable[..., np.ndarray]
SELECTORS: dict[str, tuple[str, Selector]] = {}


def register_selector(name: str, kind: str) -> Callable[[Selector], Selector]:
    """Register ``fn(ds, **params) -> bool mask`` as a targeted-forgetting predicate."""

    def deco(fn: Selector) -> Selector:
        SELECTORS[name] = (kind, fn)
        return fn

    return deco


def _top(scores: np.ndarray, count: int | None, fraction: float | None) -> np.ndarray:
    if (count is None) == (fraction is None):
        raise ConfigError("targeted selector needs exactly one of params.count or params.fraction")
    n = len(scores)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise ConfigError(f"targeted selector: params.count must be a whole number, got {count!r}")
    if fraction is not None and (isinstance(fraction, bool)
                                 or not isinstance(fraction, (int, float))
                                 or not 0.0 < float(fraction) < 1.0):
        raise ConfigError(f"targeted selector: params.fraction must be a number in (0, 1), got "
                          f"{fraction!r}")
    if count is not None:
        k = count
    else:
        assert fraction is not None  # exactly one of the two is set (checked above)
        k = round(float(fraction) * n)
    if not 0 < k < n:
        raise ConfigError(f"targeted selector would select {k} of {n} samples; "
                          f"choose 0 < count < {n}")
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


@register_selector("channel_dominance", kind="image")
def channel_dominance(ds: LoadedDataset, channel: int = 0, count: int | None = None,
                      fraction: float | None = None) -> np.ndarray:
    """Images where one channel most exceeds the others' mean (paper 002: the 525 "reddest")."""
    x = ds.train_x
    if not 0 <= channel < x.shape[1]:
        raise ConfigError(f"channel {channel} out of range for {x.shape[1]}-channel images")
    means = x.mean(axis=(2, 3))
    others = np.delete(means, channel, axis=1).mean(axis=1) if x.shape[1] > 1 else 0.0
    return _top(means[:, channel] - others, count, fraction)


@register_selector("brightness", kind="image")
def brightness(ds: LoadedDataset, count: int | None = None, fraction: float | None = None,
               darkest: bool = False) -> np.ndarray:
    """The brightest (or darkest) images by mean pixel value."""
    score = ds.train_x.mean(axis=(1, 2, 3))
    return _top(-score if darkest else score, count, fraction)


@register_selector("contains_word", kind="text")
def contains_word(ds: LoadedDataset, word: str = "", case_sensitive: bool = False) -> np.ndarray:
    """Texts that contain a given word (whole-word match)."""
    if not word:
        raise ConfigError("contains_word needs params.word")
    pattern = re.compile(rf"\b{re.escape(word)}\b", 0 if case_sensitive else re.IGNORECASE)
    return np.array([bool(pattern.search(t)) for t in ds.train_x], dtype=bool)


class TargetedScenario(_ScenarioBase):
    """Forget the training samples that a registered feature predicate selects."""

    kind: Literal["targeted"] = "targeted"
    selector: str
    params: dict[str, Any] = Field(default_factory=dict)
    within_class: int | str | None = None

    def _mask(self, ds: LoadedDataset, seed: int) -> np.ndarray:
        if self.selector not in SELECTORS:
            raise ConfigError(f"unknown selector {self.selector!r}"
                              f"{did_you_mean(self.selector, SELECTORS)} "
                              f"(known: {', '.join(sorted(SELECTORS))})")
        kind, fn = SELECTORS[self.selector]
        if kind != ds.kind:
            raise ConfigError(f"selector {self.selector!r} works on {kind} data, "
                              f"{ds.name} is {ds.kind}")
        try:
            mask = np.asarray(fn(ds, **self.params), dtype=bool)
        except TypeError as exc:
            raise ConfigError(f"selector {self.selector!r}: bad params {self.params} "
                              f"({exc})") from None
        if self.within_class is not None:
            mask &= ds.train_y == _class_index(ds, self.within_class, ds.class_names, "class")
        return mask


Scenario = Annotated[
    ClassScenario | SubclassScenario | RandomScenario | TargetedScenario,
    Field(discriminator="kind"),
]
