"""CF-k, catastrophic forgetting of the last k blocks (Goel et al. 2023, "Towards Adversarial
Evaluations for Inexact Machine Unlearning").

Freeze everything but the last ``k`` blocks and the classification head, then fine-tune those
on D_r with cross-entropy. Blocks come from :func:`raysweep.models.model_blocks` (for ResNet:
conv1, bn1, layer1..layer4, fc; for the text model: embeddings, each encoder layer, fc); its last
entry is the head and is always trained, so ``k = 1`` on ResNet trains layer4 + fc (DESIGN
default) and ``k = 0`` is linear probing. Compared in paper 004 (k = 5).

Frozen blocks run in eval mode during training so that their BatchNorm statistics stay those
of the original model ("frozen" means the whole block, not only its weights); Goel et al.'s
code only turns off gradients. ``requires_grad`` flags are restored when the method ends or is
stopped.

Other differences from Goel et al.'s code (shash42/Evaluating-Inexact-Unlearning,
``resetFinalResnet`` and ``train_loop``), all asserted in
``tests/methods/test_reference_equivalence.py``: ``k`` counts blocks, where their ``K`` counts
Conv/Linear layers from the output (with the BatchNorm layers between them), so ``k = 1`` on
ResNet-18 (layer4 + fc) is their ``K = 6`` (layer4's five convolutions and fc); the lr is
constant, where their training loop anneals it with cosine warm restarts; gradients are not
clipped (they clip the norm at 10; it does not bind in the equivalence test). The port in
xcadet/deepunlearn (``fk_finetune``, from the SCRUB notebook) differs more: the whole model in
eval mode, plain SGD without momentum, a pull ``(wd/2)·||w - w_original||²`` instead of weight
decay, and lr x0.1 after 50/80/90% of the epochs; with momentum and weight decay 0, no decay
step reached and a model without BatchNorm or dropout, it computes what this method does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import Field
from torch import nn

from raysweep.errors import ConfigError
from raysweep.methods import _fields as fields
from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    UnlearnContext,
    UnlearnData,
    register_method,
)
from raysweep.methods._loops import ce_epoch
from raysweep.models import model_blocks
from raysweep.training import make_optimizer

__all__ = ["CFKConfig", "cf_k", "last_blocks", "train_only"]


class CFKConfig(MethodConfig):
    k: int = Field(1, ge=0, le=1000,
                   description="blocks before the head to train; the head always trains "
                               "(DESIGN: 1 ResNet block; paper 004: 5)")
    epochs: int = fields.epochs(10, "passes over D_r (DESIGN: 10)")
    lr: float = fields.lr(0.02, "learning rate (finetune's 0.02; paper 004 searches 1e-5..5e-3)")
    optimizer: fields.Optimizer = fields.optimizer("sgd", "optimizer")
    momentum: float = fields.momentum(0.9, "SGD momentum")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay")
    batch_size: int = fields.batch_size(128, "retain batch size")


def last_blocks(model: nn.Module, k: int, method: str) -> tuple[list[nn.Module], list[nn.Module]]:
    """Split ``model_blocks(model)`` into (frozen, trained): the trained part is the last ``k``
    blocks before the head plus the head. Raises :class:`ConfigError` when ``k`` is too large."""
    blocks = model_blocks(model)
    if k + 1 > len(blocks):
        names = ", ".join(type(b).__name__ for b in blocks)
        raise ConfigError(f"{method}.k: the model has {len(blocks) - 1} blocks before its head "
                          f"({names}), got k={k}; choose k <= {len(blocks) - 1}")
    cut = len(blocks) - (k + 1)
    return blocks[:cut], blocks[cut:]


@contextmanager
def train_only(model: nn.Module, trained: list[nn.Module]) -> Iterator[list[nn.Parameter]]:
    """Turn gradients off for every parameter outside ``trained``; yields the trainable ones and
    restores the original ``requires_grad`` flags on exit (also when the generator is closed)."""
    flags = {id(p): p.requires_grad for p in model.parameters()}
    keep = {id(p) for block in trained for p in block.parameters()}
    params = []
    for p in model.parameters():
        p.requires_grad_(id(p) in keep and flags[id(p)])
        if p.requires_grad:
            params.append(p)
    try:
        yield params
    finally:
        for p in model.parameters():
            p.requires_grad_(flags[id(p)])


def train_blocks(model: nn.Module, frozen: list[nn.Module], trained: list[nn.Module],
                 data: UnlearnData, ctx: UnlearnContext, *, epochs: int, optimizer: str, lr: float,
                 momentum: float, weight_decay: float, batch_size: int) -> Iterator[EpochEnd]:
    """Fine-tune only the ``trained`` blocks on D_r with CE (:func:`train_only`), frozen blocks
    in eval mode; yields per epoch."""
    with train_only(model, trained) as params:
        opt = make_optimizer(params, optimizer, lr, momentum, weight_decay)
        for epoch in range(epochs):
            loss = ce_epoch(model, data.loader("retain", batch_size, seed=ctx.seed + epoch), opt,
                            ctx.device, frozen=frozen)
            yield EpochEnd(epoch + 1, {"loss": loss})


@register_method("cf-k", config=CFKConfig,
                 paper="Goel et al. 2023 (CF-k); paper 004",
                 reference="shash42/Evaluating-Inexact-Unlearning: src/methods.py "
                            "resetFinalResnet, src/learn.py train_loop; port xcadet/deepunlearn: "
                            "munl/unlearning/catastrophic_forgetting_k.py",
                 differences=(
                     "frozen blocks run in eval mode (Goel: frozen BatchNorm layers stay in train "
                     "mode)",
                     "constant lr (Goel: cosine warm restarts; the port: x0.1 steps)",
                     "no gradient clipping (Goel clips the gradient norm at 10)",
                     "plain weight decay, not the port's (wd/2)*||w - w_init||^2 pull towards the "
                     "original",
                 ))
def cf_k(model: nn.Module, data: UnlearnData, cfg: CFKConfig,
         ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Fine-tune only the last k blocks and the head on D_r, the rest frozen."""
    frozen, trained = last_blocks(model, cfg.k, "cf-k")
    yield from train_blocks(model, frozen, trained, data, ctx, epochs=cfg.epochs,
                            optimizer=cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay, batch_size=cfg.batch_size)
