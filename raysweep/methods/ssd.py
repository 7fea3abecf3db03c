"""Selective Synaptic Dampening (Foster et al. 2023): one-shot, no training.

Importances are the diagonal of the Fisher information, estimated as the mean over mini-batches
of the squared mini-batch gradient of the cross-entropy, with the model in eval mode: once on
D_f (``I_f``) and once on the full training set D = D_r ∪ D_f (``I_D``). Parameters that matter
far more to D_f than to D (``I_f > α·I_D``) are multiplied by ``β = min(1, λ·I_D / I_f)``.

Paper 000 compares SSD with bad-teaching, SCRUB, UNSIR and amnesiac (α 15 ResNet, 25 ViT, λ 1;
MARBERT λ 1.45, α 2–14). We follow the reference code (if-loops/selective-synaptic-dampening,
``ssd.py`` ``ParameterPerturber`` and ``src/forget_*_main.py``) in every detail that changes
the result:

* the batches: the reference's ``DataLoader(forget_train, b)`` and
  ``DataLoader(ConcatDataset((retain, forget)), b)`` do not shuffle, so the importances are
  estimated on D_f and on D_r followed by D_f *in dataset order*, and the last batch of each may
  be short. Mini-batch Fisher estimates depend on which rows share a batch (the squared mean
  gradient of a batch is not the mean of squared per-row gradients): on digits-class, α = 10
  selects 111 parameters with the reference's batches (64 rows, dataset order) and 211 with
  raysweep's former ones (128 rows, shuffled), and only the latter forgets (forget accuracy
  100% vs 0%). In dataset order D_f's own batches are part of the estimate on D, so
  I_f / I_D cannot exceed (much) the number of batches of D over those of D_f, about
  |D| / |D_f|: one class of ten needs α below ~10. ``batch_order="dataset"`` (the default) is
  the reference; ``"shuffled"`` reshuffles each estimate with the trial seed (raysweep's
  behaviour before).
* the batch size: 64, the reference's ``-b`` default, used by every script for both estimates
  (its random-forgetting script alone estimates I_f with batches of 128).
* mean-reduced CE per batch, squared batch gradients summed and divided by the number of
  batches, model in eval mode, BatchNorm running statistics left as they are (they are buffers,
  not parameters). Parameters with ``I_f = 0`` are never selected; a selected parameter with
  ``I_D = 0`` is zeroed (``β = 0``), as in the reference code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from raysweep.methods import _fields as fields
from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    UnlearnContext,
    UnlearnData,
    register_method,
)

__all__ = ["SSDConfig", "ssd", "fisher_diagonal", "dampen"]


class SSDConfig(MethodConfig):
    selection_weighting: float = Field(
        10.0, gt=0, le=1000,
        description="α: dampen parameters with I_f > α·I_D (Foster et al.: 10; paper 000: 15 "
                    "ResNet, 25 ViT, 2-14 MARBERT)")
    dampening_constant: float = Field(
        1.0, gt=0, le=100,
        description="λ: selected parameters are multiplied by min(1, λ·I_D/I_f) (paper 000: 1; "
                    "MARBERT 1.45)")
    batch_size: int = fields.batch_size(
        64, "mini-batch size of the Fisher estimates; the importances depend on it "
            "(reference: 64)")
    batch_order: Literal["dataset", "shuffled"] = Field(
        "dataset", description="rows of each Fisher estimate in dataset order, D_r then D_f for "
                               "I_D (reference), or reshuffled with the trial seed")


def fisher_diagonal(model: nn.Module, loader: DataLoader,
                    device: torch.device | str) -> dict[str, torch.Tensor]:
    """Diagonal Fisher estimate: mean over batches of the squared mini-batch CE gradient.

    The model is put in eval mode for the estimate (dropout off, BatchNorm uses its running
    statistics) and its mode is restored afterwards. Parameters with ``requires_grad=False``
    get zero importance. The model's ``.grad`` fields are left untouched.

    Returns a dict keyed like ``model.named_parameters()``.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    imp = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    was_training = model.training
    model.eval()
    batches = 0
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            for (n, _), g in zip(named, grads):
                if g is not None:
                    imp[n].add_(g.detach().pow(2))
            batches += 1
    finally:
        model.train(was_training)
    if batches:
        for t in imp.values():
            t.div_(batches)
    return imp


@torch.no_grad()
def dampen(model: nn.Module, forget_imp: dict[str, torch.Tensor],
           full_imp: dict[str, torch.Tensor], selection_weighting: float,
           dampening_constant: float) -> tuple[int, int]:
    """Apply the SSD update in place; returns ``(selected, total)`` parameter counts."""
    selected, total = 0, 0
    for name, p in model.named_parameters():
        i_f, i_d = forget_imp[name], full_imp[name]
        mask = i_f > selection_weighting * i_d
        # β = min(1, λ·I_D/I_f); only evaluated where selected, so I_f > 0 there.
        ratio = dampening_constant * i_d / torch.where(mask, i_f, 1.0)
        beta = torch.where(mask, ratio.clamp(max=1.0), torch.ones_like(p))
        p.mul_(beta.to(p.dtype))
        selected += int(mask.sum())
        total += p.numel()
    return selected, total


@register_method("ssd", config=SSDConfig, one_shot=True, full_precision=True,
                 paper="Foster, Schoepf & Brintrup 2023 (Selective Synaptic Dampening); paper 000",
                 reference="if-loops/selective-synaptic-dampening: ssd.py ParameterPerturber "
                            "(calc_importance, modify_weight), src/forget_full_class_main.py")
def ssd(model: nn.Module, data: UnlearnData, cfg: SSDConfig,
        ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Dampen the parameters that are far more important to D_f than to D (one shot)."""
    xf, yf = data.tensors(data.forget)
    xr, yr = data.tensors(data.retain)
    full = TensorDataset(torch.cat([xr, xf]), torch.cat([yr, yf]))   # D_r, then D_f (reference)
    shuffle = cfg.batch_order == "shuffled"
    forget_imp = fisher_diagonal(
        model, data.loader(data.forget, cfg.batch_size, shuffle=shuffle, seed=ctx.seed),
        ctx.device)
    full_imp = fisher_diagonal(
        model, data.loader(full, cfg.batch_size, shuffle=shuffle, seed=ctx.seed), ctx.device)
    selected, total = dampen(model, forget_imp, full_imp, cfg.selection_weighting,
                             cfg.dampening_constant)
    del forget_imp, full_imp
    yield EpochEnd(1, {"selected_fraction": selected / max(1, total), "selected": float(selected)})
