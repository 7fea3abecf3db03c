"""SimNPO (Fan et al. 2024): NPO without the reference model, on the length-normalised
likelihood with a margin delta; plus the retain NLL (OpenUnlearning's SimNPO)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._lm import GENERATE, LMMethodConfig, sequence_nll, unlearn_epochs


class SimNPOConfig(LMMethodConfig):
    beta: float = Field(4.5, gt=0, le=100, description="inverse temperature (TOFU config: "
                        "4.5)")
    delta: float = Field(0.0, ge=0, le=100, description="margin on the mean token NLL "
                         "(TOFU config: 0)")
    gamma: float = Field(0.125, ge=0, le=100, description="weight of the forget term (TOFU "
                         "config: 0.125)")
    alpha: float = Field(1.0, ge=0, le=100, description="weight of the retain NLL")


@register_method("simnpo", config=SimNPOConfig, tasks=GENERATE,
                 paper="Fan et al. 2024, Simplicity Prevails: Rethinking Negative Preference "
                       "Optimization for LLM Unlearning",
                 reference="locuslab/open-unlearning: src/trainer/unlearn/simnpo.py")
def simnpo(model: nn.Module, data: UnlearnData, cfg: SimNPOConfig,
           ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """-(2/beta) log sigmoid(beta (mean token NLL - delta)) on D_f, + alpha x NLL on D_r."""
    def step(xf: torch.Tensor, yf: torch.Tensor, xr: torch.Tensor,
             yr: torch.Tensor) -> torch.Tensor:
        nll = sequence_nll(model, xf, yf, mean_over_tokens=True) - cfg.delta
        forget = -F.logsigmoid(cfg.beta * nll).mean() * 2 / cfg.beta
        retain = sequence_nll(model, xr, yr, mean_over_tokens=True).mean()
        return cfg.gamma * forget + cfg.alpha * retain

    yield from unlearn_epochs(model, data, cfg, ctx, step)
