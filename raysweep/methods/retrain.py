"""Retrain: train a fresh model on D_r only: the exact-unlearning oracle every method is
compared with. Uses the workload's training recipe unless overridden."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from pydantic import Field
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


class RetrainConfig(MethodConfig):
    epochs: int | None = fields.epochs(None, "epochs (default: the workload's recipe)", le=1000)
    lr: float | None = fields.lr(None, "learning rate (default: the recipe's)")
    optimizer: Literal["sgd", "adam", "adamw"] | None = Field(None,
                                                              description="default: the recipe's")
    batch_size: int | None = fields.batch_size(None, "default: the recipe's")


@register_method("retrain", tasks=("classify", "generate"), config=RetrainConfig,
                 paper="exact unlearning oracle (all papers)",
                 reference="none (no reference code): the exact-unlearning oracle, the "
                            "workload's own training recipe on D_r")
def retrain(model: nn.Module, data: UnlearnData, cfg: RetrainConfig,
            ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Re-initialise the model and train it from scratch on D_r with the original recipe."""
    recipe = ctx.train_recipe
    epochs = cfg.epochs or recipe.epochs
    fresh = ctx.fresh_model(pretrained=True, seed=ctx.seed)
    # Replace the weights in place: callers hold a reference to ``model``.
    with torch.no_grad():
        model.load_state_dict(fresh.state_dict())
    del fresh
    opt = make_optimizer(model.parameters(), cfg.optimizer or recipe.optimizer,
                         cfg.lr or recipe.lr, recipe.momentum, recipe.weight_decay)
    loader_bs = cfg.batch_size or recipe.batch_size
    steps = epochs * max(1, -(-len(data.retain) // loader_bs))
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
             if recipe.schedule == "cosine" else None)
    for epoch in range(epochs):
        loss = ce_epoch(model, data.loader("retain", loader_bs, seed=ctx.seed + epoch), opt,
                        ctx.device, scheduler=sched)
        yield EpochEnd(epoch + 1, {"loss": loss})
