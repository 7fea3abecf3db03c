"""The method contract: a registry, typed configs, the data bundle and the run loop.

A method is a generator::

    @register_method("scrub", config=ScrubConfig, paper="Kurmanji et al. 2023 (SCRUB)")
    def scrub(model: nn.Module, data: UnlearnData, cfg: ScrubConfig,
              ctx: UnlearnContext) -> Iterator[EpochEnd]:
        ...
        for epoch in range(cfg.epochs):
            ...                       # update ``model`` in place
            yield EpochEnd(epoch + 1, {"loss": mean_loss})

* ``model`` is a private copy of the original model; the method edits it in place.
* ``ctx.original`` is a frozen copy of the original (the teacher for SCRUB, SFTC, ...);
  a method must never modify it (the conformance suite checks this).
* One-shot methods (SSD, masking) yield once. Each yield is a point where the caller may
  report, checkpoint, or stop; the caller, not the method, enforces the epoch budget.
* A method that cannot handle text models raises :class:`UnsupportedModelError`.
* ``run_method`` counts the method's compute in sample-passes (:mod:`raysweep.methods._cost`):
  every forward and backward example through ``model``, ``ctx.original``, models from
  ``ctx.fresh_model`` and deep copies of these. Methods need not do anything for it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from raysweep.errors import ConfigError, UserError, did_you_mean
from raysweep.methods._cost import PassCount, PassCounter, attach_if_active
from raysweep.models import ModelSpec
from raysweep.training import TrainConfig, make_loader, seed_everything

__all__ = [
    "MethodConfig", "EpochEnd", "UnlearnData", "UnlearnContext", "MethodInfo",
    "UnsupportedModelError", "register_method", "get_method", "list_methods", "make_config",
    "run_method", "RunResult", "MethodDivergedError", "PassCount", "PassCounter",
]


class MethodConfig(BaseModel):
    """Base of every method config: frozen, unknown keys rejected.

    Subclasses declare fields with ``pydantic.Field`` bounds and paper defaults, e.g.
    ``lr: float = Field(5e-4, gt=0, le=1, description="SGD learning rate (paper: 5e-4)")``.
    A field named ``epochs`` is the method's own epoch count; the budget may cut it short.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class EpochEnd:
    """What a method yields after each epoch: the epoch number (1-based) and training stats.

    ``cost`` is filled by :func:`run_method` (methods leave it ``None``): the sample-passes spent
    from the start of the run up to this yield.
    """

    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    cost: PassCount | None = None


class MethodDivergedError(RuntimeError):
    """The method produced a non-finite loss or non-finite weights (reported as a failed trial)."""


class UnsupportedModelError(UserError):
    """The method cannot run on this kind of model (e.g. a text model)."""


@dataclass
class UnlearnData:
    """The data an unlearning method may use. ``x`` is images or token ids, ``y`` labels.

    ``forget_classes`` is non-empty only for class forgetting (full or multi-class).
    """

    forget: TensorDataset
    retain: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    forget_classes: tuple[int, ...] = ()
    batch_size: int = 128

    def loader(self, split: str | TensorDataset, batch_size: int | None = None, *,
               shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> DataLoader:
        ds = getattr(self, split) if isinstance(split, str) else split
        return make_loader(ds, batch_size or self.batch_size, shuffle=shuffle, seed=seed,
                           drop_last=drop_last)

    @staticmethod
    def tensors(ds: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
        return ds.tensors[0], ds.tensors[1]


@dataclass
class UnlearnContext:
    """Everything else a method may need, besides the data and its config."""

    original: nn.Module
    model_spec: ModelSpec
    device: torch.device
    seed: int = 0
    train_recipe: TrainConfig = field(default_factory=TrainConfig)
    is_text: bool = False

    def fresh_model(self, *, pretrained: bool = False, seed: int | None = None) -> nn.Module:
        """A newly initialised model of the same architecture, on ``self.device``.

        With ``seed=None`` the draw is offset from ``self.seed``: the workload builds the original
        from its own seed, and a "fresh" model must not be the original's starting point.
        """
        draw = self.seed + 104_729 if seed is None else seed
        model = self.model_spec.build(pretrained=pretrained, seed=draw)
        # ``build`` attaches the active pass counter; this covers specs that override ``build``.
        return attach_if_active(model).to(self.device)

    def require_image_model(self, method: str) -> None:
        if self.is_text:
            raise UnsupportedModelError(
                f"method {method!r} works on image models only (it edits convolution kernels "
                f"or input pixels); choose another method for text workloads")


MethodFn = Callable[[nn.Module, UnlearnData, Any, UnlearnContext], Iterator[EpochEnd]]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    fn: MethodFn
    config: type[MethodConfig]
    paper: str
    summary: str
    one_shot: bool
    supports_text: bool
    module: str

    def describe_fields(self) -> list[dict[str, Any]]:
        """Name, type, default, bounds and description of every config field."""
        rows = []
        for fname, f in self.config.model_fields.items():
            bounds = {}
            for meta in f.metadata:
                for attr in ("gt", "ge", "lt", "le"):
                    if getattr(meta, attr, None) is not None:
                        bounds[attr] = getattr(meta, attr)
            ann = f.annotation
            rows.append({"name": fname,
                         "type": getattr(ann, "__name__", str(ann).replace("typing.", "")),
                         "default": f.default, "bounds": bounds,
                         "description": f.description or ""})
        return rows


_METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, *, config: type[MethodConfig], paper: str, one_shot: bool = False,
                    supports_text: bool = True) -> Callable[[MethodFn], MethodFn]:
    """Register a method generator under ``name``; its docstring's first line is the summary."""

    def deco(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice "
                             f"({_METHODS[name].module} and {fn.__module__})")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _METHODS[name] = MethodInfo(name, fn, config, paper, summary, one_shot, supports_text,
                                    fn.__module__)
        return fn

    return deco


def _ensure_loaded() -> None:
    from raysweep import methods  # noqa: F401  (imports every method module once)


def list_methods() -> list[str]:
    _ensure_loaded()
    return sorted(_METHODS)


def get_method(name: str) -> MethodInfo:
    _ensure_loaded()
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}{did_you_mean(name, _METHODS)} "
                          f"See: raysweep methods list")
    return _METHODS[name]


def make_config(name: str, values: dict[str, Any] | None = None, *, where: str = "") -> MethodConfig:
    """Validate ``values`` against the method's config; errors name field, value and rule."""
    info = get_method(name)
    try:
        return info.config(**(values or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(config)"
        prefix = f"{where}: " if where else ""
        if err["type"] == "extra_forbidden":
            fields = list(info.config.model_fields)
            raise ConfigError(f"{prefix}{name}: unknown parameter {loc!r}{did_you_mean(loc, fields)} "
                              f"(valid: {', '.join(fields)})") from None
        raise ConfigError(f"{prefix}{name}.{loc}: {err['msg']}, got {err.get('input')!r} "
                          f"(see: raysweep methods show {name})") from None


@dataclass
class RunResult:
    epochs: int
    seconds: float
    history: list[EpochEnd]
    stopped_by_budget: bool
    cost: PassCount = field(default_factory=PassCount)
    """Sample-passes the method spent (evaluation inside ``on_epoch`` excluded)."""


def run_method(name: str, model: nn.Module, data: UnlearnData, cfg: MethodConfig,
               ctx: UnlearnContext, *, max_epochs: int | None = None,
               on_epoch: Callable[[EpochEnd, float], bool | None] | None = None,
               counter: PassCounter | None = None) -> RunResult:
    """Run a method to completion or until ``max_epochs`` yields (the budget).

    ``on_epoch(event, seconds)`` may return ``True`` to stop early (time budget, scheduler).
    ``event.cost`` holds the sample-passes spent so far; ``on_epoch`` runs with counting paused,
    so evaluation inside it is not charged to the method.

    ``counter`` (a new one when ``None``) is attached to ``model``, ``ctx.original`` and every
    model built while the method runs, and detached at the end, also on error; its counts are
    kept (a counter passed in adds to what it holds). ``RunResult.cost`` is this run's share.
    """
    info = get_method(name)
    if ctx.is_text and not info.supports_text:
        raise UnsupportedModelError(f"method {name!r} does not support text models")
    seed_everything(ctx.seed)
    ctx.original.eval()
    for p in ctx.original.parameters():
        p.requires_grad_(False)
    model.to(ctx.device).train()
    history: list[EpochEnd] = []
    counter = PassCounter() if counter is None else counter
    base = counter.snapshot()
    start = time.perf_counter()
    stopped = False
    with counter.counting(model, ctx.original):
        gen = info.fn(model, data, cfg, ctx)
        try:
            for event in gen:
                event.cost = counter.snapshot() - base
                bad = {k: v for k, v in event.metrics.items() if not math.isfinite(float(v))}
                if bad:
                    raise MethodDivergedError(
                        f"{name} diverged at epoch {event.epoch} ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                        f"lower the learning rate or change the config")
                history.append(event)
                elapsed = time.perf_counter() - start
                if on_epoch is not None:
                    with counter.paused():
                        stop = on_epoch(event, elapsed)
                    if stop:
                        stopped = True
                        break
                if max_epochs is not None and len(history) >= max_epochs:
                    stopped = True
                    break
        finally:
            gen.close()
    cost = counter.snapshot() - base
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise MethodDivergedError(f"{name} left non-finite weights in the model")
    model.eval()
    return RunResult(len(history), time.perf_counter() - start, history, stopped, cost)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with gradients off (for teachers)."""
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin
