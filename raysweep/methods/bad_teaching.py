"""Bad-Teaching / incompetent teacher (Chundawat et al. 2023, "Can bad teaching induce
forgetting?").

The student starts as the original model. Each row of the unlearning set (D_f plus a seeded
random 30% of D_r) gets a target distribution: the softmax (at temperature T) of a randomly
initialised model of the same architecture (the incompetent teacher, ``ctx.fresh_model``) on
forget rows, of the original model on retain rows. The student minimises
KL(target_T ‖ student_T).

Compared in papers 000 and 004. Where we follow the paper rather than the reference code
(vikram2000b/bad-teaching-unlearning, copied into the SSD repo): the KL is the per-sample KL
averaged over the batch (``batchmean``) times T² (Hinton et al.), whereas the reference's
``F.kl_div`` default averages over batch *and* classes and has no T² factor: raysweep's loss is
the reference's times C·T² (C the number of classes; T = 1 by default, so C). It is the same
optimum; with Adam the scale hardly matters (only through Adam's eps), with SGD it multiplies
the effective lr by C·T² (``tests/methods/test_reference_equivalence.py`` asserts both).
The student trains in train mode; the incompetent teacher gets a seed different from the
workload seed so it is not the original model's own initialisation.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    frozen_copy,
    register_method,
)
from raysweep.methods._common import kl_to_target, mean, random_subset
from raysweep.training import make_optimizer

__all__ = ["BadTeachingConfig", "bad_teaching"]

# Offset of the incompetent teacher's seed from the workload seed (any fixed value works).
_TEACHER_SEED_OFFSET = 7919


class BadTeachingConfig(MethodConfig):
    epochs: int = fields.epochs(1, "passes over the unlearning set (paper: 1)", le=100)
    lr: float = fields.lr(1e-4, "learning rate (Chundawat et al.: Adam 1e-4; paper 000: 0.1 "
                                "ResNet, 2e-4 ViT, 1e-4/2e-5 MARBERT)")
    optimizer: fields.Optimizer = fields.optimizer("adam", "optimizer (paper: adam)")
    momentum: float = fields.momentum(0.9, "SGD momentum (ignored by adam)")
    weight_decay: float = fields.weight_decay(0.0, "weight decay (paper: 0)")
    temperature: float = fields.temperature(1.0, "KL temperature T (paper: 1)")
    retain_fraction: float = Field(0.3, gt=0, le=1,
                                   description="share of D_r mixed with D_f (paper: 0.3)")
    batch_size: int = fields.batch_size(256, "batch size (reference code: 256)")


@register_method("bad-teaching", config=BadTeachingConfig,
                 paper="Chundawat et al. 2023 (incompetent teacher); papers 000, 004",
                 reference="vikram2000b/bad-teaching-unlearning: unlearn.py UnlearnerLoss, "
                            "blindspot_unlearner (30% retain subset and Adam 1e-4 from "
                            "if-loops/selective-synaptic-dampening blindspot)",
                 differences=(
                     "KL with reduction batchmean x T^2, i.e. the reference's loss (F.kl_div mean)"
                     " scaled by C*T^2",
                 ))
def bad_teaching(model: nn.Module, data: UnlearnData, cfg: BadTeachingConfig,
                 ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Distil from the original on retain rows and from a random model on forget rows."""
    bad_teacher = frozen_copy(ctx.fresh_model(pretrained=False,
                                              seed=ctx.seed + _TEACHER_SEED_OFFSET))
    good_teacher = ctx.original
    good_teacher.eval()
    xf, _ = data.tensors(data.forget)
    xr, _ = data.tensors(random_subset(data.retain, cfg.retain_fraction, seed=ctx.seed))
    is_forget = torch.cat([torch.ones(len(xf), dtype=torch.bool),
                           torch.zeros(len(xr), dtype=torch.bool)])
    unlearn_set = TensorDataset(torch.cat([xf, xr]), is_forget)
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    temp = cfg.temperature
    for epoch in range(cfg.epochs):
        losses = []
        model.train()
        for x, b in data.loader(unlearn_set, cfg.batch_size, seed=ctx.seed + epoch):
            x, b = x.to(ctx.device), b.to(ctx.device)
            with torch.no_grad():
                target = torch.empty(len(x), data.num_classes, device=ctx.device)
                if b.any():
                    target[b] = F.softmax(bad_teacher(x[b]).float() / temp, dim=1)
                if (~b).any():
                    target[~b] = F.softmax(good_teacher(x[~b]).float() / temp, dim=1)
            opt.zero_grad(set_to_none=True)
            loss = kl_to_target(model(x), target, temp)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        yield EpochEnd(epoch + 1, {"loss": mean(losses)})
    del bad_teacher
