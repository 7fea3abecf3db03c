"""Small helpers shared by method modules (pure torch)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import cycle

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["kl_to_target", "cycle_loader", "random_subset", "batch_to", "mean"]


def kl_to_target(student_logits: torch.Tensor, target_probs: torch.Tensor,
                 temperature: float = 1.0, reduction: str = "batchmean") -> torch.Tensor:
    """KL(target || student) with the student at temperature ``T``; ``target_probs`` are already
    softened by the caller. Multiplied by T^2 (Hinton et al.) so gradients keep their scale."""
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p, target_probs, reduction=reduction) * temperature**2


def cycle_loader(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless iteration over a loader (forget batches paired with retain batches)."""
    return iter(cycle(loader))


def random_subset(ds: TensorDataset, fraction: float, seed: int) -> TensorDataset:
    """A seeded random subset of ``fraction`` of the rows (at least one)."""
    n = len(ds)
    k = max(1, round(fraction * n))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[:k]
    return TensorDataset(*(t[idx] for t in ds.tensors))


def batch_to(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in batch)


def mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
