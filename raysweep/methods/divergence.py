"""Divergence: the 1st-place NeurIPS 2023 challenge solution (Fanchuan; paper 002, IV-B7).

Three steps (paper 002, Fig. 11):

1. **Warm-up** (once): one pass over D_f minimising KL(uniform || softmax(f(x))), i.e. pulling
   the forget predictions towards the uniform "pseudo label".
2. Each epoch, a **forget round**: D_f batches paired with D_r batches; with forget logits
   ``z_f`` and detached retain logits ``z_r``, minimise ``mean(-log_softmax(z_f @ z_r.T / t))``
   (the contrastive term: each forget output is made equally similar to every retain output,
   so it carries no sample-specific signal), SGD with a per-step cosine schedule.
3. Then a **retain round**: one pass over D_r with cross-entropy.

Defaults are the reference code's (the paper gives none): 8 epochs, t = 1.15; warm-up SGD
lr 5e-3 (momentum 0.9, no weight decay); forget SGD lr 3e-4 cosine to 1e-6 over
``epochs * len(forget loader)`` steps; retain SGD lr ``1e-3 * batch_size / 64``, momentum 0.9,
weight decay 1e-2; retain batch 256, forget batch 64. Each phase keeps its own optimizer
(and momentum buffer), as in the reference.

Choices where the paper is vague: the warm-up runs before the first epoch and is reported
with it; the retain lr scales with the retain batch size as the reference does
(``scale_retain_lr``). The method acts on logits only, so text models are
supported unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

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
from raysweep.methods._loops import ce_epoch


class DivergenceConfig(MethodConfig):
    epochs: int = fields.epochs(8, "forget+retain rounds (1st-place code: 8)")
    temperature: float = fields.temperature(
        1.15, "contrastive temperature t (1st-place code: 1.15)")
    warmup_lr: float = fields.lr(5e-3, "SGD lr of the KL-to-uniform warm-up (code: 5e-3)")
    forget_lr: float = fields.lr(3e-4, "SGD lr of the contrastive forget round (code: 3e-4)")
    forget_eta_min: float = Field(1e-6, ge=0, le=1,
                                  description="cosine floor of the forget lr (code: 1e-6)")
    retain_lr: float = fields.lr(1e-3, "SGD lr of the retain round per 64 samples (code: 1e-3)")
    scale_retain_lr: bool = Field(
        True, description="multiply retain_lr by batch_size/64, as the code does")
    momentum: float = fields.momentum(0.9, "SGD momentum of all phases (code: 0.9)")
    retain_weight_decay: float = fields.weight_decay(
        1e-2, "weight decay of the retain round (code: 1e-2)")
    batch_size: int = fields.batch_size(256, "retain batch size (code: 256)", le=8192)
    forget_batch_size: int = fields.batch_size(
        64, "forget batch size (challenge kit loaders: 64)", le=8192)


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || softmax(logits)), averaged over the batch."""
    uniform = torch.full_like(logits, 1.0 / logits.shape[1])
    return F.kl_div(F.log_softmax(logits, dim=1), uniform, reduction="batchmean")


def contrastive_forget_loss(forget_logits: torch.Tensor, retain_logits: torch.Tensor,
                            temperature: float) -> torch.Tensor:
    """Mean of ``-log_softmax`` over retain samples of the forget/retain logit similarities."""
    sim = forget_logits @ retain_logits.detach().T / temperature
    return -F.log_softmax(sim, dim=1).mean()


@register_method("divergence", config=DivergenceConfig,
                 paper="NeurIPS 2023 unlearning challenge, 1st place (Fanchuan); paper 002",
                 reference="xcadet/deepunlearn: munl/unlearning/kgltop1.py")
def divergence(model: nn.Module, data: UnlearnData, cfg: DivergenceConfig,
               ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """KL towards uniform on D_f, then per epoch a contrastive forget round and CE on D_r."""
    dev = ctx.device
    params = [p for p in model.parameters() if p.requires_grad]
    opt_warm = torch.optim.SGD(params, lr=cfg.warmup_lr, momentum=cfg.momentum)
    opt_forget = torch.optim.SGD(params, lr=cfg.forget_lr, momentum=cfg.momentum)
    retain_lr = cfg.retain_lr * (cfg.batch_size / 64 if cfg.scale_retain_lr else 1.0)
    opt_retain = torch.optim.SGD(params, lr=retain_lr, momentum=cfg.momentum,
                                 weight_decay=cfg.retain_weight_decay)
    n_forget_batches = max(1, math.ceil(len(data.forget) / cfg.forget_batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt_forget, T_max=max(1, cfg.epochs * n_forget_batches), eta_min=cfg.forget_eta_min)

    model.train()
    warm = []
    for x, _ in data.loader("forget", cfg.forget_batch_size, seed=ctx.seed):
        opt_warm.zero_grad(set_to_none=True)
        loss = uniform_kl(model(x.to(dev)))
        loss.backward()
        opt_warm.step()
        warm.append(loss.item())

    for epoch in range(cfg.epochs):
        model.train()
        forget_losses: list[float] = []
        # As in the code: as many steps as the shorter loader (normally the forget one).
        pairs = zip(data.loader("forget", cfg.forget_batch_size, seed=ctx.seed + 1000 + epoch),
                    data.loader("retain", cfg.batch_size, seed=ctx.seed + 2000 + epoch),
                    strict=False)
        for (xf, _), (xr, _) in pairs:
            opt_forget.zero_grad(set_to_none=True)
            zf = model(xf.to(dev))
            with torch.no_grad():
                zr = model(xr.to(dev))
            loss = contrastive_forget_loss(zf, zr, cfg.temperature)
            loss.backward()
            opt_forget.step()
            sched.step()
            forget_losses.append(loss.item())
        retain_loss = ce_epoch(model, data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch),
                               opt_retain, dev)
        stats = {"forget_loss": mean(forget_losses), "retain_loss": retain_loss}
        if epoch == 0:
            stats["warmup_kl"] = mean(warm)
        yield EpochEnd(epoch + 1, stats)
