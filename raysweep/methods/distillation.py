"""Distillation: the 6th-place NeurIPS 2023 challenge solution (Karypidis, Perifanis,
Nikolaidis, Komodakis, Efraimidis; paper 002, IV-B1), "unlearning by resetting layers".

1. **Reset** the first layer and the classifier head of the model (paper 002, Fig. 3): the
   first layer shapes everything downstream, the head the output distribution. Reset means
   the tensors of a freshly initialised model of the same architecture, i.e. each layer's own
   default initialisation, drawn with a seed different from the original's initial one.
2. **Warm-up** (``warmup_epochs`` = 3): distil the frozen original into the student on the
   *validation* split with ``KL(teacher_T || student_T)`` (SGD lr 9e-4, momentum 0.9, wd 5e-4);
   no labels are used. ``warmup_split="retain"`` keeps validation data out of training.
3. **Fine-tune on D_r** (``epochs`` = 3): ``softCE(teacher_T, student_T) + CE(y) +
   KL(teacher_T || student_T)`` (the paper's "Soft Cross entropy Loss, Cross Entropy loss and
   KL-loss"), SGD lr 1e-3, momentum 0.9, wd 5e-4, cosine over epochs, batch 64, T = 5.

Defaults are the 6th-place code's. As there, the softened terms are *not* multiplied by T^2.
Each warm-up and each retain epoch yields (``warmup_epochs + epochs`` yields in all).

Layers: image models reset their first ``Conv2d`` (ResNet ``conv1``, a ViT's patch embedding;
an image MLP: its first ``Linear``) and their last ``Linear``. Text models are supported with
"first layer" read as the first transformer block: the embedding table is a lookup, not a
feature extractor, and resetting it would discard the vocabulary rather than the input filters
the method targets.
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
from raysweep.methods._challenge import classifier_head, copy_modules, first_layer, new_init
from raysweep.methods._common import mean
from raysweep.models import model_blocks


class DistillationConfig(MethodConfig):
    epochs: int = fields.epochs(3, "fine-tuning epochs on D_r (6th-place code: 3)")
    warmup_epochs: int = Field(3, ge=0, le=200,
                               description="distillation warm-up epochs (code: 3)")
    warmup_split: Literal["val", "retain"] = Field(
        "val", description="data of the warm-up (paper/code: the validation split)")
    temperature: float = fields.temperature(5.0, "distillation temperature (code: 5)")
    warmup_lr: float = fields.lr(9e-4, "warm-up SGD lr (code: 9e-4)")
    lr: float = fields.lr(1e-3, "fine-tuning SGD lr (code: 1e-3)")
    momentum: float = fields.momentum(0.9, "SGD momentum (code: 0.9)")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay (code: 5e-4)")
    batch_size: int = fields.batch_size(64, "batch size (code: 64)", le=8192)


def reset_layer_names(model: nn.Module, is_text: bool) -> list[str]:
    """Names of the submodules that are reset: the first layer and the classifier head."""
    head, _ = classifier_head(model)
    if is_text:
        blocks = model_blocks(model)
        if len(blocks) > 2:  # [embeddings, layer 0, ..., layer n, head]
            by_id = {id(m): n for n, m in model.named_modules()}
            return [by_id[id(blocks[1])], head]
    first, _ = first_layer(model)
    return [first, head]


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher/T) || softmax(student/T)), batch mean, without the T^2 factor."""
    return F.kl_div(F.log_softmax(student / temperature, dim=1),
                    F.softmax(teacher / temperature, dim=1), reduction="batchmean")


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    target = F.softmax(teacher / temperature, dim=1)
    return -(target * F.log_softmax(student / temperature, dim=1)).sum(1).mean()


@register_method("distillation", config=DistillationConfig,
                 paper="NeurIPS 2023 unlearning challenge, 6th place (Karypidis et al.); "
                       "paper 002",
                 reference="xcadet/deepunlearn: munl/unlearning/kgltop6.py",
                 differences=(
                     "conv1 and fc are reset by copying a fresh model's layers (a seeded draw of "
                     "the same default init; the port calls reset_parameters() on the global RNG)",
                 ))
def distillation(model: nn.Module, data: UnlearnData, cfg: DistillationConfig,
                 ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Reset the first layer and the head, then distil the original into the model on D_r."""
    dev, teacher, t = ctx.device, ctx.original, cfg.temperature
    names = reset_layer_names(model, ctx.is_text)
    fresh = new_init(ctx)
    copy_modules(model, fresh, names)
    del fresh
    params = [p for p in model.parameters() if p.requires_grad]

    warm_split = cfg.warmup_split if len(getattr(data, cfg.warmup_split)) else "retain"
    opt = torch.optim.SGD(params, lr=cfg.warmup_lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    done = 0
    for epoch in range(cfg.warmup_epochs):
        model.train()
        losses = []
        for x, _ in data.loader(warm_split, cfg.batch_size, seed=ctx.seed + 100 + epoch):
            x = x.to(dev)
            with torch.no_grad():
                target = teacher(x)
            opt.zero_grad(set_to_none=True)
            loss = distill_kl(model(x), target, t)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        done += 1
        yield EpochEnd(done, {"warmup_kl": mean(losses)})

    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        for x, y in data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch):
            x, y = x.to(dev), y.to(dev)
            with torch.no_grad():
                target = teacher(x)
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = (soft_cross_entropy(out, target, t) + F.cross_entropy(out, y)
                    + distill_kl(out, target, t))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        done += 1
        yield EpochEnd(done, {"loss": mean(losses)})
