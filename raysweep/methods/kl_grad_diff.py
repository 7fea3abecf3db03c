"""KL-regularised gradient difference: ascend the loss on D_f and keep the next-token
distributions on D_r close to the original's (OpenUnlearning's GradDiff with the KL retain
loss; TOFU's "KL" baseline)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._lm import GENERATE, retain_kl, sequence_nll, unlearn_epochs
from raysweep.methods.grad_diff import GradDiffConfig


class KLGradDiffConfig(GradDiffConfig):
    """Grad-diff's fields; ``alpha`` weighs KL(original || model) on D_r instead of the NLL."""


@register_method("kl-grad-diff", config=KLGradDiffConfig, tasks=GENERATE,
                 paper="Maini et al. 2024 (TOFU, the KL baseline)",
                 reference="locuslab/open-unlearning: src/trainer/unlearn/grad_diff.py "
                           "(retain_loss_type KL)",
                 differences=("the KL is averaged over real tokens of the D_r batch",))
def kl_grad_diff(model: nn.Module, data: UnlearnData, cfg: KLGradDiffConfig,
                 ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Ascend the loss on D_f; keep D_r's next-token distributions at the original's."""
    def step(xf: torch.Tensor, yf: torch.Tensor, xr: torch.Tensor,
             yr: torch.Tensor) -> torch.Tensor:
        forget = -sequence_nll(model, xf, yf, mean_over_tokens=True).mean()
        return cfg.gamma * forget + cfg.alpha * retain_kl(model, ctx.original, xr, yr)

    yield from unlearn_epochs(model, data, cfg, ctx, step)
