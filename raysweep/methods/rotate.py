"""Rotate: the 5th-place NeurIPS 2023 challenge solution (Marvelworld and Toshi-k; paper 002,
IV-B2).

1. **Transpose** every ``Conv2d`` kernel over its two spatial axes (``weight.swapaxes(2, 3)``
   in the 5th-place code). A network whose every kernel is transposed computes, up to padding
   and pooling asymmetries, the original features of the *transposed* image: the learned
   filters survive (they are "reused") but the sample-specific fit is broken.
2. **Fine-tune** on D_r with cross-entropy (code: 3 epochs, SGD lr 1e-3, momentum 0.9, wd 5e-4,
   cosine over epochs, batch 64).

Non-square kernels have their ``kernel_size``/``stride``/``padding``/``dilation`` swapped with
them, so the layer stays valid. Image MLPs (no convolution): the first ``Linear`` reads the
flattened ``(C, H, W)`` image, so each of its rows is a full-image kernel; it is transposed
over (H, W), which makes the MLP compute exactly the original function of the transposed image
(the same "reused features, broken fit" effect). Deeper Linear layers have no spatial axes and
are left alone. Text models are not supported: a token sequence has no second spatial axis and
transposing a projection matrix is a different (and, for non-square matrices, undefined)
operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar, cast

import torch
from torch import nn

from raysweep.methods import _fields as fields
from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    UnlearnContext,
    UnlearnData,
    register_method,
)
from raysweep.methods._loops import ce_epoch


class RotateConfig(MethodConfig):
    epochs: int = fields.epochs(3, "fine-tuning epochs on D_r (5th-place code: 3)")
    lr: float = fields.lr(1e-3, "SGD learning rate (code: 1e-3)")
    momentum: float = fields.momentum(0.9, "SGD momentum (code: 0.9)")
    weight_decay: float = fields.weight_decay(5e-4, "weight decay (code: 5e-4)")
    batch_size: int = fields.batch_size(64, "retain batch size (code: 64)", le=8192)


_T = TypeVar("_T")


def _swap(pair: _T) -> _T:
    # a reversed 2-tuple has the type of the pair (Conv2d's ``tuple[int, ...]`` fields)
    return cast(_T, tuple(reversed(pair))) if isinstance(pair, tuple) and len(pair) == 2 else pair


@torch.no_grad()
def rotate_kernels(model: nn.Module, in_chans: int, img_size: int) -> int:
    """Transpose every Conv2d kernel (or an image MLP's first Linear) in place; returns the
    number of layers changed."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        for m in convs:
            if m.weight.shape[2] == m.weight.shape[3]:
                m.weight.copy_(m.weight.transpose(2, 3).clone())
            else:
                m.weight = nn.Parameter(m.weight.transpose(2, 3).contiguous())
                m.kernel_size, m.stride = _swap(m.kernel_size), _swap(m.stride)
                m.padding, m.dilation = _swap(m.padding), _swap(m.dilation)
        return len(convs)
    first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    if first is None or first.in_features != in_chans * img_size * img_size:
        raise ValueError(f"rotate: {type(model).__name__} has no Conv2d and no Linear input layer "
                         f"over a {in_chans}x{img_size}x{img_size} image to transpose")
    w = first.weight.view(first.out_features, in_chans, img_size, img_size)
    first.weight.copy_(w.transpose(2, 3).reshape(first.out_features, -1).clone())
    return 1


@register_method("rotate", config=RotateConfig, supports_text=False,
                 paper="NeurIPS 2023 unlearning challenge, 5th place (Marvelworld, Toshi-k); "
                       "paper 002",
                 reference="xcadet/deepunlearn: munl/unlearning/kgltop5.py",
                 differences=(
                     "image MLPs: the first Linear is transposed over (H, W) (the port rotates "
                     "Conv2d only)",
                 ))
def rotate(model: nn.Module, data: UnlearnData, cfg: RotateConfig,
           ctx: UnlearnContext) -> Iterator[EpochEnd]:
    """Transpose every convolution kernel, then fine-tune on D_r with cross-entropy."""
    ctx.require_image_model("rotate")
    rotate_kernels(model, ctx.model_spec.in_chans, ctx.model_spec.img_size)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    for epoch in range(cfg.epochs):
        loss = ce_epoch(model, data.loader("retain", cfg.batch_size, seed=ctx.seed + epoch), opt,
                        ctx.device)
        sched.step()
        yield EpochEnd(epoch + 1, {"loss": loss})
