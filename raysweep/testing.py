"""Reusable fixtures and the method conformance check (like sklearn's ``check_estimator``).

Third-party methods can run ``check_method("mymethod")`` in their own tests.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods._base import (
    UnlearnContext, UnlearnData, get_method, make_config, run_method,
)
from raysweep.models import ModelSpec
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
        fmask[torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))[: len(ytr) // 4]] = True
        forget_classes: tuple[int, ...] = ()
    else:
        fmask = ytr == forget_class
        forget_classes = (forget_class,)
    device = resolve_device("cpu")
    spec = ModelSpec(model, num_classes, in_chans=1, img_size=img_size)
    recipe = TrainConfig(epochs=train_epochs, lr=0.05, batch_size=16)
    original = spec.build(seed=seed)
    train_model(original, TensorDataset(xtr, ytr), recipe, device=device, seed=seed)
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


def fast_config(name: str, **overrides: object):  # noqa: ANN201
    """The method's default config with small batch sizes (tiny data), plus overrides."""
    info = get_method(name)
    values: dict[str, object] = {}
    for field in info.config.model_fields:
        if "batch" in field:
            values[field] = 16
    values.update(overrides)
    return make_config(name, values)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def check_method(name: str, *, seed: int = 0) -> None:
    """Assert the method contract on a tiny problem; raises ``AssertionError`` on a violation."""
    info = get_method(name)
    prob = tiny_problem(seed=seed)
    before_original = _params(prob.ctx.original)
    cfg = fast_config(name)

    def one_run() -> tuple[nn.Module, int]:
        p = tiny_problem(seed=seed)
        m = p.fresh_copy()
        res = run_method(name, m, p.data, cfg, p.ctx)
        return m, res.epochs

    model = prob.fresh_copy()
    start = _params(model)
    res = run_method(name, model, prob.data, cfg, prob.ctx)
    assert res.epochs >= 1, f"{name} yielded nothing"
    if info.one_shot:
        assert res.epochs == 1, f"{name} is one-shot but yielded {res.epochs} times"
    after = _params(model)
    assert any(not torch.equal(a, b) for a, b in zip(start, after)), f"{name} left the weights unchanged"
    assert all(torch.isfinite(t.float()).all() for t in after), f"{name} produced non-finite weights"
    assert all(torch.equal(a, b) for a, b in zip(before_original, _params(prob.ctx.original))), \
        f"{name} modified ctx.original"
    # Budget: the runner stops the generator after one epoch.
    capped = run_method(name, prob.fresh_copy(), prob.data, cfg, prob.ctx, max_epochs=1)
    assert capped.epochs == 1
    # Determinism under a seed.
    m1, _ = one_run()
    m2, _ = one_run()
    assert all(torch.equal(a, b) for a, b in zip(_params(m1), _params(m2))), f"{name} is not deterministic"
