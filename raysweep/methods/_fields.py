"""Field factories for the hyperparameters many method configs share.

Each factory fixes a field's bounds once; the method gives its own default and description
(the paper's value and where it comes from). Method modules import this module as ``fields``::

    from raysweep.methods import _fields as fields

    class FooConfig(MethodConfig):
        lr: float = fields.lr(5e-4, "SGD learning rate (paper: 5e-4)")
        batch_size: int = fields.batch_size(64, "retain batch size (code: 64)", le=8192)

A field whose bounds differ from these keeps its own ``pydantic.Field``. The factories return
``Field(...)`` unchanged, so schemas, validation and ``raysweep methods show`` are the same as
with the ``Field`` written out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

__all__ = ["Optimizer", "epochs", "lr", "momentum", "weight_decay", "batch_size", "temperature",
           "optimizer"]

#: The optimizers a method may name (``raysweep.training.make_optimizer`` builds each).
Optimizer = Literal["sgd", "adam"]


def epochs(default: int | None, description: str, *, le: int = 200) -> Any:
    """An epoch count: at least 1, at most ``le``."""
    return Field(default, ge=1, le=le, description=description)


def lr(default: float | None, description: str) -> Any:
    """A learning rate: in (0, 10]."""
    return Field(default, gt=0, le=10, description=description)


def momentum(default: float, description: str) -> Any:
    """An SGD momentum: in [0, 1)."""
    return Field(default, ge=0, lt=1, description=description)


def weight_decay(default: float, description: str) -> Any:
    """An optimizer weight decay: in [0, 1]."""
    return Field(default, ge=0, le=1, description=description)


def batch_size(default: int | None, description: str, *, le: int = 65536) -> Any:
    """A batch size (rows per batch): at least 1, at most ``le``."""
    return Field(default, ge=1, le=le, description=description)


def temperature(default: float, description: str) -> Any:
    """A softmax (distillation, KL, contrastive) temperature: in (0, 100]."""
    return Field(default, gt=0, le=100, description=description)


def optimizer(default: str, description: str) -> Any:
    """An optimizer name, one of :data:`Optimizer`."""
    return Field(default, description=description)
