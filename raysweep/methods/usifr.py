"""USI(F)R: UNSIR with one mixed error-maximising noise batch for all forget classes (paper 003).

Instead of one noise batch per forget class, learn a single batch of ``noise_batch_size`` rows
whose rows are split among the target labels and optimise it once, against all labels at the
same time ("we simultaneously learned the mix error-maximizing noise with the corresponding
label; we did not train noise for multiple classes one by one"). Noise cost therefore does not
grow with the number of forget classes. Impair and repair are UNSIR's (Adam lr 0.02 / 0.01,
one epoch each); the noise is learned with the model in train mode, as in the UNSIR reference
paper 003 builds on (``noise_model_mode``).

Paper 003: "Fast and Accurate Class-Level Machine Unlearning using Impair-Repair and
Noise-Induced Forgetting Mechanisms" (method I). Rows are split among labels by largest
remainder: equally for class forgetting, by frequency in D_f for random/targeted forgetting
(see :mod:`raysweep.methods._noise`, which also covers text models).

Noise size. Paper 003 publishes no code; its text describes the noise as one batch the size of
the training batch (250 on CIFAR-10) and states "the noise batch was limited to 5" (5 copies in
the impair set) wherever it gives a count. So every learned row goes in (none of the UNSIR
notebook's channel-count truncation, which would drop labels from a mixed batch), and the
defaults are the paper's 250 rows × 5 copies rather than the UNSIR notebook's 256 × 20, which
on small data sets outnumbers the retain subsample several times over. Both are searched.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._noise import (
    ImpairRepairConfig,
    NoiseLearningConfig,
    NoiseSpace,
    Paper003Sizes,
    allocate_rows,
    impair_repair,
    learn_noise,
    noise_space,
    noise_targets,
)


class UsifrConfig(Paper003Sizes, NoiseLearningConfig):
    """USI(F)R: one learned mixed noise batch (other fields documented on the base)."""


def mixed_labels(data: UnlearnData, rows: int) -> torch.Tensor:
    """Labels of one mixed noise batch: ``rows`` split among the target labels."""
    labels, weights = noise_targets(data)
    return torch.repeat_interleave(labels, allocate_rows(rows, weights))


def mixed_noise_setup(model: nn.Module, data: UnlearnData, cfg: ImpairRepairConfig,
                      ctx: UnlearnContext) -> tuple[torch.Generator, NoiseSpace, torch.Tensor]:
    """What USI(F)R and DNF start from: the trial-seeded generator, the noise space and the
    labels of one mixed noise batch of ``cfg.noise_batch_size`` rows."""
    gen = torch.Generator().manual_seed(ctx.seed)
    return gen, noise_space(model, data, ctx), mixed_labels(data, cfg.noise_batch_size)


@register_method("usifr", config=UsifrConfig,
                 paper="paper 003 (USI(F)R, method I: impair-repair with mixed noise)",
                 reference="paper 003 equations (no public code), on top of "
                            "vikram2000b/Fast-Machine-Unlearning: Machine Unlearning.ipynb",
                 differences=(
                     "one mixed noise batch for all forget classes, every learned row used (the "
                     "UNSIR notebook: one batch per class, truncated to the channel count)",
                     "paper 003's noise size, 250 rows x 5 copies (the UNSIR notebook: 256 x 20)",
                 ))
def usifr(model: nn.Module, data: UnlearnData, cfg: UsifrConfig,
          ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Learn one mixed error-maximising noise batch for all forget classes; impair and repair."""
    gen, space, noise_y = mixed_noise_setup(model, data, cfg, ctx)
    noise, noise_loss = learn_noise(model, noise_y, space, cfg, gen, ctx.device)
    yield from impair_repair(model, data, cfg, ctx, noise, noise_y, space, gen,
                             extra={"noise_loss": noise_loss})
