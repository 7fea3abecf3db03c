"""Deviation: the 3rd-place NeurIPS 2023 challenge solution (Achour; paper 002, IV-B5).

1. Replace each weight ``w`` of the perturbed convolution(s) by a draw from ``N(w, sigma)``
   with an **absolute** standard deviation ``sigma = 0.6`` (paper 002: "chosen arbitrarily at
   0.6"; it is not scaled by the weights' own std).
2. Fine-tune on D_r with SGD and cross-entropy (3rd-place code: 4 epochs, lr 7e-4, momentum
   0.9, wd 5e-4, cosine schedule over epochs, batch 64).
3. Before the final epoch add a little more noise, ``sigma = 0.005``, to the same weights.

Which convolutions: the paper says "the convolutional layers", but the 3rd-place code perturbs
the top-level children whose name contains "conv", which on the challenge's torchvision
ResNet-18 is only the stem ``conv1`` (0.6 on every ResNet convolution would wipe the network
out, and the paper reports deviation keeping retain/validation accuracy near the original's).
``layers="first"`` (default) reproduces the code: the first ``Conv2d`` of the model (ResNet's
``conv1``, a ViT's patch embedding); ``layers="all"`` perturbs every ``Conv2d``. A model with no
convolution (an image MLP) falls back to its first ``Linear`` ("first") or all its Linear
layers but the head ("all").

Not ported from the code: its class-weighted cross-entropy (weights 1 for class 0 and 0.05 for
the rest, specific to the challenge's age classes; the paper uses plain cross-entropy). The
xcadet/deepunlearn port replaces those weights by sklearn's "balanced" weights over D_r's labels,
applied as a per-batch factor on the mean loss; on a class-balanced D_r they are all 1, which
is how ``tests/methods/test_reference_equivalence.py`` compares the two exactly.
Text models are not supported: the absolute sigma of 0.6 is calibrated to convolution kernels
followed by BatchNorm, and perturbing a token-embedding table or attention weights this much
is a different method, not a generalisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from raysweep.methods import _fields as fields
from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    UnlearnContext,
    UnlearnData,
    register_method,
)
from raysweep.methods._challenge import first_layer, weight_layers
from raysweep.methods._loops import ce_epoch


class DeviationConfig(MethodConfig):
    epochs: int = fields.epochs(4, "fine-tuning epochs on D_r (3rd-place code: 4)")
    sigma: float = Field(0.6, ge=0, le=10,
                         description="absolute std of the initial weight noise (paper: 0.6)")
    final_sigma: float = Field(0.005, ge=0, le=10,
                               description="std of the noise before the last epoch (paper: 0.005)")
    layers: Literal["first", "all"] = Field(
        "first", description="perturb the first conv (code) or every conv (paper text)")
    lr: float = fields.lr(7e-4, "SGD learning rate (code: 7e-4)")
    momentum: float = fields.momentum(0.9, "SGD momentum (code: 0.9)")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay (code: 5e-4)")
    batch_size: int = fields.batch_size(64, "retain batch size (code: 64)", le=8192)


def perturbed_layers(model: nn.Module, layers: str) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    return [first_layer(model)] if layers == "first" else weight_layers(model)


@torch.no_grad()
def add_weight_noise(model: nn.Module, layers: str, sigma: float, gen: torch.Generator) -> None:
    """``w <- w + N(0, sigma)`` elementwise on the weights of the chosen layers."""
    for _, m in perturbed_layers(model, layers):
        noise = torch.randn(m.weight.shape, generator=gen) * sigma
        m.weight.add_(noise.to(m.weight.device, m.weight.dtype))


@register_method("deviation", config=DeviationConfig, supports_text=False,
                 paper="NeurIPS 2023 unlearning challenge, 3rd place (Achour); paper 002",
                 reference="xcadet/deepunlearn: munl/unlearning/kgltop3.py",
                 differences=(
                     "plain cross-entropy, not the port's per-batch factor of sklearn 'balanced' "
                     "class weights over D_r (equal on a class-balanced D_r)",
                 ))
def deviation(model: nn.Module, data: UnlearnData, cfg: DeviationConfig,
              ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Add N(0, 0.6) to the stem conv, fine-tune on D_r, add N(0, 0.005) before the last epoch."""
    ctx.require_image_model("deviation")
    gen = torch.Generator().manual_seed(ctx.seed)
    add_weight_noise(model, cfg.layers, cfg.sigma, gen)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    for epoch in range(cfg.epochs):
        if epoch == cfg.epochs - 1 and epoch > 0:
            # The code adds it after the second-to-last epoch, i.e. before the last one.
            add_weight_noise(model, cfg.layers, cfg.final_sigma, gen)
        loss = ce_epoch(model, data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch), opt,
                        ctx.device)
        sched.step()
        yield EpochEnd(epoch + 1, {"loss": loss})
