"""Fine-tune: continue training the original model on the retain set only.

The simplest baseline (papers 000, 002, 004): catastrophic forgetting erodes what the model
knew about D_f. Default recipe from paper 004: 5 epochs, SGD lr 0.02, momentum 0.9, wd 5e-4.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

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


class FinetuneConfig(MethodConfig):
    epochs: int = fields.epochs(5, "passes over D_r (paper 004: 5)")
    lr: float = fields.lr(0.02, "learning rate (paper 004: 0.02)")
    optimizer: fields.Optimizer = fields.optimizer("sgd", "optimizer")
    momentum: float = fields.momentum(0.9, "SGD momentum")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay")
    batch_size: int = fields.batch_size(128, "retain batch size", le=8192)


@register_method("finetune", tasks=("classify", "generate"), config=FinetuneConfig,
                 paper="Golatkar et al. 2020; baseline in papers 000, 002, 004",
                 reference="if-loops/selective-synaptic-dampening: "
                            "src/forget_random_strategies.py finetune, src/utils.py fit_one_cycle")
def finetune(model: nn.Module, data: UnlearnData, cfg: FinetuneConfig,
             ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Continue training on D_r with cross-entropy."""
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    for epoch in range(cfg.epochs):
        loss = ce_epoch(model, data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch), opt,
                        ctx.device)
        yield EpochEnd(epoch + 1, {"loss": loss})
