"""L1-sparse: fine-tune on D_r with an L1 penalty whose weight decays linearly to 0.

``loss = CE(D_r) + α_t·||θ||₁`` with ``α_t = α·(1 − t/T)`` over the T optimisation steps of
the run: the early, strong penalty pushes weights toward a sparse model (which "simplifies
unlearning"), the late, weak one lets the retain loss recover accuracy.

Paper: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023 (also a
baseline in SalUn). Reference: OPTML-Group/Unlearn-Sparse, ``unlearn/FT.py`` (``FT_l1``, run
as ``--unlearn FT_prune``), SGD with momentum 0.9 and weight decay 5e-4 (its ``arg_parser.py``
defaults), batches of 256, ``--unlearn_lr 0.01 --unlearn_epochs 10`` in its README.

* α: the reference's ``--alpha`` defaults to 0.2 (help text "unlearn noise"; the README leaves
  it as ``${alpha}``); raysweep defaults to 5e-4, because ``α·||θ||₁`` with α = 0.2 is
  hundreds of times the CE on a small model and its sign gradient drives every weight to 0
  within the first epoch (digits-class MLP: retain accuracy 17%, test 15%). The search space covers
  1e-5..1e-3.
* decay: the reference decays α once per epoch, ``α·(1 − e/E)`` for e = 0..E−1 (it never
  reaches 0; ``decay="epoch"``), and reads an ``args.no_l1_epochs`` that its argument parser
  never defines, so the published code stops with an AttributeError unless one adds it (0 is
  assumed here). We decay per step by default (``decay="step"``) so that α really reaches 0 at
  the end, as the paper's "linearly decaying scheduler" describes.
* ||θ||₁ sums every trainable parameter, biases and norms included, as the reference does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
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
from raysweep.methods._common import mean
from raysweep.training import make_optimizer


class L1SparseConfig(MethodConfig):
    alpha: float = Field(5e-4, ge=0, le=10,
                         description="initial L1 weight α (raysweep: 5e-4; the reference "
                                     "code's --alpha default is 0.2)")
    epochs: int = fields.epochs(10, "passes over D_r (paper: 10)")
    lr: float = fields.lr(0.01, "learning rate (paper: 0.01-0.1)")
    optimizer: fields.Optimizer = fields.optimizer("sgd", "optimizer (paper: SGD)")
    momentum: float = fields.momentum(0.9, "SGD momentum")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay")
    batch_size: int = fields.batch_size(256, "retain batch size (reference: 256)")
    decay: Literal["step", "epoch"] = Field(
        "step", description="α decays linearly per step to 0 (raysweep) or per epoch, "
                            "α·(1 − e/E) (reference)")


def l1_norm(params: list[nn.Parameter]) -> torch.Tensor:
    return torch.stack([p.abs().sum() for p in params]).sum()


def alpha_at(cfg: L1SparseConfig, step: int, total_steps: int, epoch: int) -> float:
    """α at 0-based ``step`` of ``total_steps`` (``decay="step"``) or in 0-based ``epoch``."""
    if cfg.decay == "epoch":
        return cfg.alpha * (1.0 - epoch / cfg.epochs)
    return cfg.alpha * (1.0 - step / total_steps)


@register_method("l1-sparse", config=L1SparseConfig,
                 paper="Jia et al. 2023 (Model Sparsity Can Simplify Machine Unlearning, NeurIPS)",
                 reference="OPTML-Group/Unlearn-Sparse: unlearn/FT.py FT_iter(with_l1=True)",
                 differences=(
                     "by default (decay='step') the L1 weight decays per step and reaches 0 at the"
                     " end (the reference: alpha*(1 - e/E) once per epoch; decay='epoch' "
                     "reproduces it)",
                 ))
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
            alpha_t = alpha_at(cfg, step, total, epoch)
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
                                   "alpha": alpha_at(cfg, step, total, epoch + 1)})
