"""Pruning: the 4th-place NeurIPS 2023 challenge solution (Oleszko; paper 002, IV-B4).

1. **Prune**: global L1-unstructured pruning of the ``Conv2d`` and ``Linear`` layers (weights
   and biases ranked together, as ``torch.nn.utils.prune.global_unstructured`` in the 4th-place
   code): the ``amount`` (99%) smallest ``|w|`` are set to zero, the largest 1% kept.
2. **Re-initialise** the pruned *weights* (not biases) at random, each layer with
   ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (the code's rule; fan_in = in-channels x kernel area).
   The pruned biases stay zero.
3. **Fine-tune** on D_r with ``CE + MSE(H(student), H(original))``, H the per-sample entropy of
   the softmax, the original model frozen as reference (the paper's "Custom Loss (MSE on logits
   entropy)"). The code's CE carries class weights ``count**-0.1`` over the retain labels
   (``class_weight_power``; 0 turns them off). SGD lr 5e-4, momentum 0.9, wd 5e-4, batch 64,
   3.2 epochs counted in steps, then a float16 round trip of the weights and of the
   floating-point buffers such as BatchNorm statistics (the code's final "quantize" step,
   ``net.to(half).to(float)``; ``quantize_fp16``).

``epochs`` may be fractional: every full pass over D_r yields, and a final partial pass yields
once more. Differences from the code as ported in xcadet/deepunlearn (``kgltop4.py``; tested in
``tests/methods/test_reference_equivalence.py``): exactly ``int(epochs x steps per epoch)``
optimizer steps are taken, where the port's ``num_iters > max_iters`` check takes one more;
a class absent from D_r (class forgetting) gets CE weight 1, which is inert, where the port's
weight vector covers only the classes present (and so no longer lines up with the labels).

Text models are supported: the pruning is defined on Linear layers too, and a text classifier's
Linear layers are its encoder's projections plus the head (embeddings, LayerNorm and BatchNorm
are never pruned, as in the code).
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


class PruningConfig(MethodConfig):
    epochs: float = Field(3.2, gt=0, le=200,
                          description="fine-tuning epochs, may be fractional (code: 3.2)")
    amount: float = Field(0.99, ge=0, lt=1,
                          description="global fraction of Conv/Linear params pruned (paper: 0.99)")
    reinit: bool = Field(True,
                         description="re-initialise the pruned weights at random (paper: yes)")
    entropy_weight: float = Field(1.0, ge=0, le=100,
                                  description="weight of the entropy-MSE term (code: 1)")
    class_weight_power: float = Field(0.1, ge=0, le=2,
                                      description="CE class weights count**-power (code: 0.1)")
    quantize_fp16: bool = Field(True,
                                description="round the final weights through float16 (code: yes)")
    lr: float = fields.lr(5e-4, "SGD learning rate (code: 5e-4)")
    momentum: float = fields.momentum(0.9, "SGD momentum (code: 0.9)")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay (code: 5e-4)")
    batch_size: int = fields.batch_size(64, "retain batch size (code: 64)", le=8192)


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, "weight"|"bias")`` for every Conv2d and Linear layer."""
    out: list[tuple[nn.Module, str]] = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            out.append((m, "weight"))
            if m.bias is not None:
                out.append((m, "bias"))
    return out


@torch.no_grad()
def prune_and_reinit(model: nn.Module, amount: float, *, reinit: bool = True,
                     gen: torch.Generator | None = None) -> float:
    """Steps 1-2 in place; returns the fraction of prunable parameters that were pruned.

    Exactly ``n - round((1 - amount) * n)`` parameters are pruned (ties broken by ``topk``).
    """
    tensors = [getattr(m, attr) for m, attr in prunable(model)]
    flat = torch.cat([t.detach().abs().flatten().float().cpu() for t in tensors])
    n_keep = round((1.0 - amount) * flat.numel())
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    if n_keep > 0:
        keep[torch.topk(flat, n_keep).indices] = True
    gen = gen or torch.Generator().manual_seed(0)
    offset = 0
    for (_, attr), t in zip(prunable(model), tensors, strict=True):
        k = keep[offset: offset + t.numel()].view(t.shape).to(t.device)
        offset += t.numel()
        t.mul_(k.to(t.dtype))
        if reinit and attr == "weight":
            fan_in = t.shape[1] * (t[0, 0].numel() if t.dim() > 2 else 1)
            bound = 1.0 / math.sqrt(fan_in)
            rand = (torch.rand(t.shape, generator=gen) * 2 - 1) * bound
            t.copy_(torch.where(k, t, rand.to(t.device, t.dtype)))
    return 1.0 - n_keep / max(1, flat.numel())


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy of softmax(logits)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def retain_class_weights(data: UnlearnData, power: float) -> torch.Tensor | None:
    if power == 0:
        return None
    counts = torch.bincount(data.retain.tensors[1], minlength=data.num_classes).float()
    # Classes absent from D_r (class forgetting) never appear as targets; weight 1 is inert.
    return torch.where(counts > 0, counts.clamp_min(1) ** -power, torch.ones_like(counts))


@register_method("pruning", config=PruningConfig,
                 paper="NeurIPS 2023 unlearning challenge, 4th place (Oleszko); paper 002",
                 reference="xcadet/deepunlearn: munl/unlearning/kgltop4.py",
                 differences=(
                     "exactly int(epochs x steps per epoch) steps (the port's num_iters > "
                     "max_iters check takes one more)",
                 ))
def pruning(model: nn.Module, data: UnlearnData, cfg: PruningConfig,
            ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Global L1-prune 99% of Conv/Linear parameters, re-init, fine-tune with CE + entropy MSE."""
    pruned = prune_and_reinit(model, cfg.amount, reinit=cfg.reinit,
                              gen=torch.Generator().manual_seed(ctx.seed))
    weights = retain_class_weights(data, cfg.class_weight_power)
    weights = None if weights is None else weights.to(ctx.device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    teacher = ctx.original
    steps_per_epoch = max(1, math.ceil(len(data.retain) / cfg.batch_size))
    max_steps = max(1, int(steps_per_epoch * cfg.epochs))
    step, epoch = 0, 0
    while step < max_steps:
        model.train()
        ce_losses, ent_losses = [], []
        for x, y in data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch):
            x, y = x.to(ctx.device), y.to(ctx.device)
            with torch.no_grad():
                target_h = entropy(teacher(x))
            opt.zero_grad(set_to_none=True)
            out = model(x)
            ce = F.cross_entropy(out, y, weight=weights)
            ent = F.mse_loss(entropy(out), target_h)
            (ce + cfg.entropy_weight * ent).backward()
            opt.step()
            ce_losses.append(ce.item())
            ent_losses.append(ent.item())
            step += 1
            if step >= max_steps:
                break
        epoch += 1
        if step >= max_steps and cfg.quantize_fp16:
            with torch.no_grad():
                # Parameters and floating-point buffers (BatchNorm statistics), as the code's
                # ``net.to(torch.half).to(torch.float)`` rounds both.
                for t in (*model.parameters(), *model.buffers()):
                    if t.is_floating_point():
                        t.copy_(t.to(torch.float16).to(t.dtype))
        stats = {"ce": mean(ce_losses), "entropy_mse": mean(ent_losses)}
        if epoch == 1:
            stats["pruned_fraction"] = pruned
        yield EpochEnd(epoch, stats)
