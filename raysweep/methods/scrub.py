"""SCRUB (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning").

Teacher = the original model (frozen), student = the model being edited. Each epoch
e = 1..epochs: if e <= msteps, one *max-step* pass over D_f that maximises
KL(teacher_T ‖ student_T); then one *min-step* pass over D_r that minimises
γ·CE + α·KL(teacher_T ‖ student_T). Both KL terms are per-sample KL averaged over the batch
and scaled by T² (the reference ``DistillKL``). Compared in papers 000 and 004.

Reference: meghdadk/SCRUB, ``large_scale_unlearning.ipynb`` (the CIFAR runs), with
``thirdparty/repdistiller/helper/loops.py::train_distill`` and ``helper/util.py::
adjust_learning_rate``.

* Step learning-rate decay: epoch e runs at ``lr · rate^k``, k = the number of milestones
  in ``lr_decay_epochs`` strictly below e (reference: milestones 3, 5, 9, rate 0.1, so epochs
  4-5 run at lr/10, 6-9 at lr/100, 10+ at lr/1000). It never fires within the paper's 3
  epochs, but it does in the 4-5 epochs paper 000 and the search space use (fmnist-class-small
  SmallCNN, 10 epochs: retain/test accuracy 95.2/79.8% with it, 98.5/80.6% without: the later
  min-steps barely repair what the max-steps did). ``lr_decay_rate=1`` switches it off.
* Batch sizes: the notebook declares ``sgda_batch_size = 128`` (D_r) and ``del_batch_size = 32``
  (D_f) but never passes them on: its loaders were built earlier with 256 (D_r) and 512 (D_f),
  and ``small_scale_unlearning.ipynb`` runs 32 (D_r) and 64 (D_f). We default to the declared
  128 / 32, the values the authors give as SCRUB's hyper-parameters; the others are one
  ``batch_size`` / ``forget_batch_size`` away.
* Off-by-one: the notebooks loop ``for epoch in range(1, epochs + 1): if epoch <= msteps``
  (exactly ``msteps`` max-step passes), whereas the later ``scrub.py`` in the same repository
  loops ``for epoch in range(epochs): if epoch <= msteps`` and so runs ``msteps + 1`` max-step
  passes. We follow the notebooks and the paper's definition ("msteps" is the number of
  max-steps): max-steps in the first ``msteps`` epochs only.
* The reference's extra ``β·KD`` term is zero for the plain KD distiller the paper uses, so it
  is left out.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from raysweep.methods import _fields as fields
from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    UnlearnContext,
    UnlearnData,
    register_method,
)
from raysweep.methods._common import kl_to_target, mean
from raysweep.training import make_optimizer

__all__ = ["ScrubConfig", "scrub", "epoch_lr"]


class ScrubConfig(MethodConfig):
    epochs: int = fields.epochs(3, "epochs, each a min-step pass (paper: 3; paper 000: 4)")
    msteps: int = Field(2, ge=0, le=200,
                        description="the first msteps epochs also run a max-step pass (paper: 2)")
    lr: float = fields.lr(5e-4, "learning rate (paper: 5e-4; paper 000: 1e-4)")
    optimizer: fields.Optimizer = fields.optimizer("sgd", "optimizer (paper: sgd)")
    momentum: float = fields.momentum(0.9, "SGD momentum (paper: 0.9)")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay (paper: 5e-4)")
    gamma: float = Field(0.99, ge=0, le=100,
                         description="weight γ of CE in the min-step (paper: 0.99)")
    alpha: float = Field(0.001, ge=0, le=100,
                         description="weight α of KL in the min-step (paper: 0.001)")
    temperature: float = fields.temperature(4.0, "distillation temperature T (paper: 4)")
    batch_size: int = fields.batch_size(128, "retain (min-step) batch size (paper: 128)")
    forget_batch_size: int = fields.batch_size(32, "forget (max-step) batch size (paper: 32)")
    lr_decay_epochs: tuple[int, ...] = Field(
        (3, 5, 9), max_length=32,
        description="milestones: epoch e runs at lr·rate^(milestones < e) (reference: 3, 5, 9)")
    lr_decay_rate: float = Field(0.1, gt=0, le=1,
                                 description="factor per milestone passed (reference: 0.1; "
                                             "1 = no decay)")

    @field_validator("lr_decay_epochs")
    @classmethod
    def _milestones_positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(m < 1 for m in v):
            raise ValueError(f"milestones are epochs counted from 1, got {list(v)}")
        return v


def epoch_lr(cfg: ScrubConfig, epoch: int) -> float:
    """The learning rate of 1-based ``epoch``: ``lr · rate^k``, k = milestones below ``epoch``."""
    passed = sum(1 for m in cfg.lr_decay_epochs if epoch > m)
    return cfg.lr * cfg.lr_decay_rate ** passed


def _teacher_probs(teacher: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        return F.softmax(teacher(x).float() / temperature, dim=1)


@register_method("scrub", config=ScrubConfig,
                 paper="Kurmanji et al. 2023 (SCRUB, NeurIPS); papers 000, 004",
                 reference="meghdadk/SCRUB: large_scale_unlearning.ipynb, "
                            "thirdparty/repdistiller/helper/loops.py train_distill, helper/util.py"
                            " adjust_learning_rate, distiller_zoo/KD.py DistillKL",
                 differences=(
                     "max-steps in the first msteps epochs (the notebooks and the paper), not "
                     "msteps + 1 as the later scrub.py's 0-based loop",
                 ))
def scrub(model: nn.Module, data: UnlearnData, cfg: ScrubConfig,
          ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Alternate max-steps away from the teacher on D_f and min-steps towards it on D_r."""
    teacher = ctx.original
    teacher.eval()
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    temp = cfg.temperature
    for epoch in range(1, cfg.epochs + 1):
        for group in opt.param_groups:
            group["lr"] = epoch_lr(cfg, epoch)
        model.train()
        max_losses: list[float] = []
        if epoch <= cfg.msteps:
            forget_loader = data.loader("forget", cfg.forget_batch_size,
                                        seed=ctx.seed + 7 * epoch + 1)
            for x, _ in forget_loader:
                x = x.to(ctx.device)
                target = _teacher_probs(teacher, x, temp)
                opt.zero_grad(set_to_none=True)
                loss = -kl_to_target(model(x), target, temp)
                loss.backward()
                opt.step()
                max_losses.append(-loss.item())
        min_losses: list[float] = []
        for x, y in data.loader("retain", cfg.batch_size, seed=ctx.seed + 7 * epoch):
            x, y = x.to(ctx.device), y.to(ctx.device)
            target = _teacher_probs(teacher, x, temp)
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = (cfg.gamma * F.cross_entropy(logits, y)
                    + cfg.alpha * kl_to_target(logits, target, temp))
            loss.backward()
            opt.step()
            min_losses.append(loss.item())
        metrics = {"loss": mean(min_losses), "lr": epoch_lr(cfg, epoch)}
        if max_losses:
            metrics["forget_kl"] = mean(max_losses)
        yield EpochEnd(epoch, metrics)
