"""The shared field factories fix the bounds of the common hyperparameters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from raysweep.methods import _fields as fields
from raysweep.methods._base import MethodConfig


class _Config(MethodConfig):
    epochs: int = fields.epochs(3, "epochs")
    short: int = fields.epochs(1, "at most 100", le=100)
    lr: float | None = fields.lr(None, "learning rate")
    momentum: float = fields.momentum(0.9, "momentum")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay")
    batch_size: int = fields.batch_size(64, "batch size", le=8192)
    temperature: float = fields.temperature(4.0, "temperature")
    optimizer: fields.Optimizer = fields.optimizer("adam", "optimizer")


def test_defaults_and_descriptions_are_the_callers() -> None:
    cfg = _Config()
    assert (cfg.epochs, cfg.short, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size,
            cfg.temperature, cfg.optimizer) == (3, 1, None, 0.9, 5e-4, 64, 4.0, "adam")
    assert _Config.model_fields["short"].description == "at most 100"


@pytest.mark.parametrize(("name", "ok", "bad"), [
    ("epochs", [1, 200], [0, 201]),
    ("short", [100], [101]),
    ("lr", [10, 1e-9], [0, 10.5]),
    ("momentum", [0, 0.99], [-0.1, 1]),
    ("weight_decay", [0, 1], [-1e-9, 1.5]),
    ("batch_size", [1, 8192], [0, 8193]),
    ("temperature", [100, 0.01], [0, 101]),
    ("optimizer", ["sgd", "adam"], ["adamw", "SGD", ""]),
])
def test_bounds(name: str, ok: list[float | str], bad: list[float | str]) -> None:
    for v in ok:
        _Config(**{name: v})
    for v in bad:
        with pytest.raises(ValidationError):
            _Config(**{name: v})
