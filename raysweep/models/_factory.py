"""``create_model(name, num_classes, ...)``: one factory over timm, torchvision and transformers.

Every model takes one tensor and returns logits: images ``(B, C, H, W)`` float, text
``(B, L)`` token ids (the attention mask is ``ids != pad_id``). Keeping one input type lets
every unlearning method and metric treat image and text models alike.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from raysweep.errors import ConfigError, did_you_mean

__all__ = ["ModelSpec", "create_model", "list_models", "register_model", "model_blocks"]

_MODELS: dict[str, tuple[Callable[..., nn.Module], str, str]] = {}


def register_model(
    name: str, *, kind: str, description: str,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(num_classes, in_chans, img_size, pretrained, **kw) -> nn.Module``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = (fn, kind, description)
        return fn

    return deco


def list_models() -> dict[str, tuple[str, str]]:
    """``name -> (kind, description)`` of every registered model."""
    return {k: (v[1], v[2]) for k, v in sorted(_MODELS.items())}


def model_kind(name: str) -> str:
    if name.startswith("hf:"):
        return "text"
    _check_name(name)
    return _MODELS[name][1]


def _check_name(name: str) -> None:
    if name not in _MODELS and not name.startswith("hf:"):
        raise ConfigError(f"unknown model {name!r}{did_you_mean(name, _MODELS)} "
                          f"(known: {', '.join(sorted(_MODELS))}, or hf:/path/to/checkpoint)")


def create_model(name: str, num_classes: int, *, in_chans: int = 3, img_size: int = 32,
                 pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
    """Build a classifier.

    Args:
        name: a registered name (``raysweep models`` lists them) or ``hf:DIR`` for any local
            Hugging Face encoder checkpoint (e.g. MARBERT), which gets a linear head.
        num_classes: size of the output layer.
        in_chans: image channels (ignored by text models).
        img_size: image side length (ignored by text models and convolutional nets).
        pretrained: ``True`` for the weights that ship with a package (EfficientNet-Lite0,
            MiniLM), or a path to a local weights file / checkpoint directory.

    >>> m = create_model("smallcnn", num_classes=10, in_chans=1, img_size=28)
    >>> m(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
    if name.startswith("hf:"):
        from raysweep.models.text import hf_text_classifier

        return hf_text_classifier(name[3:], num_classes, **kwargs)
    _check_name(name)
    fn = _MODELS[name][0]
    _check_options(name, fn, kwargs)
    try:
        return fn(num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                  pretrained=pretrained, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        # model.options are the user's: a value the architecture cannot take (a negative width,
        # a string, a layer too large to allocate) is one line, not a traceback. Other runtime
        # errors are not about options and propagate.
        text = " ".join(str(exc).split())
        if isinstance(exc, RuntimeError) and not kwargs:
            raise
        if isinstance(exc, RuntimeError) and not any(
                k in text for k in ("negative dimension", "allocate", "must be positive")):
            raise
        raise ConfigError(f"model {name!r} cannot be built with model.options {kwargs} "
                          f"({type(exc).__name__}: {text[:160]}); fix the options (see: "
                          f"raysweep models)") from None


def _check_options(name: str, fn: Callable[..., nn.Module], options: dict[str, Any]) -> None:
    """Unknown ``model.options`` keys are one line listing the valid ones."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    fixed = {"num_classes", "in_chans", "img_size", "pretrained"}
    valid = [p for p in params if p not in fixed]
    for key in options:
        if key not in valid:
            raise ConfigError(f"model {name!r}: unknown model.options key {key!r}"
                              f"{did_you_mean(key, valid)} (valid: {', '.join(valid) or 'none'})")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: retrain and random teachers call :meth:`build`."""

    name: str
    num_classes: int
    in_chans: int = 3
    img_size: int = 32
    pretrained: bool | str = False
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, *, pretrained: bool | None = None, seed: int | None = None) -> nn.Module:
        if seed is not None:
            torch.manual_seed(seed)
        pre = self.pretrained if pretrained is None else (self.pretrained if pretrained else False)
        model = create_model(self.name, self.num_classes, in_chans=self.in_chans,
                             img_size=self.img_size, pretrained=pre, **self.options)
        return _count_if_active(model)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count_if_active(model: nn.Module) -> nn.Module:
    """Attach the active :class:`~raysweep.methods.PassCounter` (if any) to a newly built model,
    so that random teachers and fresh models built while a method runs count towards its cost.
    Without an active counter (always, unless ``raysweep.methods._cost`` was imported and a
    counter is running) the model is returned untouched."""
    cost = sys.modules.get("raysweep.methods._cost")
    return model if cost is None else cost.attach_if_active(model)


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's blocks from input to output, for CF-k / EU-k ("the last k blocks").

    A model may define ``blocks()`` itself; otherwise the top-level children that hold
    parameters are the blocks (for torchvision ResNet: conv1, bn1, layer1..layer4, fc).
    """
    if hasattr(model, "blocks") and callable(model.blocks):
        return list(model.blocks())
    return [m for m in model.children() if any(True for _ in m.parameters())]
