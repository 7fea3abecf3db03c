"""The data bundle of one unlearning request: D_f, D_r, val and test as tensors.

It lives here, beside the datasets, because every layer reads it: methods train on it,
metrics evaluate on it, the workload builds it and :mod:`raysweep.testing` fakes it. The
methods package re-exports it (``from raysweep.methods import UnlearnData`` keeps working).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.utils.data import DataLoader, TensorDataset

from raysweep.training import make_loader

__all__ = ["UnlearnData"]


@dataclass
class UnlearnData:
    """The data an unlearning method may use. ``x`` is images or token ids, ``y`` labels.

    ``forget_classes`` is non-empty only for class forgetting (full or multi-class).
    """

    forget: TensorDataset
    retain: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    forget_classes: tuple[int, ...] = ()
    batch_size: int = 128

    def loader(self, split: str | TensorDataset, batch_size: int | None = None, *,
               shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> DataLoader:
        ds = getattr(self, split) if isinstance(split, str) else split
        return make_loader(ds, batch_size or self.batch_size, shuffle=shuffle, seed=seed,
                           drop_last=drop_last)

    @staticmethod
    def tensors(ds: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
        return ds.tensors[0], ds.tensors[1]

    def nbytes(self) -> int:
        """Bytes of every split's tensors."""
        return sum(t.element_size() * t.nelement() for s in (self.forget, self.retain, self.val,
                                                            self.test) for t in s.tensors)

    def to(self, device: torch.device | str) -> UnlearnData:
        """The same bundle with every split's tensors on ``device`` (kept there for a whole
        trial on an accelerator, so no batch is copied from the host again)."""
        def move(ds: TensorDataset) -> TensorDataset:
            return TensorDataset(*(t.to(device) for t in ds.tensors))

        return replace(self, forget=move(self.forget), retain=move(self.retain),
                       val=move(self.val), test=move(self.test))
