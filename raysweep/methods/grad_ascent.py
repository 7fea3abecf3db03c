"""Gradient ascent on D_f: maximise the next-token loss of the forget passages (the simplest
language-model unlearning baseline; OpenUnlearning's GradAscent)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._lm import GENERATE, LMMethodConfig, sequence_nll, unlearn_epochs


class GradAscentConfig(LMMethodConfig):
    pass


@register_method("grad-ascent", config=GradAscentConfig, tasks=GENERATE,
                 paper="Jang et al. 2023; baseline of Maini et al. 2024 (TOFU) and Zhang et "
                       "al. 2024 (NPO)",
                 reference="locuslab/open-unlearning: src/trainer/unlearn/grad_ascent.py",
                 differences=("the loss is the mean of per-passage mean token NLLs (the "
                              "reference averages over the batch's tokens)",))
def grad_ascent(model: nn.Module, data: UnlearnData, cfg: GradAscentConfig,
                ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Ascend the next-token loss on D_f."""
    def step(xf: torch.Tensor, yf: torch.Tensor, xr: torch.Tensor,
             yr: torch.Tensor) -> torch.Tensor:
        return -sequence_nll(model, xf, yf, mean_over_tokens=True).mean()

    yield from unlearn_epochs(model, data, cfg, ctx, step)
