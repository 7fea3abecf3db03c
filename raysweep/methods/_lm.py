"""What the language-model methods share: their common config fields, LoRA adapters (peft),
per-passage sequence losses, and the epoch loop that pairs D_f batches with D_r batches.

The model is a :class:`~raysweep.models.lm.CausalLM`: ``model(x)`` gives ``(B, V, T)`` logits
and targets are ``(B, T)`` with -100 on padding, so ``cross_entropy(model(x), y,
reduction="none")`` is the per-token loss. Every method here follows the OpenUnlearning
trainers' shape: one optimiser step per D_f batch, with a D_r batch drawn beside it for the
retain term, and AdamW as the optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import cycle
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from raysweep.methods import _fields as fields
from raysweep.methods._base import EpochEnd, MethodConfig, UnlearnContext, UnlearnData
from raysweep.methods._common import mean
from raysweep.models.lm import IGNORE_INDEX

__all__ = ["LMMethodConfig", "sequence_nll", "token_mask", "attach_lora", "kept_weights",
           "restore_weights", "unlearn_epochs", "retain_kl", "LORA_CONFIG_KEY"]

#: A method that runs on language-model workloads only.
GENERATE: tuple[str, ...] = ("generate",)


class LMMethodConfig(MethodConfig):
    """Fields every language-model method has (OpenUnlearning's defaults, scaled to the small
    model: AdamW, a few epochs over D_f)."""

    epochs: int = fields.epochs(5, "passes over D_f")
    lr: float = fields.lr(1e-3, "AdamW learning rate")
    weight_decay: float = fields.weight_decay(0.0, "AdamW weight decay")
    batch_size: int = fields.batch_size(16, "passages per D_f (and D_r) batch", le=4096)
    lora_rank: int = Field(0, ge=0, le=256, description="0: update every weight; r > 0: train "
                           "rank-r LoRA adapters (peft) on the attention and MLP projections "
                           "with the base weights frozen")
    lora_alpha: int = Field(16, ge=1, le=1024, description="LoRA scaling numerator "
                              "(the update is scaled by alpha / rank)")


def token_mask(y: torch.Tensor) -> torch.Tensor:
    return y != IGNORE_INDEX


def sequence_nll(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 *, mean_over_tokens: bool = False) -> torch.Tensor:
    """Per-passage negative log-likelihood ``(B,)``: summed over real target tokens, or their
    mean with ``mean_over_tokens``."""
    per_token = F.cross_entropy(model(x), y, reduction="none")     # (B, T); 0 where ignored
    total = per_token.sum(1)
    if mean_over_tokens:
        return total / token_mask(y).sum(1).clamp_min(1)
    return total


def retain_kl(model: nn.Module, original: nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> torch.Tensor:
    """KL(original || model) of the next-token distributions, averaged over real tokens."""
    with torch.no_grad():
        ref = F.log_softmax(original(x), dim=1)
    cur = F.log_softmax(model(x), dim=1)
    kl = (ref.exp() * (ref - cur)).sum(1)                          # (B, T)
    mask = token_mask(y)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


def attach_lora(model: nn.Module, cfg: LMMethodConfig) -> list[nn.Parameter]:
    """The parameters the method trains: every weight, or (``lora_rank > 0``) LoRA adapters
    injected in place into the attention and MLP projections, the rest frozen."""
    if cfg.lora_rank <= 0:
        return [p for p in model.parameters() if p.requires_grad]
    from peft import LoraConfig, inject_adapter_in_model

    target = getattr(model, "lm", model)
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                        target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)
    inject_adapter_in_model(config, target)
    trainable = []
    for name, p in model.named_parameters():
        is_adapter = "lora_" in name
        p.requires_grad_(is_adapter)
        if is_adapter:
            trainable.append(p)
    return trainable


#: The key under which a checkpoint of adapters records their rank and alpha.
LORA_CONFIG_KEY = "raysweep.lora"


def kept_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores: every weight, or, when ``model`` carries LoRA adapters, the
    adapters alone with their rank and alpha (the base weights are the original's, which the
    workload holds; a checkpoint of adapters is a few percent of the model)."""
    state = model.state_dict()
    adapters = {k: v.detach().cpu().clone() for k, v in state.items() if "lora_" in k}
    if not adapters:
        return {k: v.detach().cpu().clone() for k, v in state.items()}
    layer: Any = next(m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "r"))
    adapter = next(iter(layer.r))   # peft keeps rank and alpha per adapter name
    adapters[LORA_CONFIG_KEY] = torch.tensor([float(layer.r[adapter]),
                                              float(layer.lora_alpha[adapter])])
    return adapters


def restore_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load what :func:`kept_weights` stored into ``model``: every weight, or adapters into a
    model that has the original's base weights (injected first when it has none)."""
    if LORA_CONFIG_KEY not in state:
        model.load_state_dict(state)
        return model
    rank, alpha = (int(v) for v in state[LORA_CONFIG_KEY].tolist())
    adapters = {k: v for k, v in state.items() if k != LORA_CONFIG_KEY}
    if not any("lora_" in k for k in model.state_dict()):
        attach_lora(model, LMMethodConfig(lora_rank=rank, lora_alpha=alpha))
    missing, unexpected = model.load_state_dict(adapters, strict=False)
    wanted = set(adapters) - set(unexpected)
    if unexpected or any("lora_" in k for k in missing) or not wanted:
        raise ValueError(f"the checkpoint's adapters do not fit this model (unexpected: "
                         f"{sorted(unexpected)[:3]}, missing: "
                         f"{sorted(k for k in missing if 'lora_' in k)[:3]})")
    return model


Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def unlearn_epochs(model: nn.Module, data: UnlearnData, cfg: LMMethodConfig,
                   ctx: UnlearnContext, step_loss: Step, *,
                   forget: Any = None) -> Iterator[EpochEnd]:
    """The loop every method here runs: per epoch, one AdamW step per D_f batch on
    ``step_loss(xf, yf, xr, yr)`` (a D_r batch drawn beside each D_f batch), yielding the mean
    loss. ``forget`` replaces D_f's dataset (the answer-replacing method's relabelled set)."""
    params = attach_lora(model, cfg)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    dev = ctx.device
    forget_ds = data.forget if forget is None else forget
    for epoch in range(cfg.epochs):
        model.train()
        retain = cycle(data.loader("retain", cfg.batch_size, seed=ctx.seed + 7919 + epoch))
        losses = []
        for xf, yf in data.loader(forget_ds, cfg.batch_size, seed=ctx.seed + epoch):
            xr, yr = next(retain)
            loss = step_loss(xf.to(dev), yf.to(dev), xr.to(dev), yr.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        yield EpochEnd(epoch + 1, {"loss": mean(losses)})
