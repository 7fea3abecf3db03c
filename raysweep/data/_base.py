"""The in-memory dataset every loader returns, and the dataset registry."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError

from raysweep.errors import ConfigError, did_you_mean

__all__ = [
    "LoadedDataset",
    "DatasetInfo",
    "register_dataset",
    "load_dataset",
    "list_datasets",
    "get_dataset_info",
]

Kind = Literal["image", "text"]


@dataclass
class LoadedDataset:
    """A classification dataset held in memory.

    Images are ``float32`` arrays of shape ``(N, C, H, W)`` scaled to ``[0, 1]``; text is a list of
    raw strings (the workload tokenizes them with the model's own tokenizer).

    ``train_groups``/``test_groups`` hold a finer label when the dataset has one (CIFAR-100 fine
    classes under the 20 superclasses, Fashion-MNIST items under coarse groups): the sub-class
    forget scenario selects on them.
    """

    name: str
    kind: Kind
    train_x: Any
    train_y: np.ndarray
    test_x: Any
    test_y: np.ndarray
    class_names: list[str]
    group_names: list[str] | None = None
    train_groups: np.ndarray | None = None
    test_groups: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        if self.kind != "image":
            return None
        return tuple(int(s) for s in self.train_x.shape[1:])

    def subsample(self, n_train: int | None, n_test: int | None, seed: int) -> LoadedDataset:
        """Return a class-stratified random subset (``None`` keeps a split whole)."""
        rng = np.random.default_rng(seed)
        tr = _stratified(self.train_y, n_train, rng)
        te = _stratified(self.test_y, n_test, rng)
        return replace(
            self,
            train_x=_take(self.train_x, tr),
            train_y=self.train_y[tr],
            test_x=_take(self.test_x, te),
            test_y=self.test_y[te],
            train_groups=None if self.train_groups is None else self.train_groups[tr],
            test_groups=None if self.test_groups is None else self.test_groups[te],
        )


def _take(x: Any, idx: np.ndarray) -> Any:
    if isinstance(x, list):
        return [x[i] for i in idx]
    return x[idx]


def _stratified(y: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or n >= len(y):
        return np.arange(len(y))
    if n <= 0:
        raise ConfigError(f"dataset subset size must be positive, got {n}")
    # Per-class quotas proportional to the class frequencies, so that small subsets keep every
    # class (class forgetting needs the forgotten class present in train and test).
    classes, counts = np.unique(y, return_counts=True)
    quota = np.maximum(1, np.floor(counts / len(y) * n)).astype(int)
    chosen = [rng.choice(np.flatnonzero(y == c), size=min(q, cnt), replace=False)
              for c, q, cnt in zip(classes, quota, counts)]
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: Kind
    embedded: bool
    description: str
    loader: Callable[..., LoadedDataset]


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str, *, kind: Kind, embedded: bool, description: str
) -> Callable[[Callable[..., LoadedDataset]], Callable[..., LoadedDataset]]:
    """Register a loader ``fn(root: str | None, **options) -> LoadedDataset`` under ``name``."""

    def deco(fn: Callable[..., LoadedDataset]) -> Callable[..., LoadedDataset]:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _DATASETS[name] = DatasetInfo(name, kind, embedded, description, fn)
        return fn

    return deco


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    if name not in _DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}{did_you_mean(name, _DATASETS)} "
            f"(known: {', '.join(list_datasets())})"
        )
    return _DATASETS[name]


def load_dataset(name: str, root: str | None = None, **options: Any) -> LoadedDataset:
    """Load a registered dataset by name; ``root`` is the local directory for user data."""
    loader = get_dataset_info(name).loader
    accepted = [p for p in inspect.signature(loader).parameters if p != "root"]
    for key in options:
        if key not in accepted:
            raise ConfigError(f"dataset {name!r}: unknown option {key!r}"
                              f"{did_you_mean(key, accepted)} "
                              f"(valid: {', '.join(accepted) or 'none'})")
    _check_option_types(name, loader, options)
    return loader(root=root, **options)


def _check_option_types(name: str, loader: Callable[..., LoadedDataset],
                        options: dict[str, Any]) -> None:
    """Each option against the loader's annotation, strictly (``yes`` is not a fraction, a
    boolean is not a number, NaN is not a size): one line instead of an error deep inside."""
    try:
        hints = typing.get_type_hints(loader)
    except Exception:
        return
    strict = ConfigDict(strict=True, allow_inf_nan=False)
    for key, value in options.items():
        if key not in hints:
            continue
        try:
            TypeAdapter(hints[key], config=strict).validate_python(value)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise ConfigError(f"dataset {name!r}: options.{key}: {msg}, got {value!r}") from None
        except Exception:
            continue
