"""SalUn: saliency-based unlearning (Fan et al., ICLR 2024), random-label variant.

1. Saliency: the gradient of the forget loss CE(D_f), summed over all forget rows (model in
   eval mode); keep the ``saliency_fraction`` of weights with the largest |gradient|,
   ranked globally over every parameter tensor (SalUn's default mask ratio: 0.5).
2. Unlearn (``epochs`` epochs, SGD): train with CE on D_f under random labels and on D_r under
   its true labels, letting only the salient weights move: gradients (weight decay included)
   are multiplied by the mask before each step, so the other weights keep their values.

Reference: OPTML-Group/Unlearn-Saliency, ``Classification/generate_mask.py`` and
``Classification/unlearn/RL.py``. Followed by default:

* random labels are **redrawn every epoch** (``relabel="per_epoch"``): the reference draws them
  per forget batch on CIFAR-10/SVHN and per epoch on CIFAR-100/TinyImageNet; ``"once"`` keeps
  one draw for the whole run (raysweep's behaviour before).
* each epoch is **a pass over D_f, then a pass over D_r** (``schedule="forget_then_retain"``),
  in separate batches, as the reference does on CIFAR-10 and SVHN (the data sets of the paper's
  defaults, lr 0.013, 10 epochs); ``"mixed"`` is its CIFAR-100/TinyImageNet path, one shuffled
  pool of D_f ∪ D_r (raysweep's behaviour before).
* weight decay: the reference masks the loss gradient, lets SGD add the decay, then restores
  every non-salient weight to its original value and clears its momentum; adding the decay to
  the gradient before masking, as here, gives the same updates.
* the mask keeps the top ``int(fraction · #weights)`` weights (the reference's rank threshold).

Where we depart from the reference code: (a) by default a forget row's random label is drawn
among the classes it must not keep (not its own label; for class forgetting, none of the
forget classes; ``label_pool="other"``), whereas the reference draws from all classes
(``label_pool="all"``) and so re-teaches the true label 1/C of the time; (b) the saliency
gradient sums per-row losses, whereas the reference sums per-batch means (the same up to a
factor when the batches are equal, as when D_f fits in one batch of 256).
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
from raysweep.training import make_optimizer


class SalunConfig(MethodConfig):
    saliency_fraction: float = Field(0.5, gt=0, le=1,
                                     description="fraction of weights (largest |grad of forget "
                                                 "loss|) allowed to change (SalUn: 0.5)")
    epochs: int = fields.epochs(10, "passes over D_f ∪ D_r (SalUn: 10)")
    lr: float = fields.lr(0.013, "learning rate (SalUn RL, CIFAR-10: 0.013)")
    optimizer: fields.Optimizer = fields.optimizer("sgd", "optimizer (SalUn: SGD)")
    momentum: float = fields.momentum(0.9, "SGD momentum (SalUn: 0.9)")
    weight_decay: float = fields.weight_decay(
        5e-4, "weight decay, masked like the gradient (SalUn: 5e-4)")
    batch_size: int = fields.batch_size(256, "batch size (SalUn: 256)")
    schedule: Literal["forget_then_retain", "mixed"] = Field(
        "forget_then_retain", description="each epoch: D_f then D_r (reference, CIFAR-10/SVHN) "
                                          "or one shuffled D_f ∪ D_r pool (CIFAR-100)")
    relabel: Literal["per_epoch", "once"] = Field(
        "per_epoch", description="draw the forget rows' random labels anew every epoch "
                                 "(reference) or once")
    label_pool: Literal["other", "all"] = Field(
        "other", description="random labels among the classes a row must not keep (raysweep) "
                             "or among all classes (reference)")


def saliency_mask(model: nn.Module, forget: TensorDataset, fraction: float, batch_size: int,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """``name -> bool mask`` of the globally top ``int(fraction · n)`` weights by |∇ CE(D_f)|."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for x, y in torch.utils.data.DataLoader(forget, batch_size=batch_size, shuffle=False):
            # Summed per-row loss: the accumulated gradient is that of CE over all of D_f,
            # whatever the batch size (the reference sums per-batch means).
            loss = F.cross_entropy(model(x.to(device)), y.to(device), reduction="sum")
            grads_b = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for n, g in zip(params, grads_b):
                if g is not None:
                    grads[n] += g.detach()
    finally:
        model.train(was_training)
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    k = max(1, int(fraction * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, k, sorted=False).indices] = True
    masks, start = {}, 0
    for n, g in grads.items():
        masks[n] = chosen[start:start + g.numel()].view_as(g)
        start += g.numel()
    return masks


def random_wrong_labels(y: torch.Tensor, num_classes: int, forbidden: tuple[int, ...],
                        gen: torch.Generator) -> torch.Tensor:
    """A uniformly random label per row among the classes it must not keep."""
    out = torch.empty_like(y)
    for i, label in enumerate(y.tolist()):
        banned = set(forbidden) | {label}
        allowed = [c for c in range(num_classes) if c not in banned] or [
            c for c in range(num_classes) if c != label]
        out[i] = allowed[int(torch.randint(len(allowed), (1,), generator=gen))]
    return out


def random_labels(y: torch.Tensor, num_classes: int, forbidden: tuple[int, ...], pool: str,
                  gen: torch.Generator) -> torch.Tensor:
    """Random labels for forget rows: uniform over all classes (``pool="all"``, the reference)
    or over the classes each row must not keep (``"other"``)."""
    if pool == "all":
        return torch.randint(num_classes, (len(y),), generator=gen)
    return random_wrong_labels(y, num_classes, forbidden, gen)


@register_method("salun", config=SalunConfig, paper="Fan et al. 2024 (SalUn, ICLR)",
                 full_precision=True,
                 reference="OPTML-Group/Unlearn-Saliency: Classification/generate_mask.py, "
                            "Classification/unlearn/RL.py",
                 differences=(
                     "random labels are drawn among the classes a row must not keep, never the "
                     "forgotten class itself (the reference draws from all classes)",
                 ))
def salun(model: nn.Module, data: UnlearnData, cfg: SalunConfig,
          ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Random-label D_f plus D_r training that only moves weights salient to the forget loss."""
    masks = saliency_mask(model, data.forget, cfg.saliency_fraction, cfg.batch_size, ctx.device)
    gen = torch.Generator().manual_seed(ctx.seed)
    xf, yf = data.forget.tensors[0], data.forget.tensors[1]
    xr, yr = data.retain.tensors[0], data.retain.tensors[1]
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = make_optimizer(params.values(), cfg.optimizer, cfg.lr, cfg.momentum, 0.0)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = x.to(ctx.device), y.to(ctx.device)
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with torch.no_grad():
            for n, p in params.items():
                if p.grad is None:
                    continue
                if cfg.weight_decay:
                    p.grad.add_(p, alpha=cfg.weight_decay)
                p.grad.mul_(masks[n])
        opt.step()
        return loss.item()

    relabelled = None
    for epoch in range(cfg.epochs):
        if relabelled is None or cfg.relabel == "per_epoch":
            relabelled = random_labels(yf, data.num_classes, data.forget_classes, cfg.label_pool,
                                       gen)
        forget = TensorDataset(xf, relabelled)
        losses, forget_losses = [], []
        model.train()
        if cfg.schedule == "mixed":
            pool = TensorDataset(torch.cat([xf, xr]), torch.cat([relabelled, yr]))
            for x, y in data.loader(pool, cfg.batch_size, seed=ctx.seed + epoch):
                losses.append(step(x, y))
            yield EpochEnd(epoch + 1, {"loss": mean(losses)})
            continue
        for x, y in data.loader(forget, cfg.batch_size, seed=ctx.seed + 7919 + epoch):
            forget_losses.append(step(x, y))
        for x, y in data.loader(data.retain, cfg.batch_size, seed=ctx.seed + epoch):
            losses.append(step(x, y))
        yield EpochEnd(epoch + 1, {"loss": mean(losses), "forget_loss": mean(forget_losses)})
