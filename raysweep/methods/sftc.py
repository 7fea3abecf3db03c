"""SFTC: selective fine-tuning and targeted confusion (paper 004, Perifanis et al. 2024).

Train a copy of the original on D_u = D_r ∪ D_f, each row tagged with a pseudo-label b
(1 = forget): ``L = CE(retain rows) + mean_i KL(target_i,T || student_i,T)``, where the target
is the original model's softmax on retain rows and, on forget rows, the softmax of a *biased
random generator*: logits |N(0, 1)| with the true label's logit raised by U(0.5, 1) until it is
the argmax, so the student keeps the right label but loses confidence. Defaults: Adam lr 9e-4,
T 1, c 0, batch 64, 2 epochs (paper 004's sensitivity study; its grid: 1-4 epochs).

Confusion fraction c (paper 004 and the reference, vperifan/SFTC-Unlearn
``utils/unlearning_alg/sftc_unlearn.py``):

* c = 0: every forget row's generator is biased towards its true label (the default).
* 0 < c < 1: ``max(1, int(c·n))`` of a batch's n forget rows, chosen uniformly, first get a
  label drawn uniformly from all classes (possibly their own), and the generator is biased
  towards that label.
* c = 1: the generator is *not biased at all*: plain |N(0, 1)| logits with no label, "entirely
  random, similar to the Bad-Teaching approach" (paper) and ``dummy_model(len(x), None)`` in
  the reference. ``full_confusion="unbiased"`` (the default) does this;
  ``full_confusion="random_label"`` instead continues the 0 < c < 1 rule to c = 1 (every forget
  row biased towards a uniformly random label), which is what raysweep did before.

The KL is ``kl_div(..., reduction="batchmean")`` over the whole batch (retain and forget rows),
*not* multiplied by T², in the paper's Eq. 2 and in the reference's ``custom_kl_loss`` alike.
The generator is drawn per batch from a generator seeded by the trial seed, so runs are
reproducible; it draws only for the forget rows of a batch (the reference draws a row for every
row of the batch and discards the retain rows' draws), the same distribution.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods import _fields as fields
from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    UnlearnContext,
    UnlearnData,
    register_method,
)
from raysweep.methods._common import mean


class SftcConfig(MethodConfig):
    epochs: int = fields.epochs(
        2, "passes over D_r ∪ D_f (paper 004: 1-4; sensitivity study: 2-3)")
    lr: float = fields.lr(9e-4, "Adam learning rate (paper 004 default: 9e-4)")
    temperature: float = fields.temperature(1.0, "KL temperature T (paper 004: 1)")
    confusion: float = Field(0.0, ge=0, le=1,
                             description="confusion fraction c of forget rows given a random "
                                         "label (paper 004: 0; 1 = an unbiased random "
                                         "generator, Bad-Teaching's random teacher)")
    full_confusion: Literal["unbiased", "random_label"] = Field(
        "unbiased", description="what c = 1 means: unbiased |N(0,1)| logits with no label "
                                "(paper 004 and reference) or every forget row biased towards "
                                "a random label")
    batch_size: int = fields.batch_size(64, "batch size over D_u (paper 004: 64)")


def biased_generator(labels: torch.Tensor, num_classes: int, confusion: float,
                     gen: torch.Generator, full_confusion: str = "unbiased",
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Paper 004's biased random output generator for a batch of forget rows.

    Returns ``(logits, targets)``. Logits start as |N(0, 1)|. At c = 1 with
    ``full_confusion="unbiased"`` they are returned as they are, with ``targets=None``.
    Otherwise, for 0 < c (< 1, or = 1 with ``"random_label"``), ``max(1, int(c·n))`` rows
    chosen uniformly get a label drawn from ``[0, C-1]`` (the reference's count), the rest keep
    their true label, and each row's target logit is raised by U(0.5, 1) steps until it is
    strictly the largest. Runs on the CPU.
    """
    labels = labels.detach().cpu().long()
    n = len(labels)
    if confusion >= 1.0 and full_confusion == "unbiased":
        return torch.randn(n, num_classes, generator=gen).abs(), None
    targets = labels.clone()
    k = min(n, max(1, int(confusion * n))) if confusion > 0 and n else 0
    if k:
        chosen = torch.randperm(n, generator=gen)[:k]
        targets[chosen] = torch.randint(0, num_classes, (k,), generator=gen)
    logits = torch.randn(n, num_classes, generator=gen).abs()
    rows = torch.arange(n)
    while True:
        others = logits.clone()
        others[rows, targets] = float("-inf")
        behind = logits[rows, targets] <= others.max(dim=1).values
        if not bool(behind.any()):
            return logits, targets
        step = 0.5 + 0.5 * torch.rand(int(behind.sum()), generator=gen)
        logits[rows[behind], targets[behind]] += step


@register_method("sftc", config=SftcConfig,
                 paper="Perifanis, Karypidis et al. 2024 (SFTC, EICC; paper 004)",
                 reference="vperifan/SFTC-Unlearn: utils/unlearning_alg/sftc_unlearn.py, "
                            "utils/loss_utils.py custom_kl_loss, utils/unlearning_utils.py "
                            "RandomDistributionGenerator",
                 differences=(
                     "the random generator draws for forget rows only (no effect on the update)",
                 ))
def sftc(model: nn.Module, data: UnlearnData, cfg: SftcConfig,
         ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Fine-tune on D_r; distil the original on D_r and a biased random generator on D_f."""
    xr, yr = data.retain.tensors[0], data.retain.tensors[1]
    xf, yf = data.forget.tensors[0], data.forget.tensors[1]
    is_forget = torch.cat([torch.zeros(len(yr), dtype=torch.bool),
                           torch.ones(len(yf), dtype=torch.bool)])
    unlearn = TensorDataset(torch.cat([xr, xf]), torch.cat([yr, yf]), is_forget)
    teacher = ctx.original
    temp = cfg.temperature
    gen = torch.Generator().manual_seed(ctx.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for epoch in range(cfg.epochs):
        ce_losses, kl_losses = [], []
        model.train()
        for x, y, b in data.loader(unlearn, cfg.batch_size, seed=ctx.seed + epoch):
            x, y, b = x.to(ctx.device), y.to(ctx.device), b.to(ctx.device)
            logits = model(x)
            keep = ~b
            target = torch.empty_like(logits)
            with torch.no_grad():
                if bool(keep.any()):
                    soft = F.softmax(teacher(x[keep]).float() / temp, dim=1)
                    target[keep] = soft.to(target.dtype)
                if bool(b.any()):
                    fake, _ = biased_generator(y[b], logits.shape[1], cfg.confusion, gen,
                                               cfg.full_confusion)
                    target[b] = F.softmax(fake.to(ctx.device) / temp, dim=1).to(target.dtype)
            kl = F.kl_div(F.log_softmax(logits / temp, dim=1), target, reduction="batchmean")
            ce = F.cross_entropy(logits[keep], y[keep]) if bool(keep.any()) else logits.sum() * 0.0
            loss = ce + kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ce_losses.append(ce.item())
            kl_losses.append(kl.item())
        yield EpochEnd(epoch + 1, {"ce_retain": mean(ce_losses), "kl": mean(kl_losses)})
