"""Trivial edits: model changes that do not unlearn, to prove the objective cannot be gamed.

Each edit takes the original model and returns a model that *looks* different on some metric
without having forgotten anything (or having forgotten everything, uselessly):

==================  ==============================================================================
edit                what it does
==================  ==============================================================================
``unchanged``       the original model as it is
``suppress-logit``  subtract 30 from the forgotten classes' logits (class forgetting only): D_f
                    accuracy drops to 0 like the oracle's while the features are untouched
``temperature``     divide every logit by 4: higher losses everywhere, the same ranking
``reinit-head``     re-initialise the last linear layer (forgets everything, keeps the features)
``weight-noise``    add Gaussian noise of 0.5 x each tensor's standard deviation to every weight
``constant``        predict the same class for every input
==================  ==============================================================================

:func:`score_edits` evaluates each of them on a prepared workload exactly as a trial would be
evaluated (same metrics, same objective, cost 0). The rule the tests and ``raysweep bench
edits`` check: none of them may beat the retrain oracle (which scores 0), nor an honest method
that forgets within the same budget.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from raysweep.metrics import ObjectiveConfig, feature_layer, forward_splits

__all__ = ["EDITS", "apply_edit", "score_edits", "edit_names"]

EditFn = Callable[[nn.Module, Any], "nn.Module | None"]


class _LogitMap(nn.Module):
    """Wraps a classifier and maps its logits (the wrapped model's layers stay inspectable)."""

    def __init__(self, model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.model(x))


def _suppress_logit(model: nn.Module, workload: Any) -> nn.Module | None:
    classes = list(workload.forget_classes)
    if not classes:
        return None  # no forgotten class to suppress (random, subclass, targeted)
    shift = torch.zeros(workload.num_classes)
    shift[classes] = -30.0
    return _LogitMap(model, lambda z: z + shift.to(z.device))


def _temperature(model: nn.Module, workload: Any) -> nn.Module:
    return _LogitMap(model, lambda z: z / 4.0)


def _reinit_head(model: nn.Module, workload: Any) -> nn.Module:
    # feature_layer returns the model's last nn.Linear (typed as a plain Module)
    head = cast("nn.Linear | None", feature_layer(model))
    if head is None:
        raise ValueError("reinit-head: the model has no linear layer")
    with torch.random.fork_rng(devices=[]):  # a fixed draw that leaves the global RNG alone
        torch.manual_seed(12345)
        head.reset_parameters()
    return model


def _weight_noise(model: nn.Module, workload: Any) -> nn.Module:
    gen = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1 and p.dtype.is_floating_point:
                noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
                p.add_(0.5 * p.detach().float().std().to(p.dtype) * noise.to(p.device))
    return model


def _constant(model: nn.Module, workload: Any) -> nn.Module:
    keep = [c for c in range(workload.num_classes) if c not in set(workload.forget_classes)]
    logits = torch.full((workload.num_classes,), -10.0)
    logits[keep[0]] = 10.0
    return _LogitMap(model, lambda z: logits.to(z.device).expand_as(z).clone())


EDITS: dict[str, EditFn] = {
    "unchanged": lambda model, workload: model,
    "suppress-logit": _suppress_logit,
    "temperature": _temperature,
    "reinit-head": _reinit_head,
    "weight-noise": _weight_noise,
    "constant": _constant,
}


def edit_names() -> list[str]:
    return list(EDITS)


def apply_edit(name: str, workload: Any) -> nn.Module | None:
    """The edited copy of the workload's original model; ``None`` if the edit does not apply."""
    if name not in EDITS:
        raise KeyError(f"unknown edit {name!r} (choose from: {', '.join(EDITS)})")
    model = copy.deepcopy(workload.build_model("original"))
    edited = EDITS[name](model, workload)
    return None if edited is None else edited.eval()


def score_edits(workload: Any, objective: ObjectiveConfig | None = None, *,
                names: list[str] | None = None, seed: int = 0,
                device: torch.device | None = None) -> list[dict[str, Any]]:
    """Evaluate each edit like a trial: rows with ``edit``, ``objective`` (val) and
    ``objective/test`` and every metric; edits that do not apply to the scenario are skipped."""
    objective = objective or ObjectiveConfig()
    dev = device or torch.device("cpu")
    data = workload.unlearn_data()
    rows = []
    for name in names or edit_names():
        model = apply_edit(name, workload)
        if model is None:
            continue
        outputs = forward_splits(model.to(dev), data, dev,
                                 batch_size=workload.config.eval_batch_size)
        metrics = workload.evaluate(outputs, seconds=None, catboost=False, seed=seed)
        metrics.update({"cost/forward": 0.0, "cost/backward": 0.0, "cost/passes": 0.0,
                        "cost/ratio": 0.0})
        rows.append({"edit": name, "objective": objective.score(metrics, split="val"),
                     "objective/test": objective.score(metrics, split="test"), **metrics})
    return rows
