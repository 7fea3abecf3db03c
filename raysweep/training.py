"""Plain PyTorch training and inference shared by workloads and methods (no Ray, no MLflow)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from raysweep.preflight import check_device

__all__ = [
    "TrainConfig", "seed_everything", "make_loader", "make_optimizer", "train_model",
    "predict_logits", "resolve_device", "autocast", "PRECISIONS",
]


class TrainConfig(BaseModel):
    """The recipe for the original model; the retrain oracle reuses it on D_r."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(0.05, gt=0, le=10)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    batch_size: int = Field(128, ge=1, le=65536)
    schedule: Literal["cosine", "constant"] = "cosine"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


#: Compute precisions a sweep may ask for (``precision:``).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


def autocast(device: torch.device, precision: str = "fp32") -> Any:
    """``torch.autocast`` for ``precision`` on ``device``; fp32 turns autocast off (also
    inside an enclosing autocast region: what evaluation and full-precision methods need).

    Parameters and their gradients stay fp32 under autocast; only the operations run in the
    reduced type. fp16 has no loss scaling here (each method owns its optimiser), so prefer
    bf16 where the device has it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16"
                          else torch.float16)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``auto`` (CUDA when present), or a device that exists here (else one UserError line)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str):
        check_device(device)
    return torch.device(device)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = True,
                seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader with its own seeded generator, so shuffling is reproducible per call site."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                      drop_last=drop_last, num_workers=0)


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float,
                   momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r} (sgd, adam, adamw)")


def train_model(model: nn.Module, dataset: TensorDataset, cfg: TrainConfig, *,
                device: torch.device, seed: int,
                on_epoch: Callable[[int, float, float], None] | None = None) -> float:
    """Train with cross-entropy; returns wall time in seconds.

    ``on_epoch(epoch, mean_loss, seconds_so_far)`` is called after each epoch (progress output).
    """
    seed_everything(seed)
    model.to(device).train()
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=seed)
    total_steps = cfg.epochs * len(loader)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
             if cfg.schedule == "cosine" else None)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        total, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(y)
            count += len(y)
        if on_epoch is not None:
            on_epoch(epoch + 1, total / max(1, count), time.perf_counter() - start)
    model.eval()
    return time.perf_counter() - start


def predict_logits(model: nn.Module, dataset: TensorDataset, *, device: torch.device,
                   batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass over a split: ``(logits float32 (N, C), labels int64 (N,))``.

    Slices the dataset's tensors in order instead of going through a ``DataLoader``: the
    loader fetches and collates one sample at a time, which on a small model costs more than
    the forward pass itself. Runs under ``torch.inference_mode`` (no autograd bookkeeping).
    """
    was_training = model.training
    model.eval()
    if isinstance(dataset, TensorDataset):
        x_all, y_all = dataset.tensors[0], dataset.tensors[1]
        batches: Any = ((x_all[i:i + batch_size], None) for i in range(0, len(y_all), batch_size))
    else:  # any other map-style dataset of (x, y) pairs
        batches = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    outs, labels = [], []
    try:
        with torch.inference_mode():
            for x, y in batches:
                outs.append(model(x.to(device, non_blocking=True)).float().cpu())
                if y is not None:
                    labels.append(y)
    finally:
        model.train(was_training)
    if not outs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    y_np = (y_all if isinstance(dataset, TensorDataset) else torch.cat(labels)).cpu().numpy()
    return torch.cat(outs).numpy(), y_np.astype(np.int64, copy=False)
