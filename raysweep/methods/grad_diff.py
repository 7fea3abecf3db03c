"""Gradient difference: ascend the loss on D_f while descending it on D_r (OpenUnlearning's
GradDiff with the NLL retain loss)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from pydantic import Field
from torch import nn

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._lm import GENERATE, LMMethodConfig, sequence_nll, unlearn_epochs


class GradDiffConfig(LMMethodConfig):
    gamma: float = Field(1.0, ge=0, le=100, description="weight of the forget term "
                         "(OpenUnlearning: 1)")
    alpha: float = Field(1.0, ge=0, le=100, description="weight of the retain NLL "
                         "(OpenUnlearning: 1)")


@register_method("grad-diff", config=GradDiffConfig, tasks=GENERATE,
                 paper="Liu et al. 2022; Maini et al. 2024 (TOFU)",
                 reference="locuslab/open-unlearning: src/trainer/unlearn/grad_diff.py "
                           "(retain_loss_type NLL)",
                 differences=("losses are means of per-passage mean token NLLs",))
def grad_diff(model: nn.Module, data: UnlearnData, cfg: GradDiffConfig,
              ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Ascend the loss on D_f, descend it on D_r."""
    def step(xf: torch.Tensor, yf: torch.Tensor, xr: torch.Tensor,
             yr: torch.Tensor) -> torch.Tensor:
        forget = -sequence_nll(model, xf, yf, mean_over_tokens=True).mean()
        retain = sequence_nll(model, xr, yr, mean_over_tokens=True).mean()
        return cfg.gamma * forget + cfg.alpha * retain

    yield from unlearn_epochs(model, data, cfg, ctx, step)
