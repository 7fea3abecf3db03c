"""NPO, negative preference optimisation (Zhang et al. 2024): D_f passages are treated as
dispreferred answers relative to the original model, which bounds the ascent that makes
gradient ascent collapse; plus the retain NLL (NPO+RT, OpenUnlearning's NPO)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._lm import GENERATE, LMMethodConfig, sequence_nll, unlearn_epochs


class NPOConfig(LMMethodConfig):
    beta: float = Field(0.1, gt=0, le=100, description="inverse temperature (paper: 0.1)")
    gamma: float = Field(1.0, ge=0, le=100, description="weight of the NPO forget term")
    alpha: float = Field(1.0, ge=0, le=100, description="weight of the retain NLL (0: plain "
                         "NPO without the retain term)")


@register_method("npo", config=NPOConfig, tasks=GENERATE,
                 paper="Zhang et al. 2024, Negative Preference Optimization",
                 reference="locuslab/open-unlearning: src/trainer/unlearn/npo.py")
def npo(model: nn.Module, data: UnlearnData, cfg: NPOConfig,
        ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """-(2/beta) log sigmoid(beta (NLL_model - NLL_original)) on D_f, + alpha x NLL on D_r."""
    def step(xf: torch.Tensor, yf: torch.Tensor, xr: torch.Tensor,
             yr: torch.Tensor) -> torch.Tensor:
        current = sequence_nll(model, xf, yf)
        with torch.no_grad():
            reference = sequence_nll(ctx.original, xf, yf)
        forget = -F.logsigmoid(cfg.beta * (current - reference)).mean() * 2 / cfg.beta
        retain = sequence_nll(model, xr, yr, mean_over_tokens=True).mean()
        return cfg.gamma * forget + cfg.alpha * retain

    yield from unlearn_epochs(model, data, cfg, ctx, step)
