"""Plain-PyTorch helpers shared by the reference re-implementations (test_reference_*.py)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from raysweep.methods._base import frozen_copy

__all__ = ["loader", "trainable_copy", "frozen_copy", "max_diff"]


def loader(ds: Dataset, batch_size: int, seed: int | None) -> DataLoader:
    """Batches in the order raysweep's ``data.loader(..., seed=seed)`` draws them;
    ``seed=None``: dataset order, as the references' unshuffled loaders."""
    if seed is None:
        return DataLoader(ds, batch_size=batch_size, shuffle=False)
    return DataLoader(ds, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def trainable_copy(model: nn.Module) -> nn.Module:
    """A deep copy in train mode with gradients on (the student a reference trains)."""
    m = copy.deepcopy(model).train()
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def max_diff(a: nn.Module, b: nn.Module) -> float:
    """Max |difference| over every floating-point tensor of the two state dicts."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max())
               for k in sa if sa[k].is_floating_point())
