"""NegGrad+ (Kurmanji et al. 2023, after Choi & Na 2023): fine-tune on D_r while ascending the
loss on D_f.

Each step pairs a retain batch with the next forget batch (the forget loader is cycled, so an
epoch is one pass over D_r) and minimises β·CE(D_r batch) − (1 − β)·CE(D_f batch).
Compared in paper 004 (as NG+, lr grid-searched over 1e-5..5e-3 with 1-4 epochs); defaults
β 0.95, SGD lr 0.01, momentum 0.9, wd 5e-4. No departure from the published definition. The
forget term is unbounded below, so many epochs or a small β can blow the model up:
that is the method, and the sweep's retain-accuracy constraint is what keeps it in check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from raysweep.methods._base import (
    EpochEnd, MethodConfig, UnlearnContext, UnlearnData, register_method,
)
from raysweep.methods._common import cycle_loader, mean
from raysweep.training import make_optimizer

__all__ = ["NegGradPlusConfig", "neggrad_plus"]


class NegGradPlusConfig(MethodConfig):
    epochs: int = Field(5, ge=1, le=200,
                        description="passes over D_r (paper 004 searches 1-4; finetune uses 5)")
    beta: float = Field(0.95, ge=0, le=1,
                        description="weight β of the retain CE; the forget CE gets 1-β (0.95)")
    lr: float = Field(0.01, gt=0, le=10,
                      description="learning rate (default 0.01; paper 004 searches 1e-5..5e-3)")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="optimizer")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="weight decay")
    batch_size: int = Field(128, ge=1, le=65536, description="batch size of both D_r and D_f")


@register_method("neggrad+", config=NegGradPlusConfig,
                 paper="Kurmanji et al. 2023 (NegGrad+); Choi & Na 2023; paper 004")
def neggrad_plus(model: nn.Module, data: UnlearnData, cfg: NegGradPlusConfig,
                 ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Descend the CE on D_r and ascend it on D_f, weighted β and 1-β."""
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    forget_iter = cycle_loader(data.loader("forget", cfg.batch_size, seed=ctx.seed + 1))
    for epoch in range(cfg.epochs):
        model.train()
        losses, retain_ce, forget_ce = [], [], []
        for x, y in data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch):
            xf, yf = next(forget_iter)
            x, y = x.to(ctx.device), y.to(ctx.device)
            xf, yf = xf.to(ctx.device), yf.to(ctx.device)
            opt.zero_grad(set_to_none=True)
            ce_r = F.cross_entropy(model(x), y)
            ce_f = F.cross_entropy(model(xf), yf)
            loss = cfg.beta * ce_r - (1.0 - cfg.beta) * ce_f
            loss.backward()
            opt.step()
            losses.append(loss.item())
            retain_ce.append(ce_r.item())
            forget_ce.append(ce_f.item())
        yield EpochEnd(epoch + 1, {"loss": mean(losses), "retain_ce": mean(retain_ce),
                                   "forget_ce": mean(forget_ce)})
