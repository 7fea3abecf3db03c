"""Reusable fixtures and the method conformance suite (like sklearn's ``check_estimator``).

:data:`CHECKS` is the list of named checks (``check_metadata``, ``check_config_bounds``,
``check_yields_epochs``, ``check_weights_change``, ``check_original_untouched``,
``check_data_untouched``, ``check_deterministic``, ``check_seed_sensitive``, ``check_budget``,
``check_text_model``, ``check_language_model``); each ``check_xxx("mymethod")`` raises
``AssertionError`` naming what the method did wrong. Third-party methods run them all in
their own tests with ``check_method("mymethod")`` (a report of every check; raises if one
failed), or one test per check with ``check_method("mymethod", generate_only=True)``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import time
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.data.bundle import UnlearnData
from raysweep.errors import ConfigError
from raysweep.methods import UnlearnContext, get_method, make_config, run_method
from raysweep.methods._base import (
    MethodConfig,
    UnsupportedModelError,
    register_method,
    unregister_method,
)
from raysweep.models import ModelSpec
from raysweep.models.lm import IGNORE_INDEX
from raysweep.models.text import TextClassifier
from raysweep.training import TrainConfig, resolve_device, seed_everything, train_model

__all__ = ["TinyProblem", "tiny_problem", "check_method", "fast_config"]


@dataclass
class TinyProblem:
    model: nn.Module          # the trained "original" (do not modify: copy it)
    data: UnlearnData
    ctx: UnlearnContext

    def fresh_copy(self) -> nn.Module:
        return copy.deepcopy(self.model)


def tiny_problem(*, seed: int = 0, n_per_class: int = 16, num_classes: int = 4,
                 forget_class: int | None = 0, model: str = "mlp", img_size: int = 8,
                 train_epochs: int = 8) -> TinyProblem:
    """A trained tiny classifier on scikit-learn digits (first ``num_classes`` classes).

    ``forget_class=None`` gives a random 25% forget set instead of class forgetting.
    """
    from sklearn.datasets import load_digits

    seed_everything(seed)
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    if img_size != 8:
        x = torch.nn.functional.interpolate(x, size=(img_size, img_size), mode="bilinear")
    y = torch.tensor(bunch.target, dtype=torch.long)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(bunch.target == c))
        train_idx += list(idx[:n_per_class])
        test_idx += list(idx[n_per_class: 2 * n_per_class])
    tr, te = torch.tensor(train_idx), torch.tensor(test_idx)
    xtr, ytr = x[tr], y[tr]
    if forget_class is None:
        fmask = torch.zeros(len(ytr), dtype=torch.bool)
        perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))
        fmask[perm[: len(ytr) // 4]] = True
        forget_classes: tuple[int, ...] = ()
    else:
        fmask = ytr == forget_class
        forget_classes = (forget_class,)
    device = resolve_device("cpu")
    spec = ModelSpec(model, num_classes, in_chans=1, img_size=img_size)
    recipe = TrainConfig(epochs=train_epochs, lr=0.05, batch_size=16)
    original = spec.build(seed=seed)
    train_model(original, TensorDataset(xtr, ytr), recipe, device=device, seed=seed)
    # Shuffle the held-out rows so val and test both hold every class.
    te = te[torch.randperm(len(te), generator=torch.Generator().manual_seed(seed))]
    half = len(te) // 2
    data = UnlearnData(
        forget=TensorDataset(xtr[fmask], ytr[fmask]),
        retain=TensorDataset(xtr[~fmask], ytr[~fmask]),
        val=TensorDataset(x[te[:half]], y[te[:half]]),
        test=TensorDataset(x[te[half:]], y[te[half:]]),
        num_classes=num_classes, forget_classes=forget_classes, batch_size=16,
    )
    ctx = UnlearnContext(original=copy.deepcopy(original), model_spec=spec, device=device,
                         seed=seed, train_recipe=recipe)
    return TinyProblem(original, data, ctx)


def _number_field(f: Any, kind: type = int) -> bool:
    """The pydantic field holds a plain ``kind`` (int, or a number for ``float``), maybe None."""
    args = set(typing.get_args(f.annotation) or (f.annotation,)) - {type(None)}
    allowed = {int} if kind is int else {int, float}
    return bool(args) and args <= allowed


def fast_config(name: str, **overrides: object):
    """The method's default config with small batch sizes (tiny data), plus overrides."""
    info = get_method(name)
    values: dict[str, object] = {}
    for fname, f in info.config.model_fields.items():
        if "batch" in fname and _number_field(f):
            values[fname] = 16
    values.update(overrides)
    return make_config(name, values)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


# --- The conformance checks ----------------------------------------------------------------
#
# Each ``check_xxx(method, *, seed=0)`` raises ``AssertionError`` with a message naming the
# method and what it did, or :class:`CheckSkipped` when the check does not apply. The runs they
# look at are shared: a run is identified by (method, seed, variant) and kept in a small cache,
# so running every check of a method costs about four runs on the tiny problem plus one on the
# tiny text model. Every run starts from a private deep copy of a cached, pristine problem, and
# the runs the checks share switch the data guard off (``check_data=False``): a method that
# writes to its data fails ``check_data_untouched`` and is still checked on everything else.

__all__ += ["CHECKS", "CheckResult", "CheckSkipped", "ConformanceReport", "MethodCheckError",
            "TEXT_OVERRIDES", "TINY_OVERRIDES", "temporary_method", "check_metadata",
            "check_config_bounds", "check_yields_epochs", "check_weights_change",
            "check_original_untouched", "check_data_untouched", "check_deterministic",
            "check_seed_sensitive", "check_budget", "check_text_model",
            "check_language_model", "tiny_lm_problem"]

#: Config overrides the text check uses, for methods whose defaults are image-only.
TEXT_OVERRIDES: dict[str, dict[str, object]] = {"pseudo-label": {"rotate": False}}

#: Config overrides every check uses on the tiny problems. SSD: D_f is one of the four
#: dataset-order batches of D there, so its importance is at most about 4x its importance on D
#: and the reference's alpha = 10 can select no parameter (the method would be a no-op).
TINY_OVERRIDES: dict[str, dict[str, object]] = {"ssd": {"selection_weighting": 1.5}}


class CheckSkipped(Exception):
    """The check does not apply to the method (e.g. the text check of an image-only method)."""


@dataclass
class _Run:
    weights: list[torch.Tensor] | None = None
    first_epoch: list[torch.Tensor] | None = None   # the weights when epoch 1 was yielded
    history: list = field(default_factory=list)
    passes: float = 0.0
    stopped: bool = False
    error: BaseException | None = None
    original_changed: list[str] = field(default_factory=list)
    data_changed: list[str] = field(default_factory=list)

    def raise_error(self, name: str, what: str) -> None:
        if self.error is not None:
            msg = str(self.error).splitlines()[0] if str(self.error) else ""
            raise AssertionError(f"{name}: {what} raised {type(self.error).__name__}: {msg}")


@functools.lru_cache(maxsize=4)
def _problem(seed: int) -> TinyProblem:
    return tiny_problem(seed=seed)


@functools.lru_cache(maxsize=2)
def _lm_problem(seed: int) -> TinyProblem:
    return tiny_lm_problem(seed=seed)


def _problem_for(name: str, seed: int) -> TinyProblem:
    """The tiny problem the shared runs of ``name`` start from."""
    return _lm_problem(seed) if _generate_only(name) else _problem(seed)


def _generate_only(name: str) -> bool:
    """The method runs on language models only: every check runs it on :func:`tiny_lm_problem`."""
    return "classify" not in get_method(name).tasks


@functools.lru_cache(maxsize=2)
def _text_problem(seed: int) -> TinyProblem:
    # Small and barely trained: the text check asks "does it run on a transformer", not "does
    # it unlearn"; building it takes about a second.
    return tiny_text_problem(seed=seed, n_per_class=8, hidden=16, layers=1, seq_len=8,
                             train_epochs=3)


_RUNS: OrderedDict[tuple, _Run] = OrderedDict()
_RUNS_KEPT = 24


def _short_epochs(name: str) -> dict[str, object]:
    """Every epoch-count field (``epochs``, ``*_epochs``) at 1 where its bounds allow."""
    out: dict[str, object] = {}
    info = get_method(name)
    for f in info.describe_fields():
        if ((f["name"] == "epochs" or f["name"].endswith("_epochs"))
                and _number_field(info.config.model_fields[f["name"]], float)):
            b = f["bounds"]
            if (b.get("ge", 1) <= 1 and b.get("gt", 0) < 1 and b.get("le", 1) >= 1
                    and b.get("lt", 2) > 1):
                out[f["name"]] = 1
    return out


def _run(name: str, *, seed: int = 0, ctx_seed: int | None = None, max_epochs: int | None = None,
         text: bool = False, repeat: int = 0, lm: bool = False) -> _Run:
    """One run of ``name`` on a private copy of the tiny (text, language-model) problem, cached.
    A method that runs on language models only always gets the language-model problem."""
    info = get_method(name)
    lm = lm or _generate_only(name)
    key = (name, info.fn, seed, ctx_seed, max_epochs, text, repeat, lm)
    if key in _RUNS:
        _RUNS.move_to_end(key)
        return _RUNS[key]
    pristine = _lm_problem(seed) if lm else _text_problem(seed) if text else _problem(seed)
    prob = copy.deepcopy(pristine)
    out = _Run()
    try:
        overrides = {**_short_epochs(name), **TEXT_OVERRIDES.get(name, {})} if text else {}
        cfg = fast_config(name, **{**TINY_OVERRIDES.get(name, {}), **overrides})
        ctx = prob.ctx if ctx_seed is None else dataclasses.replace(prob.ctx, seed=ctx_seed)
        model = prob.fresh_copy()

        def on_epoch(event: object, seconds: float) -> None:
            if out.first_epoch is None:
                out.first_epoch = _params(model)

        res = run_method(name, model, prob.data, cfg, ctx, max_epochs=max_epochs,
                         on_epoch=on_epoch, check_data=False)
        out.weights, out.history = _params(model), list(res.history)
        out.passes, out.stopped = float(res.cost.passes), res.stopped_by_budget
    except Exception as exc:
        out.error = exc
    before = pristine.ctx.original.state_dict()
    out.original_changed = [k for k, v in prob.ctx.original.state_dict().items()
                            if k not in before or not torch.equal(v, before[k])]
    for split in ("forget", "retain", "val", "test"):
        mine, orig = getattr(prob.data, split), getattr(pristine.data, split)
        if len(mine.tensors) != len(orig.tensors):
            out.data_changed.append(f"data.{split}")
        for i, (a, b) in enumerate(zip(mine.tensors, orig.tensors)):
            if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b):
                out.data_changed.append(f"data.{split}.tensors[{i}]" if i > 1
                                        else f"data.{split} {'xy'[i]}")
    _RUNS[key] = out
    while len(_RUNS) > _RUNS_KEPT:
        _RUNS.popitem(last=False)
    return out


def _first_difference(a: list[torch.Tensor], b: list[torch.Tensor],
                      model: nn.Module) -> str | None:
    names = list(model.state_dict())
    for n, x, y in zip(names, a, b):
        if x.shape != y.shape:
            return f"{n} (shape {tuple(x.shape)} vs {tuple(y.shape)})"
        if not torch.equal(x, y):
            return f"{n} (max |diff| {float((x.double() - y.double()).abs().max()):.3g})"
    return None


def check_metadata(name: str, *, seed: int = 0) -> None:
    """A paper, a one-line summary (the docstring) and a config whose defaults are valid."""
    info = get_method(name)
    assert info.paper.strip(), \
        f"{name}: no source; register_method(..., paper='Author et al. 2024')"
    assert info.summary, \
        f"{name}: no docstring; its first line is the summary `methods list` shows"
    assert issubclass(info.config, MethodConfig), f"{name}: config must subclass MethodConfig"
    try:
        make_config(name, {})
    except ConfigError as exc:
        raise AssertionError(f"{name}: the default config is invalid: {exc}") from None


def _outside(bound: str, b: float, integer: bool) -> float:
    """A value just outside the bound ``bound`` (gt, ge, lt, le) of value ``b``."""
    if integer:
        return {"gt": math.floor(b), "ge": math.ceil(b) - 1, "lt": math.ceil(b),
                "le": math.floor(b) + 1}[bound]
    step = max(abs(b), 1.0) * 1e-3
    return {"gt": b, "ge": b - step, "lt": b, "le": b + step}[bound]


def check_config_bounds(name: str, *, seed: int = 0) -> None:
    """An unknown key, and a value just outside every bound (gt/ge/lt/le) and every ``Literal``
    of every field, each rejected with a ``ConfigError`` that names the field."""
    info = get_method(name)
    problems: list[str] = []
    try:
        make_config(name, {"definitely_not_a_field": 1})
        problems.append("an unknown key was accepted")
    except ConfigError as exc:
        if "unknown parameter" not in str(exc):
            problems.append(f"an unknown key gave {exc!r}, not 'unknown parameter'")
    for fname, f in info.config.model_fields.items():
        args = typing.get_args(f.annotation) or (f.annotation,)
        integer = int in args and float not in args
        cases: list[tuple[str, object]] = []
        for meta in f.metadata:
            for bound in ("gt", "ge", "lt", "le"):
                b = getattr(meta, bound, None)
                if b is not None:
                    cases.append((f"{bound}={b}", _outside(bound, b, integer)))
        for arg in args:
            if typing.get_origin(arg) is typing.Literal:
                cases.append(("Literal", "definitely-not-a-choice"))
        if typing.get_origin(f.annotation) is typing.Literal:
            cases.append(("Literal", "definitely-not-a-choice"))
        for rule, bad in dict.fromkeys(cases):
            try:
                make_config(name, {fname: bad})
                problems.append(f"{fname}={bad!r} accepted ({rule})")
            except ConfigError as exc:
                if fname not in str(exc):
                    problems.append(f"{fname}={bad!r} rejected without naming the field: {exc}")
    assert not problems, f"{name}: config bounds not enforced: {'; '.join(problems)}"


def _declared_epochs(name: str) -> int | None:
    """The number of yields the config declares: an int ``epochs`` field and no other epoch
    count (``*_epochs``: warm-up, impair/repair phases make the count method-specific)."""
    fields = get_method(name).config.model_fields
    if "epochs" not in fields or any(k.endswith("_epochs") and _number_field(f, float)
                                     for k, f in fields.items()):
        return None
    value = fast_config(name).epochs
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_yields_epochs(name: str, *, seed: int = 0) -> None:
    """Yields ``EpochEnd`` numbered 1, 2, ..., n with numeric metrics; one yield for a one-shot
    method; exactly ``epochs`` yields where the config's ``epochs`` is the whole count."""
    run = _run(name, seed=seed)
    run.raise_error(name, "the run")
    numbers = [e.epoch for e in run.history]
    n = len(numbers)
    assert n >= 1, f"{name} yielded nothing"
    assert numbers == list(range(1, n + 1)), (
        f"{name} yielded epochs {numbers}; expected 1..{n} (EpochEnd(epoch + 1) once per epoch)")
    for e in run.history:
        for k, v in e.metrics.items():
            assert isinstance(k, str) and isinstance(float(v), float), \
                f"{name}: metric {k!r}={v!r} at epoch {e.epoch} is not a number"
    if get_method(name).one_shot:
        assert n == 1, f"{name} is one-shot but yielded {n} times"
    declared = _declared_epochs(name)
    if declared is not None:
        assert n == declared, (f"{name} yielded {n} times with epochs={declared} "
                               f"({'extra' if n > declared else 'missing'} yields)")


def check_weights_change(name: str, *, seed: int = 0) -> None:
    """The run changes the model's weights and leaves them finite."""
    run = _run(name, seed=seed)
    run.raise_error(name, "the run")
    assert run.weights is not None
    start = _params(_problem_for(name, seed).model)
    assert _first_difference(start, run.weights, _problem_for(name, seed).model) is not None, \
        f"{name} left the weights unchanged"
    assert all(torch.isfinite(t.float()).all() for t in run.weights), \
        f"{name} produced non-finite weights"


def check_original_untouched(name: str, *, seed: int = 0) -> None:
    """``ctx.original`` (the frozen teacher) has the same weights and buffers after the run."""
    run = _run(name, seed=seed)
    assert not run.original_changed, (f"{name} modified ctx.original "
                                      f"({', '.join(run.original_changed[:3])}); copy it first")


def check_data_untouched(name: str, *, seed: int = 0) -> None:
    """Every tensor of D_f, D_r, val and test is bit-identical after the run (the run does not
    go through the data guard, so this looks at the tensors themselves)."""
    run = _run(name, seed=seed)
    assert not run.data_changed, (
        f"{name} modified {', '.join(run.data_changed)} in place; methods must not write to "
        f"UnlearnData — copy first (e.g. y = y.clone())")


def check_deterministic(name: str, *, seed: int = 0) -> None:
    """Two runs under the same seed give bit-identical weights and the same number of yields."""
    a, b = _run(name, seed=seed), _run(name, seed=seed, repeat=1)
    a.raise_error(name, "the run")
    b.raise_error(name, "the second run")
    assert len(a.history) == len(b.history), \
        f"{name} yielded {len(a.history)} then {len(b.history)} times under the same seed"
    diff = _first_difference(a.weights or [], b.weights or [], _problem_for(name, seed).model)
    assert diff is None, (f"{name} is not deterministic under a seed: two runs differ in {diff}; "
                          f"draw randomness from ctx.seed, not from unseeded generators")


def check_seed_sensitive(name: str, *, seed: int = 0) -> None:
    """A stochastic method (``register_method(stochastic=...)``, default ``not one_shot``) gives
    different weights under ``ctx.seed`` and ``ctx.seed + 1``: it draws from the seed."""
    if not get_method(name).stochastic:
        raise CheckSkipped(f"{name} is registered with stochastic=False")
    a, b = _run(name, seed=seed, max_epochs=1), _run(name, seed=seed, ctx_seed=seed + 1,
                                                     max_epochs=1)
    a.raise_error(name, "the run")
    b.raise_error(name, f"the run with ctx.seed={seed + 1}")
    model = _problem_for(name, seed).model
    if _first_difference(a.weights or [], b.weights or [], model) is None:
        a, b = _run(name, seed=seed), _run(name, seed=seed, ctx_seed=seed + 1)  # all epochs
        a.raise_error(name, "the run")
        b.raise_error(name, f"the run with ctx.seed={seed + 1}")
        assert _first_difference(a.weights or [], b.weights or [], model) is not None, (
            f"{name} gives the same weights under ctx.seed={seed} and {seed + 1} but is "
            f"declared stochastic: seed its data order and noise from ctx.seed "
            f"(data.loader(..., seed=ctx.seed), torch.Generator().manual_seed(ctx.seed)), or "
            f"register it with stochastic=False")


def check_budget(name: str, *, seed: int = 0) -> None:
    """Stopped after its first yield (``max_epochs=1``), the method closes cleanly with the
    weights a full run had at epoch 1, having spent less than a full run when it has more
    epochs (it does not do later epochs' work before yielding)."""
    full, capped = _run(name, seed=seed), _run(name, seed=seed, max_epochs=1)
    full.raise_error(name, "the run")
    capped.raise_error(name, "the run stopped after epoch 1")
    assert len(capped.history) == 1, f"{name}: max_epochs=1 gave {len(capped.history)} epochs"
    diff = _first_difference(full.first_epoch or [], capped.weights or [],
                             _problem_for(name, seed).model)
    assert diff is None, (f"{name}: stopped after epoch 1, the weights differ from a full run's "
                          f"at epoch 1 in {diff}; update the model before yielding, not after")
    if len(full.history) > 1:
        assert capped.stopped, f"{name}: the budget did not stop the run"
        assert capped.passes < full.passes, (
            f"{name}: stopped after epoch 1 of {len(full.history)} it spent as much as a full run "
            f"({capped.passes:.0f} sample-passes); yield after each epoch's work")


def check_text_model(name: str, *, seed: int = 0) -> None:
    """A method registered with ``supports_text=True`` runs an epoch on a tiny BERT
    (:func:`tiny_text_problem`; config: every epoch count 1, plus :data:`TEXT_OVERRIDES`),
    changing the weights and leaving them finite."""
    if not get_method(name).supports_text:
        raise CheckSkipped(f"{name} is registered with supports_text=False")
    if _generate_only(name):
        raise CheckSkipped(f"{name} runs on language models only (check_language_model)")
    run = _run(name, seed=seed, max_epochs=1, text=True)
    if isinstance(run.error, UnsupportedModelError):
        raise AssertionError(f"{name} claims text support (supports_text=True) but raised: "
                             f"{run.error}; register it with supports_text=False, or give the "
                             f"text check a config (raysweep.testing.TEXT_OVERRIDES)")
    run.raise_error(name, "the run on a text model")
    assert len(run.history) == 1, f"{name} yielded nothing on a text model"
    model = _text_problem(seed).model
    assert _first_difference(_params(model), run.weights or [], model) is not None, \
        f"{name} left the text model's weights unchanged"
    assert all(torch.isfinite(t.float()).all() for t in run.weights or []), \
        f"{name} produced non-finite weights on a text model"


def check_language_model(name: str, *, seed: int = 0) -> None:
    """A method registered for language models (``tasks`` has ``generate``) runs an epoch on a
    tiny GPT (:func:`tiny_lm_problem`), changing the weights and leaving them finite; one that
    is not is refused there with :class:`~raysweep.methods.UnsupportedModelError`."""
    run = _run(name, seed=seed, max_epochs=1, lm=True)
    if "generate" not in get_method(name).tasks:
        if not isinstance(run.error, UnsupportedModelError):
            raise AssertionError(f"{name} is not registered for language models, yet running "
                                 f"it on one did not raise UnsupportedModelError "
                                 f"({type(run.error).__name__ if run.error else 'no error'})")
        raise CheckSkipped(f"{name} is registered for classifiers only")
    run.raise_error(name, "the run on a language model")
    assert len(run.history) == 1, f"{name} yielded nothing on a language model"
    model = _lm_problem(seed).model
    assert _first_difference(_params(model), run.weights or [], model) is not None, \
        f"{name} left the language model's weights unchanged"
    assert all(torch.isfinite(t.float()).all() for t in run.weights or []), \
        f"{name} produced non-finite weights on a language model"


#: Every conformance check, in the order :func:`check_method` runs them.
CHECKS: tuple[Callable[..., None], ...] = (
    check_metadata, check_config_bounds, check_yields_epochs, check_weights_change,
    check_original_untouched, check_data_untouched, check_deterministic, check_seed_sensitive,
    check_budget, check_text_model, check_language_model,
)


@dataclass(frozen=True)
class CheckResult:
    method: str
    check: str
    status: str          # "passed", "failed" or "skipped"
    message: str = ""
    seconds: float = 0.0


@dataclass
class ConformanceReport:
    """The outcome of every check of one method; ``str()`` is one line per check."""

    method: str
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "failed"]

    def __str__(self) -> str:
        n = len(self.failed)
        head = (f"{self.method}: {len(self.results) - n}/{len(self.results)} checks passed "
                f"or skipped")
        lines = [f"  {r.status.upper():7s} {r.check}" + (f": {r.message}" if r.message else "")
                 for r in self.results]
        return "\n".join([head, *lines])


class MethodCheckError(AssertionError):
    """At least one conformance check failed; ``.report`` has every check's outcome."""

    def __init__(self, report: ConformanceReport) -> None:
        super().__init__(str(report))
        self.report = report


def check_method(name: str, *, seed: int = 0, checks: Iterable[Callable[..., None]] | None = None,
                 generate_only: bool = False, raise_on_failure: bool = True):
    """Run every conformance check (:data:`CHECKS`) on the method ``name``.

    Returns a :class:`ConformanceReport` (each check passed, failed with its message, or skipped)
    and, with ``raise_on_failure``, raises :class:`MethodCheckError` (an ``AssertionError``
    carrying the report) when a check failed. With ``generate_only=True`` it runs nothing and
    returns ``[(check_name, callable), ...]`` for a test framework to run one by one (like
    scikit-learn's ``check_estimator(generate_only=True)``); a callable raises
    ``AssertionError`` on a violation and :class:`CheckSkipped` when it does not apply.
    """
    chosen = list(CHECKS if checks is None else checks)
    get_method(name)  # an unknown name fails here, not once per check
    if generate_only:
        return [(c.__name__, functools.partial(c, name, seed=seed)) for c in chosen]
    results: list[CheckResult] = []
    for check in chosen:
        t0 = time.perf_counter()
        try:
            check(name, seed=seed)
            status, message = "passed", ""
        except CheckSkipped as exc:
            status, message = "skipped", str(exc)
        except AssertionError as exc:
            status, message = "failed", str(exc) or "assertion failed"
        except Exception as exc:
            status, message = "failed", f"{type(exc).__name__}: {exc}"
        results.append(CheckResult(name, check.__name__, status, message,
                                   time.perf_counter() - t0))
    report = ConformanceReport(name, results)
    if raise_on_failure and not report.passed:
        raise MethodCheckError(report)
    return report


@contextlib.contextmanager
def temporary_method(name: str, fn: Callable[..., Iterator[Any]], *, config: type,
                     paper: str = "test", **options: Any) -> Iterator[Any]:
    """Register ``fn`` as method ``name`` for the duration of a ``with`` block (tests)."""
    register_method(name, config=config, paper=paper, **options)(fn)
    try:
        yield get_method(name)
    finally:
        unregister_method(name)
        for key in [k for k in _RUNS if k[0] == name]:
            del _RUNS[key]


# --- Text fixtures: a tiny BERT on synthetic token sequences (no download, ~1 s on CPU) -------

__all__ += ["TinyTextSpec", "tiny_text_problem"]


def _tiny_bert(num_classes: int, vocab_size: int, hidden: int, layers: int, seq_len: int,
               seed: int | None) -> nn.Module:
    from transformers import BertConfig, BertModel

    if seed is not None:
        torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=max(16, seq_len), pad_token_id=0)
    encoder = BertModel(config, add_pooling_layer=False)
    # A stub tokenizer: the data are token ids already; only ``pad_token_id`` is read.
    return TextClassifier(encoder, SimpleNamespace(pad_token_id=0), num_classes,
                          max_length=seq_len)


@dataclass(frozen=True)
class TinyTextSpec(ModelSpec):
    """Rebuilds the tiny BERT of :func:`tiny_text_problem` (it has no model-registry entry),
    so ``ctx.fresh_model()`` works for methods that need a random twin."""

    vocab_size: int = 100
    hidden: int = 32
    layers: int = 2
    seq_len: int = 12

    def build(self, *, pretrained: bool | None = None, seed: int | None = None) -> nn.Module:
        return _tiny_bert(self.num_classes, self.vocab_size, self.hidden, self.layers,
                          self.seq_len, seed)


def tiny_text_problem(*, seed: int = 0, n_per_class: int = 24, num_classes: int = 3,
                      forget_class: int | None = 0, vocab_size: int = 100, seq_len: int = 12,
                      hidden: int = 32, layers: int = 2, train_epochs: int = 15) -> TinyProblem:
    """A trained tiny BERT (``TextClassifier``, hidden 32, 2 layers, vocab 100) on synthetic text.

    Each class owns a few keyword tokens; a sequence is random filler tokens with two or three
    keywords of its class, padded with id 0 (the stub tokenizer's ``pad_token_id``) to
    ``seq_len``. ``forget_class=None`` gives a random 25% forget set. ``ctx.is_text`` is True.
    """
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    n_keywords = 4
    first_filler = 1 + num_classes * n_keywords
    if first_filler + 8 > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is too small for {num_classes} classes "
                         f"(need at least {first_filler + 8})")

    def sample(n: int, label: int) -> torch.Tensor:
        ids = torch.zeros(n, seq_len, dtype=torch.long)
        for i in range(n):
            length = int(torch.randint(6, seq_len + 1, (1,), generator=gen))
            ids[i, :length] = torch.randint(first_filler, vocab_size, (length,), generator=gen)
            k = int(torch.randint(2, 4, (1,), generator=gen))
            pos = torch.randperm(length, generator=gen)[:k]
            kw = 1 + label * n_keywords + torch.randint(0, n_keywords, (k,), generator=gen)
            ids[i, pos] = kw
        return ids

    xs, ys = [], []
    for c in range(num_classes):
        xs.append(sample(2 * n_per_class, c))
        ys.append(torch.full((2 * n_per_class,), c, dtype=torch.long))
    x_all, y_all = torch.cat(xs), torch.cat(ys)
    is_train = torch.zeros(len(y_all), dtype=torch.bool)
    for c in range(num_classes):
        is_train[c * 2 * n_per_class: c * 2 * n_per_class + n_per_class] = True
    xtr, ytr = x_all[is_train], y_all[is_train]
    held = torch.nonzero(~is_train).flatten()
    held = held[torch.randperm(len(held), generator=gen)]    # val and test both hold every class
    half = len(held) // 2
    if forget_class is None:
        fmask = torch.zeros(len(ytr), dtype=torch.bool)
        fmask[torch.randperm(len(ytr), generator=gen)[: len(ytr) // 4]] = True
        forget_classes: tuple[int, ...] = ()
    else:
        fmask = ytr == forget_class
        forget_classes = (forget_class,)
    device = resolve_device("cpu")
    spec = TinyTextSpec("tiny-bert", num_classes, in_chans=0, img_size=0, vocab_size=vocab_size,
                        hidden=hidden, layers=layers, seq_len=seq_len)
    recipe = TrainConfig(epochs=train_epochs, lr=2e-3, optimizer="adam", weight_decay=0.0,
                         batch_size=16, schedule="constant")
    original = spec.build(seed=seed)
    train_model(original, TensorDataset(xtr, ytr), recipe, device=device, seed=seed)
    data = UnlearnData(
        forget=TensorDataset(xtr[fmask], ytr[fmask]),
        retain=TensorDataset(xtr[~fmask], ytr[~fmask]),
        val=TensorDataset(x_all[held[:half]], y_all[held[:half]]),
        test=TensorDataset(x_all[held[half:]], y_all[held[half:]]),
        num_classes=num_classes, forget_classes=forget_classes, batch_size=16,
    )
    ctx = UnlearnContext(original=copy.deepcopy(original), model_spec=spec, device=device,
                         seed=seed, train_recipe=recipe, is_text=True)
    return TinyProblem(original, data, ctx)


def tiny_lm_problem(*, seed: int = 0, n_per_source: int = 12, sources: int = 3,
                    vocab_size: int = 64, context: int = 16, hidden: int = 32,
                    train_epochs: int = 20) -> TinyProblem:
    """A trained one-layer GPT (:mod:`raysweep.models.lm`, hidden 32) on synthetic passages.

    Each source draws its tokens from its own id range; passages are 10 to ``context`` tokens
    after ``<s>`` (id 1), right-padded with id 0 whose targets are -100. D_f is source 0.
    ``ctx.task`` is ``generate``.
    """
    from raysweep.lm.metrics import LMEvalConfig

    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    span = (vocab_size - 2) // sources

    def sample(n: int, source: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.zeros(n, context + 1, dtype=torch.long)
        real = torch.zeros(n, context + 1, dtype=torch.bool)
        for i in range(n):
            length = int(torch.randint(10, context + 1, (1,), generator=gen))
            ids[i, 0] = 1
            ids[i, 1:length + 1] = 2 + source * span + torch.randint(0, span, (length,),
                                                                      generator=gen)
            real[i, :length + 1] = True
        y = ids[:, 1:].clone()
        y[~real[:, 1:]] = IGNORE_INDEX
        return ids[:, :-1].contiguous(), y

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parts = [sample(n, s) for s in range(sources)]
        src = torch.cat([torch.full((n,), s, dtype=torch.long) for s in range(sources)])
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), src

    xtr, ytr, str_ = split(n_per_source)
    xv, yv, _ = split(n_per_source // 2)
    xt, yt, _ = split(n_per_source // 2)
    fmask = str_ == 0
    device = resolve_device("cpu")
    spec = ModelSpec("gpt-tiny", vocab_size, options={"n_layer": 1, "n_embd": hidden,
                                                       "n_head": 2, "context": context})
    recipe = TrainConfig(epochs=train_epochs, lr=1e-2, optimizer="adamw", weight_decay=0.0,
                         batch_size=16, schedule="constant")
    original = spec.build(seed=seed)
    train_model(original, TensorDataset(xtr, ytr), recipe, device=device, seed=seed)
    data = UnlearnData(forget=TensorDataset(xtr[fmask], ytr[fmask]),
                       retain=TensorDataset(xtr[~fmask], ytr[~fmask]),
                       val=TensorDataset(xv, yv), test=TensorDataset(xt, yt),
                       num_classes=vocab_size, forget_classes=(0,), batch_size=16)
    ctx = UnlearnContext(original=copy.deepcopy(original), model_spec=spec, device=device,
                         seed=seed, train_recipe=recipe, is_text=True, task="generate",
                         eval_settings=LMEvalConfig(prefix=4, suffix=4))
    return TinyProblem(original, data, ctx)
