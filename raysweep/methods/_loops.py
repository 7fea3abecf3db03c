"""The plain cross-entropy training epoch that several methods share (pure torch).

Fine-tuning on D_r, training on relabelled data and the repair phases of noise methods all
run the same loop; keeping it in one place keeps their results comparable (same step order,
same loss averaging) and makes a method's own file show only what differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.methods._common import mean

__all__ = ["ce_epoch"]


def ce_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             opt: torch.optim.Optimizer, device: torch.device | str, *,
             scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
             frozen: Sequence[nn.Module] = ()) -> float:
    """One pass of ``opt`` over ``batches`` with mean cross-entropy; returns the mean loss.

    Args:
        model: put in train mode for the pass.
        batches: ``(x, y)`` pairs, moved to ``device`` one batch at a time.
        opt: stepped once per batch (gradients cleared to ``None`` before each step).
        device: where the batches go.
        scheduler: stepped after every optimizer step (a per-step schedule), if given.
        frozen: sub-modules kept in eval mode although ``model`` trains (frozen BatchNorm
            statistics must not move).

    Returns:
        The mean of the per-batch losses (0.0 for no batch).
    """
    model.train()
    for block in frozen:
        block.eval()
    losses: list[float] = []
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return mean(losses)
