"""EU-k, exact unlearning of the last k blocks (Goel et al. 2023, "Towards Adversarial
Evaluations for Inexact Machine Unlearning").

Re-initialise the last ``k`` blocks and the classification head (``reset_parameters`` on every
submodule that has one, which also resets BatchNorm statistics), freeze everything else, and
train the re-initialised part from scratch on D_r with cross-entropy. Because the new blocks
never saw D_f and the frozen ones are shared with a model trained on D, this is exact
unlearning for the top of the network. Blocks and the meaning of ``k`` are as for CF-k
(:mod:`raysweep.methods.cf_k`): the head is always included. Compared in paper 004 (k = 5).

Training from scratch uses the workload's own recipe (optimizer, lr, momentum, weight decay) by
default, as retraining does, at a constant lr (the recipe's schedule is not applied; Goel et
al.'s training loop anneals with cosine warm restarts); frozen blocks run in eval mode.

Re-initialisation differs from Goel et al.'s ``_reinit`` (kaiming-normal weights, zero biases,
BatchNorm affine reset but running statistics kept) and from the xcadet/deepunlearn port
(xavier-uniform Linear, kaiming-uniform fan-out Conv2d, zero biases): here every layer gets
PyTorch's default initialisation and BatchNorm statistics are reset, i.e. the re-initialised top
starts where a freshly built model of the architecture would (asserted in
``tests/methods/test_reference_equivalence.py``).
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
from raysweep.methods.cf_k import last_blocks, train_blocks

__all__ = ["EUKConfig", "eu_k", "reinitialise"]


class EUKConfig(MethodConfig):
    k: int = Field(1, ge=0, le=1000,
                   description="blocks before the head to re-initialise and train; the head "
                               "always is (DESIGN: 1 ResNet block; paper 004: 5)")
    epochs: int = fields.epochs(10, "passes over D_r (DESIGN: 10)")
    lr: float | None = fields.lr(None, "learning rate (default: the workload recipe's)")
    optimizer: Literal["sgd", "adam", "adamw"] | None = Field(
        None, description="optimizer (default: the workload recipe's)")
    batch_size: int = fields.batch_size(128, "retain batch size")


@torch.no_grad()
def reinitialise(blocks: list[nn.Module]) -> int:
    """Call ``reset_parameters`` on every submodule of ``blocks`` that defines it; returns how
    many modules were reset."""
    count = 0
    for block in blocks:
        for module in block.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                count += 1
    return count


@register_method("eu-k", config=EUKConfig,
                 paper="Goel et al. 2023 (EU-k); paper 004",
                 reference="shash42/Evaluating-Inexact-Unlearning: src/methods.py "
                            "resetFinalResnet, src/learn.py train_loop; port xcadet/deepunlearn: "
                            "munl/unlearning/exact_unlearning_k.py",
                 differences=(
                     "re-initialised with PyTorch's default init and BatchNorm statistics reset "
                     "(Goel: kaiming_normal_, zero bias, statistics kept; the port: "
                     "xavier_uniform)",
                     "frozen blocks run in eval mode and the lr is constant, as for cf-k (Goel: "
                     "train mode, cosine warm restarts)",
                 ))
def eu_k(model: nn.Module, data: UnlearnData, cfg: EUKConfig,
         ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Re-initialise the last k blocks and the head, then train only them on D_r."""
    frozen, trained = last_blocks(model, cfg.k, "eu-k")
    reinitialise(trained)
    recipe = ctx.train_recipe
    yield from train_blocks(model, frozen, trained, data, ctx, epochs=cfg.epochs,
                            optimizer=cfg.optimizer or recipe.optimizer, lr=cfg.lr or recipe.lr,
                            momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                            batch_size=cfg.batch_size)
