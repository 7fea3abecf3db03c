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
* A method must never write to its ``data``: the tensors are shared with the caller's
  evaluation and with the next run. ``run_method`` gives each run its own ``UnlearnData`` (new
  dataset objects over the same tensors, so rebinding ``data.forget = ...`` stays private) and
  fingerprints every tensor before the run; a method that writes in place fails the run with
  :class:`MethodContractError` at the first yield after the write (see :func:`run_method`).
* ``stochastic`` (default: ``not one_shot``) says the result depends on ``ctx.seed``; the
  conformance suite checks that two seeds give different weights. Methods that draw no random
  numbers (SSD-like one-shot edits) opt out with ``stochastic=False``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from raysweep.data.bundle import UnlearnData  # its home; re-exported here for compatibility
from raysweep.errors import (
    ConfigError,
    UserError,
    did_you_mean,
    error_location,
    error_message,
    pick_error,
)
from raysweep.methods._cost import PassCount, PassCounter, attach_if_active
from raysweep.models import ModelSpec
from raysweep.training import TrainConfig, seed_everything

__all__ = [
    "MethodConfig", "EpochEnd", "UnlearnData", "UnlearnContext", "MethodInfo",
    "UnsupportedModelError", "unsupported_task_message", "register_method", "unregister_method",
    "get_method", "list_methods", "make_config",
    "run_method", "RunResult", "MethodDivergedError", "MethodContractError", "PassCount",
    "PassCounter",
]


class MethodConfig(BaseModel):
    """Base of every method config: frozen, unknown keys rejected.

    Subclasses declare fields with bounds and paper defaults: the common hyperparameters
    (epochs, lr, momentum, weight decay, batch sizes, temperature) with the factories of
    :mod:`raysweep.methods._fields`, which fix the bounds once, e.g.
    ``lr: float = fields.lr(5e-4, "SGD learning rate (paper: 5e-4)")``; any other field with
    ``pydantic.Field``.
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


class MethodContractError(UserError):
    """The method broke the method contract (it wrote to its data); the run fails with one line."""


class UnsupportedModelError(UserError):
    """The method cannot run on this kind of model (e.g. a text model)."""


@dataclass
class UnlearnContext:
    """Everything else a method may need, besides the data and its config."""

    original: nn.Module
    model_spec: ModelSpec
    device: torch.device
    seed: int = 0
    train_recipe: TrainConfig = field(default_factory=TrainConfig)
    is_text: bool = False
    #: ``classify`` or ``generate`` (a causal language model: logits ``(B, V, T)``, targets
    #: ``(B, T)`` with -100 on padding; see :mod:`raysweep.models.lm`).
    task: str = "classify"
    #: A text-generation workload's evaluation settings (:class:`raysweep.lm.metrics.LMEvalConfig`:
    #: the verbatim test's prefix length, which the answer-replacing method reuses).
    eval_settings: Any = None

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
    full_precision: bool = False
    """The method computes something that reduced precision would corrupt (squared-gradient
    importances, saliency thresholds): it runs in fp32 whatever the sweep's ``precision``."""
    stochastic: bool = True
    """The result depends on ``ctx.seed`` (two seeds give different weights)."""
    space: Mapping[str, Any] | Path | None = None
    """The default search space given at registration: the ``parameters:`` mapping of the YAML
    space format, or the path of such a YAML file; ``None``: ``search_spaces/<name>.yaml``."""
    reference: str = ""
    """The reference implementation the method is checked against (``repository: file``), or
    ``paper NNN equations`` where there is no reference code."""
    differences: tuple[str, ...] = ()
    """Every intended difference from the reference, one short line each."""
    tasks: tuple[str, ...] = ("classify",)
    """The workload tasks the method runs on: ``classify`` and/or ``generate`` (language
    models)."""

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
                    supports_text: bool = True, full_precision: bool = False,
                    stochastic: bool | None = None,
                    space: Mapping[str, Any] | str | Path | None = None, reference: str = "",
                    differences: tuple[str, ...] = (),
                    tasks: tuple[str, ...] = ("classify",)) -> Callable[[MethodFn], MethodFn]:
    """Register a method generator under ``name``; its docstring's first line is the summary.

    ``stochastic``: whether the result depends on ``ctx.seed`` (data order, noise, random
    labels, re-initialisation). ``None`` means ``not one_shot``: iterative methods draw random
    numbers, one-shot edits usually do not. Declare ``stochastic=False`` for a method whose
    result must not depend on the seed, ``True`` for a one-shot method that draws from it.

    ``space``: the method's default search space, so that a method (or a plugin) is one file:
    the ``parameters:`` mapping of the YAML space format (``{"lr": {"distribution":
    "loguniform", "min": 1e-4, "max": 1e-1}, ...}``) or the path of a YAML space file (a
    relative path is relative to the registering module's directory). ``None``: the bundled
    ``search_spaces/<name>.yaml``. ``reference``: the implementation the method was checked
    against (``"repository: file"``; ``"paper NNN equations"`` without reference code);
    ``tasks``: ``("classify",)``, ``("generate",)`` for language-model methods, or both;
    ``differences``: one short line per intended difference from it. Both are shown by
    ``raysweep methods show`` and in the README's method table.
    """
    if isinstance(differences, str):
        differences = (differences,)

    def deco(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice "
                             f"({_METHODS[name].module} and {fn.__module__})")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        random = (not one_shot) if stochastic is None else stochastic
        _METHODS[name] = MethodInfo(name, fn, config, paper, summary, one_shot, supports_text,
                                    fn.__module__, full_precision=full_precision,
                                    stochastic=random,
                                    space=_space_of(space, fn), reference=reference,
                                    differences=tuple(differences), tasks=tuple(tasks))
        return fn

    return deco


def unsupported_task_message(method: str, task: str) -> str:
    """One line: ``method`` does not run on a workload of ``task``, and what does."""
    fits = ", ".join(n for n in list_methods() if task in get_method(n).tasks)
    what = "language-model" if task == "generate" else "classification"
    return (f"method {method!r} does not run on {what} workloads; methods that do: {fits}")


def _space_of(space: Mapping[str, Any] | str | Path | None,
              fn: MethodFn) -> Mapping[str, Any] | Path | None:
    """A registered space as stored: a copied mapping, or an absolute path."""
    if space is None:
        return None
    if isinstance(space, (str, Path)):
        path = Path(space)
        if not path.is_absolute():
            module_file = getattr(sys.modules.get(fn.__module__), "__file__", None)
            if module_file:
                path = Path(module_file).resolve().parent / path
        return path
    if not isinstance(space, Mapping):
        raise TypeError(f"register_method(space=...): expected a mapping or a YAML path, got "
                        f"{type(space).__name__}")
    return copy.deepcopy(dict(space))


def _ensure_loaded() -> None:
    from raysweep import methods  # noqa: F401  (imports every method module once)


def unregister_method(name: str) -> None:
    """Forget the method ``name`` (a no-op when unknown): tests and
    :func:`raysweep.testing.temporary_method` register methods for a while."""
    _METHODS.pop(name, None)


def list_methods() -> list[str]:
    _ensure_loaded()
    return sorted(_METHODS)


def get_method(name: str) -> MethodInfo:
    _ensure_loaded()
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}{did_you_mean(name, _METHODS)} "
                          f"See: raysweep methods list")
    return _METHODS[name]


def make_config(name: str, values: dict[str, Any] | None = None, *,
                where: str = "") -> MethodConfig:
    """Validate ``values`` against the method's config; errors name field, value and rule."""
    info = get_method(name)
    try:
        return info.config(**(values or {}))
    except ValidationError as exc:
        err = pick_error(exc.errors())
        loc = error_location(err) or "(config)"
        prefix = f"{where}: " if where else ""
        if err["type"] == "extra_forbidden":
            fields = list(info.config.model_fields)
            raise ConfigError(f"{prefix}{name}: unknown parameter {loc!r}"
                              f"{did_you_mean(loc, fields)} "
                              f"(valid: {', '.join(fields)})") from None
        raise ConfigError(f"{prefix}{name}.{loc}: {error_message(err)}, got {err.get('input')!r} "
                          f"(see: raysweep methods show {name})") from None


@dataclass
class RunResult:
    epochs: int
    seconds: float
    history: list[EpochEnd]
    stopped_by_budget: bool
    cost: PassCount = field(default_factory=PassCount)
    """Sample-passes the method spent (evaluation inside ``on_epoch`` excluded)."""


# --- The data guard ------------------------------------------------------------------------
#
# ``run_method`` hands the method its own ``UnlearnData`` (new dataset objects over the caller's
# tensors: no copy of the data) and fingerprints every tensor first. The fingerprint is checked
# after every yield (before the caller evaluates the epoch) and when the run ends, also when the
# method raised. A write shows as a changed version counter (any in-place torch op, also through
# a view) or a changed checksum (writes through ``.numpy()`` or ``.data``). On a violation the
# tensors the guard backed up (up to ``_BACKUP_MAX_BYTES`` each: labels and small splits) are
# restored; larger ones are marked, and every later run on them fails at once instead of
# silently running on corrupted data.

_SPLITS = ("forget", "retain", "val", "test")
_FULL_HASH_BYTES = 1 << 20      # tensors up to 1 MiB (labels) are hashed whole
_SAMPLE = 4096                  # larger ones: checksum of every word + hash of a strided sample
_BACKUP_MAX_BYTES = 8 << 20     # tensors up to 8 MiB are backed up per run and restored
_CORRUPTED = "_raysweep_corrupted"


def _split_tensors(data: UnlearnData) -> dict[tuple[str, int], torch.Tensor]:
    out: dict[tuple[str, int], torch.Tensor] = {}
    for split in _SPLITS:
        for i, t in enumerate(getattr(getattr(data, split, None), "tensors", ()) or ()):
            if isinstance(t, torch.Tensor):
                out[(split, i)] = t
    return out


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its one dimension has stride 1, else a copy that has."""
    if t.numel() <= 1 or t.stride(-1) != 1:
        return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)
    return t


def _tensor_print(t: torch.Tensor) -> tuple[Any, ...]:
    """(shape, dtype, checksum, digest): cheap, exact for small tensors, one read of large ones."""
    flat = _dense(t.detach().reshape(-1))
    raw = flat.view(torch.uint8) if flat.numel() else flat.to(torch.uint8)
    if raw.numel() <= _FULL_HASH_BYTES:
        return (tuple(t.shape), t.dtype, 0, hashlib.blake2b(raw.cpu().numpy().tobytes(),
                                                            digest_size=16).digest())
    try:  # a wrapping int32 sum of every word: exact, order-independent, ~10 ms per 200 MB
        checksum = int(flat.view(torch.int32).sum(dtype=torch.int32))
    except RuntimeError:  # odd byte count or unaligned view
        checksum = int(raw.sum(dtype=torch.int64))
    sample = _dense(flat[:: max(1, flat.numel() // _SAMPLE)]).view(torch.uint8)
    return (tuple(t.shape), t.dtype, checksum,
            hashlib.blake2b(sample.cpu().numpy().tobytes(), digest_size=16).digest())


def _version(t: torch.Tensor) -> int:
    """The tensor's version counter (bumped by every in-place op on it or a view of it)."""
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors have none; the checksum still guards them
        return -1


def _tensor_name(key: tuple[str, int]) -> str:
    split, i = key
    return f"data.{split}" + {0: " x", 1: " y"}.get(i, f" tensors[{i}]")


class _DataGuard:
    """Fingerprints of the caller's data tensors; see the comment above."""

    def __init__(self, name: str, data: UnlearnData) -> None:
        self.name = name
        self.tensors = _split_tensors(data)
        for key, t in self.tensors.items():
            bad = getattr(t, _CORRUPTED, None)
            if bad:
                raise MethodContractError(
                    f"{_tensor_name(key)} was modified in place by an earlier run ({bad}) and "
                    f"could not be restored; reload the workload (start a new process)")
        self.versions = {k: _version(t) for k, t in self.tensors.items()}
        self.prints = {k: _tensor_print(t) for k, t in self.tensors.items()}
        self.backup = {k: t.detach().clone() for k, t in self.tensors.items()
                       if t.numel() * t.element_size() <= _BACKUP_MAX_BYTES}
        self.violated = False

    def check(self, when: str) -> None:
        """Raise :class:`MethodContractError` if a tensor was written since the guard began."""
        if self.violated:
            return
        changed: dict[tuple[str, int], str] = {}
        for key, t in self.tensors.items():
            values = _tensor_print(t) != self.prints[key]
            if values or _version(t) != self.versions[key]:
                changed[key] = "values changed" if values else "written in place"
        if not changed:
            return
        self.violated = True
        lost = []
        for key in changed:
            t = self.tensors[key]
            if not (key in self.backup and _restore(t, self.backup[key])):
                lost.append(_tensor_name(key))
                setattr(t, _CORRUPTED, f"method {self.name!r}")
        splits = ", ".join(dict.fromkeys(f"data.{k[0]}" for k in changed))
        what = "; ".join(f"{_tensor_name(k)}: {v}" for k, v in changed.items())
        restored = [_tensor_name(k) for k in changed if _tensor_name(k) not in lost]
        after = f"; restored {', '.join(restored)}" if restored else ""
        if lost:
            after += (f"; {', '.join(lost)} could not be restored (too large to back up): later "
                      f"runs on this data fail until the workload is reloaded")
        raise MethodContractError(
            f"method {self.name!r} modified {splits} in place ({what}; {when}); methods must not "
            f"write to UnlearnData — copy first (e.g. y = y.clone()){after}")


def _restore(t: torch.Tensor, backup: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            if t.shape != backup.shape:
                t.resize_(backup.shape)
            t.copy_(backup)
        return True
    except RuntimeError:
        return False


def _private_view(data: UnlearnData) -> UnlearnData:
    """A new ``UnlearnData`` with new dataset objects over the same tensors (no data copied)."""
    view = copy.copy(data)
    for split in _SPLITS:
        ds = getattr(data, split, None)
        if ds is not None:
            setattr(view, split, copy.copy(ds))
    return view


def run_method(name: str, model: nn.Module, data: UnlearnData, cfg: MethodConfig,
               ctx: UnlearnContext, *, max_epochs: int | None = None,
               on_epoch: Callable[[EpochEnd, float], bool | None] | None = None,
               counter: PassCounter | None = None, check_data: bool = True) -> RunResult:
    """Run a method to completion or until ``max_epochs`` yields (the budget).

    ``on_epoch(event, seconds)`` may return ``True`` to stop early (time budget, scheduler).
    ``event.cost`` holds the sample-passes spent so far; ``on_epoch`` runs with counting paused,
    so evaluation inside it is not charged to the method.

    ``counter`` (a new one when ``None``) is attached to ``model``, ``ctx.original`` and every
    model built while the method runs, and detached at the end, also on error; its counts are
    kept (a counter passed in adds to what it holds). ``RunResult.cost`` is this run's share.

    The method gets its own ``UnlearnData`` (rebinding its attributes stays private) over the
    caller's tensors, which are fingerprinted first. After every yield, before ``on_epoch``, and
    when the run ends (also on error) the fingerprints are checked: a method that wrote to a
    tensor fails the run with :class:`MethodContractError`, one line naming the method and the
    split, and the tensors are restored where the guard could back them up. The guard's time is
    not counted in ``seconds``. ``check_data=False`` turns the check off (the conformance suite
    does, to test a method's other contracts independently of ``check_data_untouched``).
    """
    info = get_method(name)
    if ctx.task not in info.tasks:
        raise UnsupportedModelError(unsupported_task_message(name, ctx.task))
    if ctx.is_text and not info.supports_text:
        raise UnsupportedModelError(f"method {name!r} does not support text models")
    guard = _DataGuard(name, data) if check_data else None
    view = _private_view(data)
    guard_seconds = 0.0  # the guard's own time, taken out of the method's
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
        # a method is a generator function (see the module docstring), so the run can close it
        gen = cast(Generator[EpochEnd, None, None], info.fn(model, view, cfg, ctx))
        try:
            for event in gen:
                if not isinstance(event, EpochEnd):
                    raise MethodContractError(
                        f"method {name!r} yielded {type(event).__name__} {event!r:.60}, not an "
                        f"EpochEnd; yield EpochEnd(epoch, metrics) once per epoch")
                event.cost = counter.snapshot() - base
                if guard is not None:
                    t_guard = time.perf_counter()
                    guard.check(f"found after epoch {event.epoch}")
                    guard_seconds += time.perf_counter() - t_guard
                bad = {k: v for k, v in event.metrics.items() if not math.isfinite(float(v))}
                if bad:
                    raise MethodDivergedError(
                        f"{name} diverged at epoch {event.epoch} "
                        f"({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                        f"lower the learning rate or change the config")
                history.append(event)
                elapsed = time.perf_counter() - start - guard_seconds
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
            try:
                gen.close()
            finally:
                if guard is not None:
                    t_guard = time.perf_counter()
                    guard.check("found at the end of the run")
                    guard_seconds += time.perf_counter() - t_guard
    cost = counter.snapshot() - base
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise MethodDivergedError(f"{name} left non-finite weights in the model")
    model.eval()
    return RunResult(len(history), time.perf_counter() - start - guard_seconds, history, stopped,
                     cost)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with gradients off (for teachers)."""
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin
