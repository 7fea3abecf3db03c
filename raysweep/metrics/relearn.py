"""Relearn time (paper 003): how quickly a model regains its forgotten knowledge.

Fine-tune a *copy* of the unlearned model on D_f with cross-entropy and count the epochs until
its accuracy on D_f is back within ``tolerance`` of the original model's forget accuracy. More
epochs = the knowledge is more thoroughly gone (paper 003 reports > 100 epochs for its methods).

Choices:

* Fractional epochs: the forget accuracy is checked ``checks_per_epoch`` times per epoch (after
  evenly spaced batches, always after the last one), and the result is
  ``epoch + batches_done / batches_per_epoch``; the resolution is ``1 / checks_per_epoch``
  epochs. Checking after every batch would cost a full pass over D_f per batch.
* A model already within the tolerance before any step relearns in ``0.0`` epochs.
* A model that never gets there returns ``float(max_epochs)``, read as "at least max_epochs".
* ``max_samples`` fine-tunes on a seeded random subset of D_f (paper 003 uses 50 samples on
  some datasets), while accuracy is always measured on the whole of D_f.

This trains a model, so it is not part of :func:`raysweep.metrics.evaluate` (which only reads
cached logits); call it on the final model of a trial or in regression suites.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from raysweep.data.bundle import UnlearnData

__all__ = ["relearn_time"]


def relearn_time(model: nn.Module, data: UnlearnData, original_forget_acc: float, *, lr: float,
                 max_epochs: int, device: torch.device | str, seed: int, batch_size: int,
                 tolerance: float = 0.02, optimizer: str = "sgd", momentum: float = 0.9,
                 checks_per_epoch: int = 10, max_samples: int | None = None) -> float:
    """Epochs of fine-tuning on D_f until forget accuracy >= ``original_forget_acc - tolerance``.

    Args:
        model: the unlearned model; it is deep-copied and never modified.
        data: the data bundle; only ``data.forget`` is used.
        original_forget_acc: the original model's accuracy on D_f, in ``[0, 1]``.
        lr: fine-tuning learning rate.
        max_epochs: cap; returned when the target is never reached.
        device: where to train.
        seed: seeds the shuffling, the subset and torch's RNG.
        batch_size: fine-tuning batch size.
        tolerance: absolute accuracy slack below the original forget accuracy.
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"`` or ``"adamw"``.
        checks_per_epoch: how often per epoch the forget accuracy is measured.
        max_samples: fine-tune on at most this many D_f samples (accuracy still on all of D_f).

    Returns:
        Epochs as a float in ``[0, max_epochs]``.
    """
    import torch
    from torch.utils.data import Subset

    from raysweep.metrics.accuracy import accuracy
    from raysweep.training import make_loader, make_optimizer, predict_logits, seed_everything

    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
    if checks_per_epoch < 1:
        raise ValueError(f"checks_per_epoch must be >= 1, got {checks_per_epoch}")
    if not 0.0 <= original_forget_acc <= 1.0:
        raise ValueError(f"original_forget_acc is an accuracy in [0, 1], "
                         f"got {original_forget_acc}")
    forget = data.forget
    if len(forget) == 0:
        raise ValueError("relearn_time needs a non-empty forget set")
    dev = torch.device(device) if isinstance(device, str) else device
    seed_everything(seed)
    twin = copy.deepcopy(model).to(dev)
    target = original_forget_acc - tolerance

    def forget_acc() -> float:
        logits, labels = predict_logits(twin, forget, device=dev)
        return accuracy(logits, labels)

    if forget_acc() >= target:
        return 0.0
    train_set: Dataset = forget
    if max_samples is not None and len(forget) > max_samples:
        rng = np.random.default_rng(seed)
        train_set = Subset(forget, np.sort(rng.choice(len(forget), max_samples, replace=False))
                           .tolist())
    loader = make_loader(train_set, batch_size, shuffle=True, seed=seed)
    n_batches = len(loader)
    checks = {max(1, round(k * n_batches / checks_per_epoch))
              for k in range(1, checks_per_epoch + 1)}
    opt = make_optimizer(twin.parameters(), optimizer, lr, momentum=momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(max_epochs):
        twin.train()
        for b, (x, y) in enumerate(loader, start=1):
            opt.zero_grad(set_to_none=True)
            loss_fn(twin(x.to(dev)), y.to(dev)).backward()
            opt.step()
            if b in checks and forget_acc() >= target:  # predict_logits restores train mode
                return float(epoch + b / n_batches)
    return float(max_epochs)
