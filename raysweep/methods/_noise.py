"""Error-maximising noise and the impair/repair schedule shared by UNSIR, USI(F)R and DNF.

The three methods differ only in the noise they feed the impair step:

* **unsir** learns one noise batch per target label and keeps a few of its rows (Tarun et al.
  2023; see :mod:`raysweep.methods.unsir` for how few, and why),
* **usifr** learns one mixed batch whose rows carry all target labels at once (paper 003),
* **dnf** skips learning and uses the N(0, 1) initial noise as it is (paper 003).

Everything after the noise (impair on noise × ``noise_copies`` plus a retain subsample, then
repair on the retain subsample) is :func:`impair_repair`. How much noise the impair set holds
decides the outcome: with 256 rows × 20 copies per label the noise outnumbers the retain
subsample of a small data set several times over and the impair epoch wipes the model out
(digits-class: 5,120 noise rows against 1,091 retain rows, retain accuracy 32.5% after
repair, mean of 3 seeds); the UNSIR reference puts 3 rows × 20 copies per class in (CIFAR-10:
60 noise rows per class against 9,000 retain rows).

Noise learning runs with the model in train mode by default (``noise_model_mode``), as the UNSIR
reference does (its ``model(noise)`` calls come right after loading the weights, so BatchNorm
normalises with the noise batch's own statistics and its running statistics drift toward the
noise; dropout is active). In eval mode (raysweep's behaviour before) the noise is optimised
against the running statistics instead; on a digits SmallCNN that left retain accuracy at 11.4%
after repair, against 42.7% in train mode.

Target labels. For class forgetting the targets are ``data.forget_classes``, shared equally. For
random or targeted forgetting (no forget classes) the targets are the labels present in D_f,
weighted by how often each occurs there: the noise then impairs exactly the labels whose
samples must be forgotten, and a label with few forget rows gets few noise rows (mixed
batches); UNSIR, which learns one batch per label, learns one for every label present.

Text models. Noise over discrete token ids cannot be optimised by gradient, so for a model with
``forward_embeds`` (:class:`raysweep.models.text.TextClassifier`) the noise lives in embedding
space: random embeddings of shape ``(n, L, hidden)`` fed through ``forward_embeds`` with a
full attention mask, ``L`` being the workload's sequence length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods import _fields as fields
from raysweep.methods._base import EpochEnd, MethodConfig, UnlearnContext, UnlearnData
from raysweep.methods._common import mean
from raysweep.methods._loops import ce_epoch

__all__ = [
    "ImpairRepairConfig", "NoiseLearningConfig", "NoiseSpace", "noise_space", "noise_targets",
    "allocate_rows", "random_noise", "learn_noise", "retain_subsample", "impair_repair",
]


class ImpairRepairConfig(MethodConfig):
    """Fields shared by every impair/repair method (defaults: UNSIR notebook, paper 003)."""

    noise_batch_size: int = fields.batch_size(256, "rows per noise batch "
                                                   "(UNSIR notebook: 256; paper 003: 250)")
    noise_copies: int = Field(
        20, ge=1, le=10000, description="times the noise rows are repeated in the impair set "
                                        "(UNSIR notebook: 20; paper 003: 5)")
    retain_per_class: int = Field(
        1000, ge=1, le=10_000_000, description="retain rows per class in the impair/repair "
                                               "subsample (UNSIR notebook: 1000; paper 003 "
                                               "CIFAR-100: 100)")
    impair_lr: float = fields.lr(0.02, "Adam learning rate of the impair epoch "
                                       "(UNSIR, paper 003 CIFAR-10: 0.02; paper 000: 1e-4)")
    repair_lr: float = fields.lr(0.01, "Adam learning rate of the repair epochs "
                                       "(UNSIR, paper 003 CIFAR-10: 0.01; paper 000: 1e-4)")
    repair_epochs: int = Field(
        1, ge=1, le=100, description="repair passes over the retain subsample "
                                     "(paper 003: 1; 2 on CIFAR-100)")
    batch_size: int = fields.batch_size(256, "impair/repair batch size "
                                             "(UNSIR notebook: 256; paper 003: 250)")


class Paper003Sizes(MethodConfig):
    """Paper 003's noise size for USI(F)R and DNF, which put every noise row in the impair set
    (list it before the impair/repair base so that these defaults win)."""

    noise_batch_size: int = fields.batch_size(
        250, "rows of the noise batch (USI(F)R: learned, mixed; DNF: random), all put in "
             "the impair set (paper 003: 250)")
    noise_copies: int = Field(
        5, ge=1, le=10000, description="times the noise batch is repeated in the impair set "
                                       "(paper 003: 5)")
    batch_size: int = fields.batch_size(250, "impair/repair batch size (paper 003: 250)")


class NoiseLearningConfig(ImpairRepairConfig):
    """Adds the error-maximising noise optimisation (UNSIR, USI(F)R)."""

    noise_lr: float = Field(0.1, gt=0, le=100,
                            description="Adam learning rate of the noise (UNSIR: 0.1)")
    noise_steps: int = Field(
        40, ge=1, le=100_000, description="Adam steps on each noise batch "
                                          "(UNSIR notebook: 5 epochs x 8 steps)")
    noise_lambda: float = Field(
        0.1, ge=0, le=1000, description="weight of mean ||N||^2 in the noise loss "
                                        "(UNSIR: 0.1; paper 000: 0 or 0.1)")
    noise_model_mode: Literal["train", "eval"] = Field(
        "train", description="model mode while the noise is learned: train (UNSIR reference: "
                             "BatchNorm uses, and updates its running statistics with, the "
                             "noise batch's statistics) or eval")


@dataclass(frozen=True)
class NoiseSpace:
    """Where noise lives: input space of an image model, or embedding space of a text model."""

    shape: tuple[int, ...]   # one row, without the batch dimension
    text: bool

    def logits(self, model: nn.Module, noise: torch.Tensor) -> torch.Tensor:
        if self.text:
            return model.forward_embeds(noise)  # type: ignore[operator]
        return model(noise)


def noise_space(model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> NoiseSpace:
    x = data.forget.tensors[0]
    if ctx.is_text or getattr(model, "is_text", False):
        if not hasattr(model, "forward_embeds"):
            raise TypeError(f"{type(model).__name__} is a text model without embed/"
                            f"forward_embeds; noise methods need them to learn noise in "
                            f"embedding space")
        with torch.no_grad():
            hidden = model.embed(x[:1].to(ctx.device)).shape[-1]  # type: ignore[operator]
        return NoiseSpace((int(x.shape[1]), int(hidden)), text=True)
    return NoiseSpace(tuple(int(s) for s in x.shape[1:]), text=False)


def noise_targets(data: UnlearnData) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, weights)``: the forget classes (equal weights), else the labels present in D_f
    weighted by their counts there."""
    if data.forget_classes:
        labels = torch.tensor(sorted(set(data.forget_classes)), dtype=torch.long)
        return labels, torch.ones(len(labels))
    labels, counts = torch.unique(data.forget.tensors[1], return_counts=True)
    return labels.long(), counts.float()


def allocate_rows(n: int, weights: torch.Tensor) -> torch.Tensor:
    """Split ``n`` rows among labels in proportion to ``weights`` (largest remainder).

    When ``n >= len(weights)`` every label gets at least one row (a label whose share rounds
    to 0 takes it from the largest); otherwise the heaviest ``n`` labels get one row each.
    """
    k = len(weights)
    if n < k:
        counts = torch.zeros(k, dtype=torch.long)
        counts[torch.argsort(weights, descending=True, stable=True)[:n]] = 1
        return counts
    share = weights.double() / weights.sum() * n
    counts = share.floor().long().clamp_min(1)
    left = n - int(counts.sum())
    if left > 0:
        counts[torch.argsort(share - counts, descending=True, stable=True)[:left]] += 1
    for _ in range(-left):
        counts[int(torch.argmax(counts))] -= 1
    return counts


def random_noise(rows: int, space: NoiseSpace, gen: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """N(0, 1) noise, drawn from ``gen`` on the CPU so runs are reproducible across devices."""
    return torch.randn((rows, *space.shape), generator=gen).to(device)


def learn_noise(model: nn.Module, labels: torch.Tensor, space: NoiseSpace,
                cfg: NoiseLearningConfig, gen: torch.Generator,
                device: torch.device) -> tuple[torch.Tensor, float]:
    """Maximise the error on ``labels``: minimise ``-CE(model(N), y) + λ·mean_i ||N_i||²``.

    The model runs in ``cfg.noise_model_mode`` (train: BatchNorm running statistics move, as in
    the reference) and its weights get no gradient; only ``N`` is optimised (Adam). The model's
    mode is restored afterwards. Returns the noise and the final noise loss.
    """
    noise = random_noise(len(labels), space, gen, device).requires_grad_(True)
    y = labels.to(device)
    opt = torch.optim.Adam([noise], lr=cfg.noise_lr)
    was_training = model.training
    model.train(cfg.noise_model_mode == "train")
    loss = torch.zeros(())
    try:
        for _ in range(cfg.noise_steps):
            logits = space.logits(model, noise)
            loss = (-F.cross_entropy(logits, y)
                    + cfg.noise_lambda * noise.pow(2).flatten(1).sum(1).mean())
            (grad,) = torch.autograd.grad(loss, [noise])
            noise.grad = grad
            opt.step()
    finally:
        model.train(was_training)
    return noise.detach(), float(loss.item())


def retain_subsample(data: UnlearnData, per_class: int, gen: torch.Generator) -> TensorDataset:
    """Up to ``per_class`` random retain rows of every class present in D_r."""
    x, y = data.retain.tensors[0], data.retain.tensors[1]
    keep = []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    sel = torch.sort(torch.cat(keep)).values
    return TensorDataset(x[sel], y[sel])


def impair_repair(model: nn.Module, data: UnlearnData, cfg: ImpairRepairConfig,
                  ctx: UnlearnContext, noise: torch.Tensor, noise_y: torch.Tensor,
                  space: NoiseSpace, gen: torch.Generator,
                  extra: dict[str, float] | None = None) -> Iterator[EpochEnd]:
    """One impair epoch on (noise × copies) ∪ a retain subsample, then repair epochs on the
    subsample.

    The impair set is, in this order, ``noise_copies`` copies of the noise rows followed by the
    retain subsample (the reference's ``noisy_data``); the epoch visits it in batches shuffled
    by ``data.loader``. Image batches go through the model as one mixed batch (as in UNSIR:
    noise and real rows share BatchNorm statistics); text batches run the noise rows through
    ``forward_embeds`` and the real rows through ``forward`` and interleave the logits.
    """
    sub = retain_subsample(data, cfg.retain_per_class, gen)
    rx, ry = sub.tensors
    noise_y = noise_y.to(ctx.device)
    n_noise = len(noise) * cfg.noise_copies
    positions = TensorDataset(torch.arange(n_noise + len(rx)))

    opt = torch.optim.Adam(model.parameters(), lr=cfg.impair_lr)
    model.train()
    losses = []
    for (idx,) in data.loader(positions, cfg.batch_size, seed=ctx.seed):
        # Rows keep the loader's order within the batch, as a DataLoader over the reference's
        # noisy_data list would give them.
        is_noise = (idx < n_noise).to(ctx.device)
        nidx = (idx[idx < n_noise] % len(noise)).to(ctx.device)
        ridx = idx[idx >= n_noise] - n_noise
        xr, yr = rx[ridx].to(ctx.device), ry[ridx].to(ctx.device)
        y = torch.empty(len(idx), dtype=torch.long, device=ctx.device)
        y[is_noise], y[~is_noise] = noise_y[nidx], yr
        if space.text:
            logits = None
            if len(nidx):
                out = space.logits(model, noise[nidx])
                logits = out.new_empty((len(idx), out.shape[1]))
                logits[is_noise] = out
            if len(ridx):
                out = model(xr)
                if logits is None:
                    logits = out.new_empty((len(idx), out.shape[1]))
                logits[~is_noise] = out
            assert logits is not None  # a batch has at least one row
        else:
            x = noise.new_empty((len(idx), *noise.shape[1:]))
            x[is_noise], x[~is_noise] = noise[nidx], xr.to(noise.dtype)
            logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    yield EpochEnd(1, {"impair_loss": mean(losses), "noise_rows": float(len(noise)),
                       **(extra or {})})

    opt = torch.optim.Adam(model.parameters(), lr=cfg.repair_lr)
    for epoch in range(cfg.repair_epochs):
        repair_loss = ce_epoch(model, data.loader(sub, cfg.batch_size, seed=ctx.seed + 1 + epoch),
                               opt, ctx.device)
        yield EpochEnd(2 + epoch, {"repair_loss": repair_loss})
