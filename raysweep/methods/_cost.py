"""Compute cost in *sample-passes*: a machine-independent measure of what a method spent.

Wall time depends on the GPU, the batch size, the data loader and whatever else shares the
machine; the number of examples pushed through a network does not. :class:`PassCounter` counts,
while a method runs,

* ``forward``: examples through a forward pass of any counted model, and
* ``backward``: examples whose backward pass ran (a gradient reached the model's output),

over every model the method uses: the model being unlearned, ``ctx.original`` (the frozen
teacher), every model built through :meth:`ModelSpec.build` / ``ctx.fresh_model`` while the
counter is active (random teachers, fresh students), and deep copies of any of these.

Convention: ``passes = forward + 2 * backward``. A backward pass computes gradients with respect
to both activations and weights and costs about twice a forward pass, so one training step on
one example is 3 passes and one inference is 1 pass. Retraining from scratch on ``D_r`` for
``E`` epochs is therefore ``3 * E * |D_r|`` passes (:func:`retrain_passes`); a method's cost
divided by that is its cost relative to the oracle, independent of the machine.

How the counting works:

* A forward hook on each *root* model (not on its layers) adds the batch size of each call: the
  first dimension of the first tensor in the output (a tensor, a tuple/list, a dict or a Hugging
  Face ``ModelOutput``), or of the input when the output has no batch dimension. Text models
  that expose ``forward_embeds`` (noise methods call it directly, bypassing ``forward``) also get
  the hook on their ``encoder``; a call counts once, at the outermost counted module, so
  ``forward`` -> ``encoder`` is not counted twice.
* Backward: when grad mode is on and that output tensor requires grad, the forward hook registers
  a tensor hook on it (``out.register_hook``) that adds the batch size when a gradient reaches
  it. This counts exactly the examples whose backward pass ran, whether through
  ``loss.backward()`` or ``torch.autograd.grad`` with respect to inputs (UNSIR's noise learning)
  or parameters (SSD's importances). Gradients computed twice through one graph count twice.
  No ``register_full_backward_hook``: it breaks in-place edits of outputs.
* The hook objects survive ``copy.deepcopy`` as the same object (they refer to the same counter),
  so a copy of a counted model keeps counting. Pickling a model that carries a hook stores an
  inert hook instead.
* :meth:`PassCounter.paused` stops counting (and stops attaching to newly built models), for
  evaluation that the caller runs between epochs.
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["PassCount", "PassCounter", "retrain_passes", "active_counter", "BACKWARD_WEIGHT"]

BACKWARD_WEIGHT = 2
"""A backward pass costs about this many forward passes (``passes = forward + 2 * backward``)."""


@dataclass(frozen=True)
class PassCount:
    """Examples through forward and through backward; ``passes`` weighs backward 2x."""

    forward: int = 0
    backward: int = 0

    @property
    def passes(self) -> int:
        return self.forward + BACKWARD_WEIGHT * self.backward

    def as_metrics(self) -> dict[str, float]:
        return {"cost/forward": float(self.forward), "cost/backward": float(self.backward),
                "cost/passes": float(self.passes)}

    def __add__(self, other: PassCount) -> PassCount:
        return PassCount(self.forward + other.forward, self.backward + other.backward)

    def __sub__(self, other: PassCount) -> PassCount:
        return PassCount(self.forward - other.forward, self.backward - other.backward)


def retrain_passes(n_retain: int, epochs: int) -> PassCount:
    """The cost of retraining from scratch: ``epochs`` passes over ``D_r``, forward and backward.

    This is what :func:`raysweep.training.train_model` and the ``retrain`` method spend (their
    loaders keep the last, partial batch: ``drop_last=False``).
    """
    if n_retain < 0 or epochs < 0:
        raise ValueError(f"n_retain and epochs must be >= 0, got {n_retain}, {epochs}")
    return PassCount(forward=n_retain * epochs, backward=n_retain * epochs)


_ACTIVE: contextvars.ContextVar[PassCounter | None] = contextvars.ContextVar(
    "raysweep_active_pass_counter", default=None)


def active_counter() -> PassCounter | None:
    """The counter that models built now are attached to (``None`` outside one, or paused)."""
    return _ACTIVE.get()


def _batch_of(value: Any) -> torch.Tensor | None:
    """The first tensor with a batch dimension in a (possibly nested) output."""
    if isinstance(value, torch.Tensor):
        return value if value.dim() >= 1 else None
    if isinstance(value, Mapping):     # dicts and Hugging Face ModelOutput (an OrderedDict)
        value = list(value.values())
    elif hasattr(value, "to_tuple") and callable(value.to_tuple):
        value = value.to_tuple()
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _batch_of(item)
            if found is not None:
                return found
    return None


class _Hook:
    """Base of the hooks: shared (not copied) by ``deepcopy``, inert when pickled."""

    def __init__(self, counter: PassCounter) -> None:
        self.counter = counter

    def __deepcopy__(self, memo: dict[int, Any]) -> _Hook:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_InertHook, ())


class _InertHook:
    """What a counting hook becomes when the model is pickled (counting does not travel)."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


class _PreHook(_Hook):
    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.counter._depth += 1
        return None


class _PostHook(_Hook):
    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any) -> None:
        counter = self.counter
        counter._depth -= 1
        if counter._depth > 0 or output is None:   # inner counted module, or forward raised
            return None
        counter._saw(module)
        if not counter._counting:
            return None
        out = _batch_of(output)
        if out is not None:
            batch = int(out.shape[0])
        else:
            inp = _batch_of(args) if args else _batch_of(kwargs)
            if inp is None:
                return None
            batch = int(inp.shape[0])
        counter.forward += batch
        if out is not None and torch.is_grad_enabled() and out.requires_grad:
            out.register_hook(_GradHook(counter, batch))
        return None


class _GradHook:
    __slots__ = ("batch", "counter")

    def __init__(self, counter: PassCounter, batch: int) -> None:
        self.counter, self.batch = counter, batch

    def __call__(self, grad: torch.Tensor) -> None:
        if self.counter._counting:
            self.counter.backward += self.batch
        return None


def _count_points(model: nn.Module) -> list[nn.Module]:
    """The root model, plus the encoder of a text model whose ``forward_embeds`` bypasses
    ``forward`` (UNSIR/USIFR learn noise in embedding space through it)."""
    points = [model]
    encoder = getattr(model, "encoder", None)
    if callable(getattr(model, "forward_embeds", None)) and isinstance(encoder, nn.Module):
        points.append(encoder)
    return points


class PassCounter:
    """Counts sample-passes through every model attached to it (see the module docstring).

    >>> counter = PassCounter()
    >>> model = counter.attach(nn.Linear(3, 2))
    >>> _ = model(torch.zeros(5, 3)).sum().backward()
    >>> counter.snapshot()
    PassCount(forward=5, backward=5)
    >>> counter.detach()

    Usually used through :meth:`counting` (what ``run_method`` does): attach to the given models,
    make the counter *active* so that models built by ``ModelSpec.build`` are attached too, and
    detach everything at the end. Counts are kept after detaching; a counter reused for a second
    run keeps adding to them.
    """

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0
        self._depth = 0
        self._paused = 0
        self._open = False
        # (module, [hook ids]) of every module that carries this counter's hooks and that we
        # know of: attached ones and copies seen running. Weak, so dropped models go away.
        self._hooked: list[tuple[weakref.ref[nn.Module], tuple[int, int]]] = []

    # --- state -------------------------------------------------------------------------------

    @property
    def _counting(self) -> bool:
        return self._open and self._paused == 0

    def snapshot(self) -> PassCount:
        return PassCount(self.forward, self.backward)

    def reset(self) -> None:
        self.forward = self.backward = 0

    @contextmanager
    def paused(self) -> Iterator[PassCounter]:
        """Nothing is counted inside, and models built inside are not attached."""
        self._paused += 1
        token = _ACTIVE.set(None)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
            self._paused -= 1

    # --- attaching ---------------------------------------------------------------------------

    def _owns(self, module: nn.Module) -> bool:
        return any(isinstance(h, _PostHook) and h.counter is self
                   for h in module._forward_hooks.values())

    def _saw(self, module: nn.Module) -> None:
        """Remember a module that ran with our hooks (a deep copy made during the run), so that
        :meth:`detach` removes them from it too."""
        if any(ref() is module for ref, _ in self._hooked):
            return
        for point in _count_points(module):
            ids = self._ids_on(point)
            if ids is not None:
                self._hooked.append((weakref.ref(point), ids))

    def _ids_on(self, module: nn.Module) -> tuple[int, int] | None:
        pre = next((k for k, h in module._forward_pre_hooks.items()
                    if isinstance(h, _PreHook) and h.counter is self), None)
        post = next((k for k, h in module._forward_hooks.items()
                     if isinstance(h, _PostHook) and h.counter is self), None)
        return None if pre is None or post is None else (pre, post)

    def attach(self, model: nn.Module) -> nn.Module:
        """Count ``model`` (idempotent; a copy of a counted model is counted already).
        Returns ``model``."""
        self._open = True
        for point in _count_points(model):
            if self._owns(point):
                continue
            pre = point.register_forward_pre_hook(_PreHook(self), with_kwargs=True)
            post = point.register_forward_hook(_PostHook(self), with_kwargs=True, always_call=True)
            self._hooked.append((weakref.ref(point), (pre.id, post.id)))
        return model

    def detach(self) -> None:
        """Remove the hooks from every module known to carry them and stop counting. Copies
        that never ran while attached keep an inert hook."""
        for ref, (pre_id, post_id) in self._hooked:
            module = ref()
            if module is None:
                continue
            module._forward_pre_hooks.pop(pre_id, None)
            module._forward_pre_hooks_with_kwargs.pop(pre_id, None)
            module._forward_hooks.pop(post_id, None)
            module._forward_hooks_with_kwargs.pop(post_id, None)
            module._forward_hooks_always_called.pop(post_id, None)
        self._hooked.clear()
        self._open = False
        self._depth = 0

    @contextmanager
    def counting(self, *models: nn.Module) -> Iterator[PassCounter]:
        """Attach to ``models``, count models built inside (``ModelSpec.build``), detach at the
        end (also on error)."""
        for m in models:
            self.attach(m)
        self._open = True
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
            self.detach()

    def __repr__(self) -> str:
        return f"PassCounter(forward={self.forward}, backward={self.backward})"


def attach_if_active(model: nn.Module) -> nn.Module:
    """Attach the active counter (if any) to a newly built model; used by ``ModelSpec.build``."""
    counter = _ACTIVE.get()
    if counter is not None:
        counter.attach(model)
    return model
