"""Layer lookup shared by the NeurIPS 2023 challenge methods (paper 002; pure torch).

The winning solutions were written for a torchvision ResNet-18 and name its layers
(``conv1``, ``fc``) or "every ``Conv2d``". raysweep models differ (an MLP with no
convolution at all, a small CNN, ViTs, text encoders), so the methods find their layers
through these helpers, whose rules are stated once here:

* **weight layers** (:func:`weight_layers`): every ``Conv2d``; a model with no convolution
  (an image MLP, a text encoder) falls back to its ``Linear`` layers except the classifier head.
* **head** (:func:`classifier_head`): the last ``Linear`` in module order (``fc`` of ResNet,
  SmallCNN, MLP and the text classifier, ``head`` of timm ViTs, ``classifier`` of EfficientNet).
* **first layer** (:func:`first_layer`): the first ``Conv2d`` (ResNet's ``conv1``, a ViT's patch
  embedding), else the first ``Linear``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from raysweep.methods._base import UnlearnContext

__all__ = ["weight_layers", "classifier_head", "first_layer", "copy_modules", "enable_grad",
           "new_init"]


def classifier_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """``(name, module)`` of the output layer: the last ``nn.Linear`` in module order."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear output layer")
    return linears[-1]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """Every ``Conv2d``; without one, every ``Linear`` except the classifier head."""
    convs: list[tuple[str, nn.Conv2d | nn.Linear]] = [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return convs
    head_name, _ = classifier_head(model)
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and n != head_name]


def first_layer(model: nn.Module) -> tuple[str, nn.Conv2d | nn.Linear]:
    """The first ``Conv2d`` in module order, else the first ``Linear``."""
    for kind in (nn.Conv2d, nn.Linear):
        for n, m in model.named_modules():
            if isinstance(m, kind):
                return n, m
    raise ValueError(f"{type(model).__name__} has neither a Conv2d nor a Linear layer")


@torch.no_grad()
def copy_modules(dst: nn.Module, src: nn.Module, names: list[str]) -> None:
    """Copy the parameters and buffers of the named submodules of ``src`` into ``dst``."""
    src_modules = dict(src.named_modules())
    dst_modules = dict(dst.named_modules())
    for name in names:
        dst_modules[name].load_state_dict(src_modules[name].state_dict())


def new_init(ctx: UnlearnContext, *, pretrained: bool = False) -> nn.Module:
    """A same-architecture model with a random initialisation different from the original's."""
    # UnlearnContext.fresh_model already offsets its default seed from the original's.
    return ctx.fresh_model(pretrained=pretrained)


def enable_grad(model: nn.Module) -> nn.Module:
    """Turn gradients on for every parameter (a deep copy of the frozen original has them off)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model
