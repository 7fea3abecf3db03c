"""L1-sparse: fine-tune on D_r with an L1 penalty whose weight decays linearly to 0.

``loss = CE(D_r) + α_t·||θ||₁`` with ``α_t = α·(1 − t/T)`` over the T optimisation steps of
the run: the early, strong penalty pushes weights toward a sparse model (which "simplifies
unlearning"), the late, weak one lets the retain loss recover accuracy.

Paper: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023 (also a
baseline in SalUn). The reference code decays α once per epoch (α·(1 − e/E), never reaching 0);
we decay per step so that α really reaches 0 at the end, as the paper's "linearly decaying
scheduler" describes. ||θ||₁ sums every trainable parameter, biases and norms included, as the
reference does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from raysweep.methods._base import (
    EpochEnd, MethodConfig, UnlearnContext, UnlearnData, register_method,
)
from raysweep.methods._common import mean
from raysweep.training import make_optimizer


class L1SparseConfig(MethodConfig):
    alpha: float = Field(5e-4, ge=0, le=10,
                         description="initial L1 weight α (reference code default: 5e-4)")
    epochs: int = Field(10, ge=1, le=200, description="passes over D_r (paper: 10)")
    lr: float = Field(0.01, gt=0, le=10, description="learning rate (paper: 0.01-0.1)")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="optimizer (paper: SGD)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="weight decay")
    batch_size: int = Field(256, ge=1, le=65536, description="retain batch size")


def l1_norm(params: list[nn.Parameter]) -> torch.Tensor:
    return torch.stack([p.abs().sum() for p in params]).sum()


@register_method("l1-sparse", config=L1SparseConfig,
                 paper="Jia et al. 2023 (Model Sparsity Can Simplify Machine Unlearning, NeurIPS)")
def l1_sparse(model: nn.Module, data: UnlearnData, cfg: L1SparseConfig,
              ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Fine-tune on D_r with CE plus an L1 penalty on the weights that decays linearly to 0."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    steps_per_epoch = -(-len(data.retain) // cfg.batch_size)
    total = max(1, cfg.epochs * steps_per_epoch)
    step = 0
    for epoch in range(cfg.epochs):
        ce_losses, l1_values = [], []
        model.train()
        for x, y in data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch):
            x, y = x.to(ctx.device), y.to(ctx.device)
            alpha_t = cfg.alpha * (1.0 - step / total)
            ce = F.cross_entropy(model(x), y)
            l1 = l1_norm(params)
            loss = ce + alpha_t * l1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            ce_losses.append(ce.item())
            l1_values.append(l1.item())
        yield EpochEnd(epoch + 1, {"loss": mean(ce_losses), "l1": mean(l1_values),
                                   "alpha": cfg.alpha * (1.0 - step / total)})
