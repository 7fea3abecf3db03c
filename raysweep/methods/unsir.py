"""UNSIR: unlearning by error-maximising noise, impair and repair (Tarun et al. 2023).

For every target label learn one noise batch N (init N(0, 1), Adam lr 0.1) that maximises the
model's error on that label: minimise ``-CE(model(N), y) + λ·mean_i ||N_i||²``. Impair: one
epoch (Adam lr 0.02) on the noise batches, each repeated ``noise_copies`` times, mixed with a
per-class retain subsample. Repair: one epoch (Adam lr 0.01) on the retain subsample.

Paper: Tarun, Chundawat, Mandal, Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE
TNNLS 2023; compared in papers 000 and 003.

Where we follow the paper rather than the reference notebook: each noise batch is labelled with
*its own* class. The notebook labels every noise row with one stale class variable (class 0 in
the single-class demo), so with several forget classes all noise but one batch pushes the wrong
label. Random/targeted forgetting and text models: see :mod:`raysweep.methods._noise` (one
noise batch per label present in D_f; noise in embedding space for text models).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._common import mean
from raysweep.methods._noise import (
    NoiseLearningConfig, impair_repair, learn_noise, noise_space, noise_targets,
)


class UnsirConfig(NoiseLearningConfig):
    """UNSIR: one learned noise batch per target label (fields documented on the base)."""


def unsir_noise(model: nn.Module, data: UnlearnData, cfg: NoiseLearningConfig, ctx: UnlearnContext,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One learned batch of ``cfg.noise_batch_size`` rows per target label, each row labelled with
    the label its batch was optimised against. Returns ``(noise, labels, mean noise loss)``."""
    space = noise_space(model, data, ctx)
    labels, _ = noise_targets(data)
    batches, ys, losses = [], [], []
    for label in labels.tolist():
        y = torch.full((cfg.noise_batch_size,), label, dtype=torch.long)
        noise, loss = learn_noise(model, y, space, cfg, gen, ctx.device)
        batches.append(noise)
        ys.append(y)
        losses.append(loss)
    return torch.cat(batches), torch.cat(ys), mean(losses)


@register_method("unsir", config=UnsirConfig,
                 paper="Tarun et al. 2023 (UNSIR, IEEE TNNLS); compared in papers 000, 003")
def unsir(model: nn.Module, data: UnlearnData, cfg: UnsirConfig,
          ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Learn error-maximising noise per forget class; impair on it + retain, repair on retain."""
    gen = torch.Generator().manual_seed(ctx.seed)
    noise, noise_y, noise_loss = unsir_noise(model, data, cfg, ctx, gen)
    yield from impair_repair(model, data, cfg, ctx, noise, noise_y, noise_space(model, data, ctx),
                             gen, extra={"noise_loss": noise_loss})
