"""NegGrad+ (Kurmanji et al. 2023, after Choi & Na 2023): fine-tune on D_r while ascending the
loss on D_f.

Each step pairs a retain batch with the next forget batch (the forget loader is cycled, so an
epoch is one pass over D_r) and minimises

    β·(CE(D_r batch) + (w/2)·||θ − θ₀||²) − (1 − β)·CE(D_f batch),

θ₀ being the original weights. Compared in paper 004 (as NG+, lr grid-searched over 1e-5..5e-3
with 1-4 epochs).

Reference: meghdadk/SCRUB, ``small_scale_unlearning.ipynb`` (``negative_grad`` /
``run_neggrad_epoch``; the CIFAR notebooks hold no NegGrad+ run). It differs from a plain
"descend on D_r, ascend on D_f" in three ways that change the result, all followed here by
default:

* the model is in **eval mode** during the updates (``run_neggrad_epoch`` calls
  ``model.eval()``): BatchNorm normalises with, and does not update, its running statistics,
  and dropout is off. ``model_mode="train"`` gives the textbook variant.
* an **L2 pull to the original weights**, ``(w/2)·||θ − θ₀||²``, is added to the retain term
  (so it is weighted by β too); ``w`` is the notebook's ``args.weight_decay``, 0.1 in the run
  that produced its numbers. ``l2_to_original=0`` switches it off.
* **10 epochs** of plain SGD (lr 0.01, no momentum, no weight decay in the optimizer), β 0.95,
  retain batches of 128 and forget batches of 64.

As in the reference, each epoch pairs the D_r batches with a freshly shuffled pass over D_f,
replayed in the same order (``itertools.cycle``) when D_f runs out first.

Paper 004's own NG+ (vperifan/SFTC-Unlearn ``neg_grad.py``) is another variant: train mode, no
L2 pull, CE_r − CE_f unweighted, one step per forget batch. The forget term is unbounded below,
so many epochs or a small β can blow the model up: that is the method, and the sweep's
retain-accuracy constraint is what keeps it in check.
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
from raysweep.methods._common import cycle_loader, mean
from raysweep.training import make_optimizer

__all__ = ["NegGradPlusConfig", "neggrad_plus", "l2_to"]


class NegGradPlusConfig(MethodConfig):
    epochs: int = fields.epochs(10, "passes over D_r (reference: 10; paper 004 searches 1-4)")
    beta: float = Field(0.95, ge=0, le=1,
                        description="weight β of the retain CE; the forget CE gets 1-β (0.95)")
    lr: float = fields.lr(0.01, "learning rate (reference: 0.01; paper 004 searches 1e-5..5e-3)")
    optimizer: fields.Optimizer = fields.optimizer("sgd", "optimizer (reference: sgd)")
    momentum: float = fields.momentum(0.0, "SGD momentum (reference: 0)")
    weight_decay: float = fields.weight_decay(0.0, "optimizer weight decay (reference: 0; the "
                                                   "reference pulls towards θ₀ instead)")
    l2_to_original: float = Field(
        0.1, ge=0, le=100,
        description="w of the pull β·(w/2)·||θ-θ₀||² to the original weights (reference: the "
                    "training weight decay, 0.1)")
    model_mode: Literal["eval", "train"] = Field(
        "eval", description="model mode during the updates (reference: eval)")
    batch_size: int = fields.batch_size(128, "D_r batch size (reference: 128)")
    forget_batch_size: int = fields.batch_size(64, "D_f batch size (reference: 64)")


def l2_to(params: list[nn.Parameter], anchors: list[torch.Tensor]) -> torch.Tensor:
    """``Σ ||p − p₀||²`` over the parameters."""
    return torch.stack([(p - a).pow(2).sum() for p, a in zip(params, anchors)]).sum()


@register_method("neggrad+", config=NegGradPlusConfig,
                 paper="Kurmanji et al. 2023 (NegGrad+); Choi & Na 2023; paper 004",
                 reference="meghdadk/SCRUB: small_scale_unlearning.ipynb negative_grad, "
                            "run_neggrad_epoch, l2_penalty")
def neggrad_plus(model: nn.Module, data: UnlearnData, cfg: NegGradPlusConfig,
                 ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Descend the CE on D_r (pulled towards the original weights), ascend it on D_f."""
    params = [p for p in model.parameters() if p.requires_grad]
    anchors = [p.detach().clone() for p in params]
    opt = make_optimizer(params, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    for epoch in range(cfg.epochs):
        # Like the reference's zip(retain_loader, cycle(forget_loader)) inside the epoch: the
        # forget batches are reshuffled every epoch and replayed in that order until D_r ends.
        forget_iter = cycle_loader(data.loader("forget", cfg.forget_batch_size,
                                               seed=ctx.seed + 7919 + epoch))
        model.train(cfg.model_mode == "train")
        losses, retain_ce, forget_ce = [], [], []
        for x, y in data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch):
            xf, yf = next(forget_iter)
            x, y = x.to(ctx.device), y.to(ctx.device)
            xf, yf = xf.to(ctx.device), yf.to(ctx.device)
            opt.zero_grad(set_to_none=True)
            ce_r = F.cross_entropy(model(x), y)
            ce_f = F.cross_entropy(model(xf), yf)
            retain_term = ce_r
            if cfg.l2_to_original:
                retain_term = ce_r + 0.5 * cfg.l2_to_original * l2_to(params, anchors)
            loss = cfg.beta * retain_term - (1.0 - cfg.beta) * ce_f
            loss.backward()
            opt.step()
            losses.append(loss.item())
            retain_ce.append(ce_r.item())
            forget_ce.append(ce_f.item())
        yield EpochEnd(epoch + 1, {"loss": mean(losses), "retain_ce": mean(retain_ce),
                                   "forget_ce": mean(forget_ce)})
