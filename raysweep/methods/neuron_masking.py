"""Neuron masking (paper 001): silence the units that the forget data drives hardest. One shot.

Record each unit's mean activation over D_f (and over D_r for the ``ratio`` rule) at the input
of the chosen layers, then zero the units whose score passes the threshold. Paper 001 captures
"the neuron activation, computing the average values and masking the neurons which are above a
certain threshold"; its reference notebook (VGG16/CIFAR-10 "plane", and a CNN on MNIST) averages
one hidden layer's activations over the forget class only and masks units with mean >= 0.5.
That is ``rule="absolute", threshold=0.5`` here, the default; ``rule="ratio"`` compares the
forget data with the rest (mask where forget mean > threshold × retain mean).

Departures from the reference code, all so that the method edits weights and works on any
architecture: (1) a unit is masked by zeroing the weights that *read* it (the columns of the
next Linear, the input channels of the next Conv2d), which is exactly the notebook's
multiplicative mask on that activation but persists in the state dict; (2) the recorded
activation is the input of that layer (post-ReLU), where the notebook hooks the pre-ReLU
output; (3) the score is the mean *magnitude* |a|, equal to the mean for ReLU features and
still meaningful for signed ones (LayerNorm outputs feeding a ViT or BERT head); convolution
channels are averaged over their spatial positions; (4) a unit is masked when its score is
strictly *above* the threshold (the paper's wording), where the notebook tests ``>=``: the two
differ only for a unit whose mean equals the threshold exactly. Because ReLU(z) >= z, (2) masks
a superset of the notebook's units at the same threshold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, cast

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from raysweep.methods import _fields as fields
from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    UnlearnContext,
    UnlearnData,
    register_method,
)


class NeuronMaskingConfig(MethodConfig):
    rule: Literal["absolute", "ratio"] = Field(
        "absolute", description="absolute: mask units whose mean forget activation exceeds "
                                "threshold (paper 001); ratio: mask units whose forget mean "
                                "exceeds threshold x their retain mean")
    threshold: float = Field(0.5, gt=0, le=1e6,
                             description="activation level (absolute; paper 001 code: 0.5) or "
                                         "forget/retain ratio (ratio, e.g. 2)")
    layers: Literal["head", "all"] = Field(
        "head", description="head: the units feeding the classifier (paper 001 masks the last "
                            "hidden layer); all: the inputs of every Linear/Conv2d but the first")
    max_fraction: float = Field(1.0, gt=0, le=1,
                                description="mask at most this fraction of a layer's units, "
                                            "highest scores first (1 = no cap)")
    batch_size: int = fields.batch_size(256, "batch size of the activation passes")


def _head(model: nn.Module, num_classes: int) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"neuron-masking needs an nn.Linear classifier head; "
                        f"{type(model).__name__} has none")
    heads = [m for m in linears if m.out_features == num_classes]
    return (heads or linears)[-1]


def _targets(model: nn.Module, cfg: NeuronMaskingConfig, num_classes: int) -> list[nn.Module]:
    if cfg.layers == "head":
        return [_head(model, num_classes)]
    return [m for m in model.modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]


@torch.no_grad()
def mean_input_activation(
    model: nn.Module, layers: list[nn.Module], ds: TensorDataset, batch_size: int,
    device: torch.device,
) -> tuple[dict[nn.Module, torch.Tensor], list[nn.Module]]:
    """Mean |input activation| per unit (last dim of a Linear input, channel of a Conv2d input).

    Also returns the layers in the order the forward pass reaches them.
    """
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = {}
    order: list[nn.Module] = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        a = args[0].detach().abs().float()
        if isinstance(module, nn.Conv2d):
            a = a.transpose(0, 1).flatten(1)        # (C, B*H*W)
            total, n = a.sum(1), a.shape[1]
        else:
            a = a.reshape(-1, a.shape[-1])          # (rows, units)
            total, n = a.sum(0), a.shape[0]
        if module not in sums:
            sums[module], counts[module] = torch.zeros_like(total), 0
            order.append(module)
        sums[module] += total
        counts[module] += n

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    was_training = model.training
    model.eval()
    try:
        for x, _ in DataLoader(ds, batch_size=batch_size, shuffle=False):
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {m: sums[m] / max(1, counts[m]) for m in sums}, order


def select_units(forget_mean: torch.Tensor, retain_mean: torch.Tensor | None,
                 cfg: NeuronMaskingConfig) -> torch.Tensor:
    """Boolean mask of the units to silence in one layer."""
    if cfg.rule == "absolute":
        score = forget_mean
        chosen = forget_mean > cfg.threshold
    else:
        assert retain_mean is not None
        score = forget_mean / retain_mean.clamp_min(1e-12)
        chosen = forget_mean > cfg.threshold * retain_mean
    cap = int(cfg.max_fraction * len(score))
    if int(chosen.sum()) > cap:
        keep = torch.argsort(torch.where(chosen, score, torch.full_like(score, float("-inf"))),
                             descending=True, stable=True)[:cap]
        chosen = torch.zeros_like(chosen)
        chosen[keep] = True
    return chosen


@register_method("neuron-masking", config=NeuronMaskingConfig, one_shot=True,
                 paper="Roy 2024, comparative study of unlearning for CV and NLP (paper 001)",
                 reference="paper 001 equations (mask units whose mean forget activation is above"
                            " a threshold)",
                 differences=(
                     "masks units strictly above the threshold (the notebook tests mean >= "
                     "threshold)",
                     "fc's input columns are zeroed (the notebook's multiplicative mask; same "
                     "function)",
                     "activations recorded after the ReLU (the notebook's pre-ReLU rule masks a "
                     "subset of these units)",
                 ))
def neuron_masking(model: nn.Module, data: UnlearnData, cfg: NeuronMaskingConfig,
                   ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Zero the units whose mean activation on the forget data passes a threshold (one shot)."""
    layers = _targets(model, cfg, data.num_classes)
    forget_mean, order = mean_input_activation(model, layers, data.forget, cfg.batch_size,
                                               ctx.device)
    retain_mean: dict[nn.Module, torch.Tensor] = {}
    if cfg.rule == "ratio":
        retain_mean, _ = mean_input_activation(model, layers, data.retain, cfg.batch_size,
                                               ctx.device)
    if cfg.layers == "all":
        order = order[1:]   # the first layer reads the raw input (pixels), not units
    masked = total = 0
    with torch.no_grad():
        for layer in order:
            chosen = select_units(forget_mean[layer], retain_mean.get(layer), cfg).to(ctx.device)
            # a Conv2d or Linear (see _targets); torch types Module attributes as Tensor | Module
            weight = cast(torch.Tensor, layer.weight)
            weight[:, chosen] = 0   # the weights reading a silenced unit
            masked += int(chosen.sum())
            total += len(chosen)
    yield EpochEnd(1, {"masked_units": float(masked), "masked_fraction": masked / max(1, total)})
