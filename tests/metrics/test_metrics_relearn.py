from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods._base import UnlearnData
from raysweep.metrics import accuracy, forward_splits, relearn_time


def _blobs(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, 8, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.arange(4).repeat_interleave(n_per_class)
    return centers[y] + torch.randn(len(y), 8, generator=g), y


def _train(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def problem():
    x, y = _blobs(30, seed=0)
    xt, yt = _blobs(10, seed=1)
    forget = y == 0
    data = UnlearnData(forget=TensorDataset(x[forget], y[forget]),
                       retain=TensorDataset(x[~forget], y[~forget]),
                       val=TensorDataset(xt, yt), test=TensorDataset(xt, yt), num_classes=4)
    original = _train(x, y, seed=0)
    never_saw = _train(x[~forget], y[~forget], seed=0)   # the retrain oracle of class 0
    out = forward_splits(original, data, "cpu")
    orig_acc = accuracy(out["forget"].logits, out["forget"].labels)
    return data, original, never_saw, orig_acc


def _relearn(model, data, orig_acc, **kw):
    args = {"lr": 0.05, "max_epochs": 20, "device": "cpu", "seed": 0, "batch_size": 8}
    args.update(kw)
    return relearn_time(model, data, orig_acc, **args)


def test_original_relearns_in_zero_epochs(problem):
    data, original, _, orig_acc = problem
    assert orig_acc > 0.9
    assert _relearn(original, data, orig_acc) == 0.0


def test_model_that_never_saw_forget_set_needs_epochs(problem):
    data, _, never_saw, orig_acc = problem
    before = [p.detach().clone() for p in never_saw.parameters()]
    epochs = _relearn(never_saw, data, orig_acc, checks_per_epoch=4)
    assert 0.0 < epochs < 20.0
    assert (epochs * 4) == pytest.approx(round(epochs * 4))  # quarter-epoch resolution
    assert all(torch.equal(a, b) for a, b in zip(before, never_saw.parameters()))  # a copy


def test_capped_at_max_epochs_and_deterministic(problem):
    data, _, never_saw, orig_acc = problem
    assert _relearn(never_saw, data, orig_acc, lr=0.0, max_epochs=2) == 2.0
    a = _relearn(never_saw, data, orig_acc, max_samples=10)
    assert a == _relearn(never_saw, data, orig_acc, max_samples=10)


def test_rejects_bad_arguments(problem):
    data, original, _, _ = problem
    with pytest.raises(ValueError, match="max_epochs"):
        _relearn(original, data, 0.9, max_epochs=0)
    with pytest.raises(ValueError, match="accuracy in"):
        _relearn(original, data, 90.0)
