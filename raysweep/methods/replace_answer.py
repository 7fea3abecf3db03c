"""Replace the answer: fine-tune the model so that each D_f prompt (its first ``prefix``
tokens, the verbatim test's prompt) is followed by another passage's text instead of its own,
beside the retain NLL. Paper 001 makes its instruction-tuned LLM forget by training it to give
other answers to the sentences it learned; this is that idea on passages (and the "IdkDPO /
alternate answer" family of OpenUnlearning)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._lm import GENERATE, LMMethodConfig, sequence_nll, unlearn_epochs
from raysweep.models.lm import IGNORE_INDEX


class ReplaceAnswerConfig(LMMethodConfig):
    alpha: float = Field(1.0, ge=0, le=100, description="weight of the retain NLL")
    prefix: int | None = Field(None, ge=1, le=4096, description="prompt tokens kept from each "
                               "D_f passage (default: the workload's verbatim prefix)")


def replaced(forget: TensorDataset, retain: TensorDataset, prefix: int,
             seed: int) -> TensorDataset:
    """D_f passages with everything after the first ``prefix`` tokens taken from a random D_r
    passage (its tokens after its own prefix); only the replaced tokens are targets."""
    xf, _ = forget.tensors
    xr, yr = retain.tensors
    g = torch.Generator().manual_seed(seed)
    donors = torch.randint(0, len(xr), (len(xf),), generator=g)
    x = xf.clone()
    x[:, prefix:] = xr[donors, prefix:]
    y = torch.full_like(x, IGNORE_INDEX)
    y[:, prefix - 1:] = yr[donors, prefix - 1:]   # target t is input t + 1
    return TensorDataset(x, y)


@register_method("replace-answer", config=ReplaceAnswerConfig, tasks=GENERATE,
                 paper="paper 001 (answer replacement on an instruction-tuned LLM); "
                       "Maini et al. 2024 (TOFU, IDK fine-tuning)",
                 reference="paper 001 equations (no reference code)",
                 differences=("alternative answers are other D_r passages' continuations, not "
                              "written refusals",))
def replace_answer(model: nn.Module, data: UnlearnData, cfg: ReplaceAnswerConfig,
                   ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Train D_f prompts to continue with other passages' text, beside the retain NLL."""
    default_prefix = getattr(ctx.eval_settings, "prefix", 16)
    context = data.forget.tensors[0].shape[1]
    prefix = max(1, min(cfg.prefix or default_prefix, context - 1))
    forget = replaced(data.forget, data.retain, prefix, ctx.seed)

    def step(xf: torch.Tensor, yf: torch.Tensor, xr: torch.Tensor,
             yr: torch.Tensor) -> torch.Tensor:
        answer = sequence_nll(model, xf, yf, mean_over_tokens=True).mean()
        retain = sequence_nll(model, xr, yr, mean_over_tokens=True).mean()
        return answer + cfg.alpha * retain

    yield from unlearn_epochs(model, data, cfg, ctx, step, forget=forget)
