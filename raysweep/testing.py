"""Reusable fixtures and the method conformance check (like sklearn's ``check_estimator``).

Third-party methods can run ``check_method("mymethod")`` in their own tests.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods._base import (
    UnlearnContext, UnlearnData, get_method, make_config, run_method,
)
from raysweep.models import ModelSpec
from raysweep.training import TrainConfig, resolve_device, seed_everything, train_model

__all__ = ["TinyProblem", "tiny_problem", "check_method", "fast_config"]


@dataclass
class TinyProblem:
    model: nn.Module          # the trained "original" (do not modify: copy it)
    data: UnlearnData
    ctx: UnlearnContext

    def fresh_copy(self) -> nn.Module:
        return copy.deepcopy(self.model)


def tiny_problem(*, seed: int = 0, n_per_class: int = 16, num_classes: int = 4,
                 forget_class: int | None = 0, model: str = "mlp", img_size: int = 8,
                 train_epochs: int = 8) -> TinyProblem:
    """A trained tiny classifier on scikit-learn digits (first ``num_classes`` classes).

    ``forget_class=None`` gives a random 25% forget set instead of class forgetting.
    """
    from sklearn.datasets import load_digits

    seed_everything(seed)
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    if img_size != 8:
        x = torch.nn.functional.interpolate(x, size=(img_size, img_size), mode="bilinear")
    y = torch.tensor(bunch.target, dtype=torch.long)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(bunch.target == c))
        train_idx += list(idx[:n_per_class])
        test_idx += list(idx[n_per_class: 2 * n_per_class])
    tr, te = torch.tensor(train_idx), torch.tensor(test_idx)
    xtr, ytr = x[tr], y[tr]
    if forget_class is None:
        fmask = torch.zeros(len(ytr), dtype=torch.bool)
        fmask[torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))[: len(ytr) // 4]] = True
        forget_classes: tuple[int, ...] = ()
    else:
        fmask = ytr == forget_class
        forget_classes = (forget_class,)
    device = resolve_device("cpu")
    spec = ModelSpec(model, num_classes, in_chans=1, img_size=img_size)
    recipe = TrainConfig(epochs=train_epochs, lr=0.05, batch_size=16)
    original = spec.build(seed=seed)
    train_model(original, TensorDataset(xtr, ytr), recipe, device=device, seed=seed)
    # Shuffle the held-out rows so val and test both hold every class.
    te = te[torch.randperm(len(te), generator=torch.Generator().manual_seed(seed))]
    half = len(te) // 2
    data = UnlearnData(
        forget=TensorDataset(xtr[fmask], ytr[fmask]),
        retain=TensorDataset(xtr[~fmask], ytr[~fmask]),
        val=TensorDataset(x[te[:half]], y[te[:half]]),
        test=TensorDataset(x[te[half:]], y[te[half:]]),
        num_classes=num_classes, forget_classes=forget_classes, batch_size=16,
    )
    ctx = UnlearnContext(original=copy.deepcopy(original), model_spec=spec, device=device,
                         seed=seed, train_recipe=recipe)
    return TinyProblem(original, data, ctx)


def fast_config(name: str, **overrides: object):  # noqa: ANN201
    """The method's default config with small batch sizes (tiny data), plus overrides."""
    info = get_method(name)
    values: dict[str, object] = {}
    for field in info.config.model_fields:
        if "batch" in field:
            values[field] = 16
    values.update(overrides)
    return make_config(name, values)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def check_method(name: str, *, seed: int = 0) -> None:
    """Assert the method contract on a tiny problem; raises ``AssertionError`` on a violation."""
    info = get_method(name)
    prob = tiny_problem(seed=seed)
    before_original = _params(prob.ctx.original)
    cfg = fast_config(name)

    def one_run() -> tuple[nn.Module, int]:
        p = tiny_problem(seed=seed)
        m = p.fresh_copy()
        res = run_method(name, m, p.data, cfg, p.ctx)
        return m, res.epochs

    model = prob.fresh_copy()
    start = _params(model)
    res = run_method(name, model, prob.data, cfg, prob.ctx)
    assert res.epochs >= 1, f"{name} yielded nothing"
    if info.one_shot:
        assert res.epochs == 1, f"{name} is one-shot but yielded {res.epochs} times"
    after = _params(model)
    assert any(not torch.equal(a, b) for a, b in zip(start, after)), f"{name} left the weights unchanged"
    assert all(torch.isfinite(t.float()).all() for t in after), f"{name} produced non-finite weights"
    assert all(torch.equal(a, b) for a, b in zip(before_original, _params(prob.ctx.original))), \
        f"{name} modified ctx.original"
    # Budget: the runner stops the generator after one epoch.
    capped = run_method(name, prob.fresh_copy(), prob.data, cfg, prob.ctx, max_epochs=1)
    assert capped.epochs == 1
    # Determinism under a seed.
    m1, _ = one_run()
    m2, _ = one_run()
    assert all(torch.equal(a, b) for a, b in zip(_params(m1), _params(m2))), f"{name} is not deterministic"


# --- Text fixtures: a tiny BERT on synthetic token sequences (no download, ~1 s on CPU) -------

__all__ += ["TinyTextSpec", "tiny_text_problem"]


def _tiny_bert(num_classes: int, vocab_size: int, hidden: int, layers: int, seq_len: int,
               seed: int | None) -> nn.Module:
    from types import SimpleNamespace

    from transformers import BertConfig, BertModel

    from raysweep.models.text import TextClassifier

    if seed is not None:
        torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=max(16, seq_len), pad_token_id=0)
    encoder = BertModel(config, add_pooling_layer=False)
    # A stub tokenizer: the data are token ids already; only ``pad_token_id`` is read.
    return TextClassifier(encoder, SimpleNamespace(pad_token_id=0), num_classes,
                          max_length=seq_len)


@dataclass(frozen=True)
class TinyTextSpec(ModelSpec):
    """Rebuilds the tiny BERT of :func:`tiny_text_problem` (it has no model-registry entry),
    so ``ctx.fresh_model()`` works for methods that need a random twin."""

    vocab_size: int = 100
    hidden: int = 32
    layers: int = 2
    seq_len: int = 12

    def build(self, *, pretrained: bool | None = None, seed: int | None = None) -> nn.Module:
        return _tiny_bert(self.num_classes, self.vocab_size, self.hidden, self.layers,
                          self.seq_len, seed)


def tiny_text_problem(*, seed: int = 0, n_per_class: int = 24, num_classes: int = 3,
                      forget_class: int | None = 0, vocab_size: int = 100, seq_len: int = 12,
                      hidden: int = 32, layers: int = 2, train_epochs: int = 15) -> TinyProblem:
    """A trained tiny BERT (``TextClassifier``, hidden 32, 2 layers, vocab 100) on synthetic text.

    Each class owns a few keyword tokens; a sequence is random filler tokens with two or three
    keywords of its class, padded with id 0 (the stub tokenizer's ``pad_token_id``) to
    ``seq_len``. ``forget_class=None`` gives a random 25% forget set. ``ctx.is_text`` is True.
    """
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    n_keywords = 4
    first_filler = 1 + num_classes * n_keywords
    if first_filler + 8 > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is too small for {num_classes} classes "
                         f"(need at least {first_filler + 8})")

    def sample(n: int, label: int) -> torch.Tensor:
        ids = torch.zeros(n, seq_len, dtype=torch.long)
        for i in range(n):
            length = int(torch.randint(6, seq_len + 1, (1,), generator=gen))
            ids[i, :length] = torch.randint(first_filler, vocab_size, (length,), generator=gen)
            k = int(torch.randint(2, 4, (1,), generator=gen))
            pos = torch.randperm(length, generator=gen)[:k]
            kw = 1 + label * n_keywords + torch.randint(0, n_keywords, (k,), generator=gen)
            ids[i, pos] = kw
        return ids

    xs, ys = [], []
    for c in range(num_classes):
        xs.append(sample(2 * n_per_class, c))
        ys.append(torch.full((2 * n_per_class,), c, dtype=torch.long))
    x_all, y_all = torch.cat(xs), torch.cat(ys)
    is_train = torch.zeros(len(y_all), dtype=torch.bool)
    for c in range(num_classes):
        is_train[c * 2 * n_per_class: c * 2 * n_per_class + n_per_class] = True
    xtr, ytr = x_all[is_train], y_all[is_train]
    held = torch.nonzero(~is_train).flatten()
    held = held[torch.randperm(len(held), generator=gen)]    # val and test both hold every class
    half = len(held) // 2
    if forget_class is None:
        fmask = torch.zeros(len(ytr), dtype=torch.bool)
        fmask[torch.randperm(len(ytr), generator=gen)[: len(ytr) // 4]] = True
        forget_classes: tuple[int, ...] = ()
    else:
        fmask = ytr == forget_class
        forget_classes = (forget_class,)
    device = resolve_device("cpu")
    spec = TinyTextSpec("tiny-bert", num_classes, in_chans=0, img_size=0, vocab_size=vocab_size,
                        hidden=hidden, layers=layers, seq_len=seq_len)
    recipe = TrainConfig(epochs=train_epochs, lr=2e-3, optimizer="adam", weight_decay=0.0,
                         batch_size=16, schedule="constant")
    original = spec.build(seed=seed)
    train_model(original, TensorDataset(xtr, ytr), recipe, device=device, seed=seed)
    data = UnlearnData(
        forget=TensorDataset(xtr[fmask], ytr[fmask]),
        retain=TensorDataset(xtr[~fmask], ytr[~fmask]),
        val=TensorDataset(x_all[held[:half]], y_all[held[:half]]),
        test=TensorDataset(x_all[held[half:]], y_all[held[half:]]),
        num_classes=num_classes, forget_classes=forget_classes, batch_size=16,
    )
    ctx = UnlearnContext(original=copy.deepcopy(original), model_spec=spec, device=device,
                         seed=seed, train_recipe=recipe, is_text=True)
    return TinyProblem(original, data, ctx)
