"""Cached model outputs: one forward pass per split, read by every metric.

A trial evaluates a model once: :func:`forward_splits` runs the model over D_f, D_r, val and
test and keeps the raw logits and labels. Every metric in :mod:`raysweep.metrics` is a pure
function of these arrays, so metrics never touch the model again and the outputs of the
original model and the retrain oracle can be cached on disk (:meth:`ModelOutputs.to_npz`) and
compared with those of any trial.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from raysweep.data.bundle import UnlearnData

__all__ = ["SPLITS", "SplitOutputs", "ModelOutputs", "forward_splits", "feature_layer", "softmax",
           "log_softmax", "cross_entropy"]

#: The splits an :class:`ModelOutputs` holds, in the order they are evaluated.
SPLITS: tuple[str, ...] = ("forget", "retain", "val", "test")

_NPZ_VERSION = 2  # 2: optional penultimate features per split


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (stable for large logits)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    return np.exp(log_softmax(logits))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy loss ``-log softmax(logits)[label]`` (float64, shape ``(N,)``)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return np.zeros(0, np.float64)
    return -log_softmax(logits)[np.arange(len(labels)), labels]


@dataclass
class SplitOutputs:
    """The logits and labels of one split, from one forward pass.

    Attributes:
        logits: float32 array of shape ``(N, C)``.
        labels: int64 array of shape ``(N,)``.
        features: optional float32 array ``(N, D)``: the penultimate representation (the input
            of the classifier's last ``nn.Linear``), read by the representation probe.
    """

    logits: np.ndarray
    labels: np.ndarray
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.logits = np.asarray(self.logits, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.logits.ndim != 2:
            raise ValueError(f"logits must have shape (N, C), got shape {self.logits.shape}")
        if len(self.logits) != len(self.labels):
            raise ValueError(f"logits and labels disagree on N: {len(self.logits)} logits rows "
                             f"vs {len(self.labels)} labels")
        if self.features is not None:
            self.features = np.asarray(self.features, dtype=np.float32)
            if self.features.ndim != 2 or len(self.features) != len(self.labels):
                raise ValueError(f"features must have shape (N, D) with N={len(self.labels)}, "
                                 f"got shape {self.features.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def losses(self) -> np.ndarray:
        """Per-sample cross-entropy losses (float64, ``(N,)``)."""
        return cross_entropy(self.logits, self.labels)

    def subset(self, mask: np.ndarray) -> SplitOutputs:
        """The rows selected by a boolean mask or an index array."""
        feats = None if self.features is None else self.features[mask]
        return SplitOutputs(self.logits[mask], self.labels[mask], feats)


@dataclass
class ModelOutputs:
    """One model's outputs over every split (keys ``forget``, ``retain``, ``val``, ``test``)."""

    splits: dict[str, SplitOutputs]

    def __getitem__(self, split: str) -> SplitOutputs:
        try:
            return self.splits[split]
        except KeyError:
            have = ", ".join(self.splits)
            raise KeyError(f"no outputs for split {split!r} (have: {have})") from None

    def __contains__(self, split: object) -> bool:
        return split in self.splits

    def nonfinite_splits(self) -> list[str]:
        """Splits with a non-finite logit (a diverged model)."""
        return [s for s, o in self.splits.items()
                if len(o.logits) and not np.isfinite(o.logits).all()]

    def to_npz(self, path: str | os.PathLike[str]) -> None:
        """Write every split to one compressed ``.npz`` file (``np.savez_compressed``)."""
        arrays: dict[str, np.ndarray] = {"__version__": np.array(_NPZ_VERSION)}
        for name, out in self.splits.items():
            if "__" in name:
                raise ValueError(f"split names may not contain '__', got {name!r}")
            arrays[f"{name}__logits"] = out.logits
            arrays[f"{name}__labels"] = out.labels
            if out.features is not None:
                arrays[f"{name}__features"] = out.features
        with open(path, "wb") as fh:  # a file object keeps numpy from appending ".npz"
            # numpy's stub lets **kwds match its ``allow_pickle: bool`` too; every key here is
            # an array name ("__version__" or "<split>__<field>"), never allow_pickle.
            np.savez_compressed(fh, **cast(dict[str, Any], arrays))

    @classmethod
    def from_npz(cls, path: str | os.PathLike[str]) -> ModelOutputs:
        """Read a file written by :meth:`to_npz`."""
        with np.load(path, allow_pickle=False) as z:
            version = int(z["__version__"]) if "__version__" in z.files else None
            if version != _NPZ_VERSION:
                raise ValueError(f"{os.fspath(path)}: not a raysweep ModelOutputs file of version "
                                 f"{_NPZ_VERSION} (found version {version}); delete it to rebuild")
            names = sorted({k.rsplit("__", 1)[0] for k in z.files if k != "__version__"},
                           key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
            splits = {n: SplitOutputs(z[f"{n}__logits"], z[f"{n}__labels"],
                                      z[f"{n}__features"] if f"{n}__features" in z.files
                                      else None)
                      for n in names}
        return cls(splits)


def feature_layer(model: nn.Module) -> nn.Module | None:
    """The classifier's last ``nn.Linear`` (its input is the penultimate representation).

    Every model raysweep builds ends in a linear head (SmallCNN, MLP, ResNet, ViT, EfficientNet,
    the text encoders' classifier), so "the input of the last ``nn.Linear`` in module order" is
    the representation a linear probe should read; ``None`` when the model has no linear layer.
    """
    from torch import nn as _nn

    last = None
    for module in model.modules():
        if isinstance(module, _nn.Linear):
            last = module
    return last


def forward_splits(model: nn.Module, data: UnlearnData, device: torch.device | str,
                   batch_size: int = 512, *, features: bool = True,
                   splits: Sequence[str] = SPLITS,
                   rows: Mapping[str, np.ndarray] | None = None) -> ModelOutputs:
    """Run ``model`` once over each split of ``data`` (eval mode, no gradients).

    Args:
        model: the classifier; its train/eval mode is restored afterwards.
        data: the :class:`~raysweep.methods.UnlearnData` bundle.
        device: where to run the forward passes.
        batch_size: inference batch size.
        features: also keep the penultimate representation (:func:`feature_layer`'s input),
            captured in the same pass by a forward pre-hook.
        splits: the splits to run (default: all four).
        rows: per split, the row indices to run instead of the whole split (in this order).

    Returns:
        A :class:`ModelOutputs` with one :class:`SplitOutputs` per split.
    """
    import torch
    from torch.utils.data import TensorDataset

    from raysweep.training import predict_logits

    dev = torch.device(device) if isinstance(device, str) else device
    layer = feature_layer(model) if features else None
    captured: list[np.ndarray] = []
    handle = None
    if layer is not None:
        def grab(_module: nn.Module, args: tuple) -> None:
            x = args[0]
            captured.append(x.detach().reshape(x.shape[0], -1).float().cpu().numpy())
        handle = layer.register_forward_pre_hook(grab)
    out: dict[str, SplitOutputs] = {}
    try:
        for name in splits:
            captured.clear()
            ds = getattr(data, name)
            if rows is not None and name in rows:
                idx = torch.as_tensor(np.asarray(rows[name], dtype=np.int64))
                ds = TensorDataset(*(t[idx.to(t.device)] for t in ds.tensors))
            logits, labels = predict_logits(model, ds, device=dev, batch_size=batch_size)
            feats = None
            if layer is not None and len(labels):
                feats = np.concatenate(captured) if captured else None
                if feats is not None and len(feats) != len(labels):
                    feats = None  # the head ran more or less than once per sample: no probe
            out[name] = SplitOutputs(logits, labels, feats)
    finally:
        if handle is not None:
            handle.remove()
    return ModelOutputs(out)
