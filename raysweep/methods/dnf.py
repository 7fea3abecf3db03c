"""DNF: impair-repair with plain random noise, no noise learning (paper 003, method II).

Draw one N(0, 1) noise batch of ``noise_batch_size`` rows labelled with the target labels (the
same mixed layout as USI(F)R), skip the error-maximising optimisation, and run UNSIR's impair
(noise × ``noise_copies`` ∪ retain subsample, Adam lr 0.02, one epoch) and repair (retain
subsample, Adam lr 0.01). Training on random inputs labelled as the forget classes erodes
what the model ties to those labels; the repair keeps the retained classes.

Paper 003: "Fast and Accurate Class-Level Machine Unlearning using Impair-Repair and
Noise-Induced Forgetting Mechanisms". The same noise batch is repeated ``noise_copies`` times
(as UNSIR repeats its learned batches) rather than redrawn per copy. Noise size: the paper's
250 rows × 5 copies, every row used, as for :mod:`raysweep.methods.usifr` (raysweep used the
UNSIR notebook's 256 × 20 before). Label layout for random/targeted forgetting and text models:
see :mod:`raysweep.methods._noise`.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from raysweep.methods._base import EpochEnd, UnlearnContext, UnlearnData, register_method
from raysweep.methods._noise import ImpairRepairConfig, Paper003Sizes, impair_repair, random_noise
from raysweep.methods.usifr import mixed_noise_setup


class DnfConfig(Paper003Sizes, ImpairRepairConfig):
    """DNF: random (unlearned) noise, then impair and repair (other fields on the base)."""


@register_method("dnf", config=DnfConfig,
                 paper="paper 003 (DNF, method II: impair-repair with random noise)",
                 reference="paper 003 equations (no public code), on top of "
                            "vikram2000b/Fast-Machine-Unlearning: Machine Unlearning.ipynb",
                 differences=(
                     "the noise is N(0, 1), never optimised, every row used (paper 003's method "
                     "II)",
                     "paper 003's noise size, 250 rows x 5 copies (the UNSIR notebook: 256 x 20)",
                 ))
def dnf(model: nn.Module, data: UnlearnData, cfg: DnfConfig,
        ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Impair on random N(0, 1) noise labelled as the forget classes plus retain data; repair."""
    gen, space, noise_y = mixed_noise_setup(model, data, cfg, ctx)
    noise = random_noise(len(noise_y), space, gen, ctx.device)
    yield from impair_repair(model, data, cfg, ctx, noise, noise_y, space, gen)
