"""Amnesiac unlearning, relabel variant (Graves et al. 2021, "Amnesiac Machine Learning"; the
"Mislabel" method of paper 000).

Give every forget sample one random wrong label, drawn once and uniformly, then fine-tune on
D_r ∪ relabelled D_f with cross-entropy. For class forgetting the new label is never one of the
forgotten classes (``data.forget_classes``): relabelling a class-0 sample as forgotten class 3
would teach the model class 3, which is also to be forgotten. For random or targeted
forgetting the only excluded label is the sample's own.

The reference code (SSD repository) draws the new label with rejection sampling against the
true label only, also for class forgetting of several classes; we exclude every forgotten
class, as the definition requires. Defaults: Adam lr 1e-4 (paper 000 and the reference code), 3
epochs (reference; paper 000 reports 1), batch 128.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.errors import ConfigError
from raysweep.methods import _fields as fields
from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    UnlearnContext,
    UnlearnData,
    register_method,
)
from raysweep.methods._loops import ce_epoch
from raysweep.training import make_optimizer

__all__ = ["AmnesiacConfig", "amnesiac", "random_wrong_labels"]


class AmnesiacConfig(MethodConfig):
    epochs: int = fields.epochs(3, "passes over D_r ∪ D_f (reference: 3; paper 000: 1)")
    lr: float = fields.lr(1e-4, "learning rate (papers: 1e-4)")
    optimizer: fields.Optimizer = fields.optimizer("adam", "optimizer (papers: adam)")
    momentum: float = fields.momentum(0.9, "SGD momentum (ignored by adam)")
    weight_decay: float = fields.weight_decay(0.0, "weight decay (papers: 0)")
    batch_size: int = fields.batch_size(128, "batch size (reference: 128)")


def random_wrong_labels(y: torch.Tensor, num_classes: int, forget_classes: tuple[int, ...] = (),
                        *, seed: int = 0) -> torch.Tensor:
    """One uniformly random label per row, different from the row's label and, for class
    forgetting, from every class in ``forget_classes``."""
    gen = torch.Generator().manual_seed(seed)
    y = y.long().cpu()
    if forget_classes:
        allowed = torch.tensor([c for c in range(num_classes) if c not in set(forget_classes)])
        if len(allowed) == 0:
            raise ConfigError(f"amnesiac: all {num_classes} classes are forgotten, so there is no "
                              f"label left to relabel forget samples with")
        # Rows whose own label is not forgotten (a mixed forget set) must still change label.
        out = allowed[torch.randint(len(allowed), (len(y),), generator=gen)]
        clash = out == y
        while clash.any():
            if len(allowed) == 1:
                raise ConfigError("amnesiac: only one retained class and it is the sample's own "
                                  "label; no wrong label exists")
            out[clash] = allowed[torch.randint(len(allowed), (int(clash.sum()),), generator=gen)]
            clash = out == y
        return out
    if num_classes < 2:
        raise ConfigError(f"amnesiac needs at least 2 classes, got {num_classes}")
    # Uniform over the num_classes - 1 other labels: draw r in [0, C-2], skip over y.
    r = torch.randint(num_classes - 1, (len(y),), generator=gen)
    return r + (r >= y).long()


@register_method("amnesiac", config=AmnesiacConfig,
                 paper="Graves, Nagisetty & Ganesh 2021 (Amnesiac ML, relabel); "
                       "paper 000 (Mislabel)",
                 reference="if-loops/selective-synaptic-dampening: "
                            "src/forget_random_strategies.py amnesiac, src/unlearn.py "
                            "fit_one_unlearning_cycle",
                 differences=(
                     "random labels are drawn from the retained classes only, never another "
                     "forgotten class (the reference rejects only the row's own label)",
                 ))
def amnesiac(model: nn.Module, data: UnlearnData, cfg: AmnesiacConfig,
             ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Fine-tune on D_r plus D_f relabelled with random wrong labels."""
    xf, yf = data.tensors(data.forget)
    xr, yr = data.tensors(data.retain)
    wrong = random_wrong_labels(yf, data.num_classes, data.forget_classes, seed=ctx.seed)
    train_set = TensorDataset(torch.cat([xr, xf]), torch.cat([yr, wrong.to(yr.dtype)]))
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    for epoch in range(cfg.epochs):
        loss = ce_epoch(model, data.loader(train_set, cfg.batch_size, seed=ctx.seed + epoch), opt,
                        ctx.device)
        yield EpochEnd(epoch + 1, {"loss": loss})
