"""Behaviour tests for UNSIR, USI(F)R, DNF, SFTC, neuron masking, SalUn and L1-sparse.

Workload: scikit-learn digits, all 10 classes, the 2-hidden-layer MLP of
``raysweep.testing.tiny_problem`` (80 train rows per class, 15 epochs: ~100% on D_f, ~96.7% on
held-out retained classes). ``tiny_problem`` puts classes 0-4 in ``val`` and 5-9 in ``test``, so
held-out accuracy here is measured on ``val ∪ test``. Each bound below states what a no-op
(the original model) would score, so it fails the test.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods import (
    UnlearnContext,
    UnlearnData,
    get_method,
    make_config,
    run_method,
)
from raysweep.methods._noise import allocate_rows, noise_targets
from raysweep.methods.neuron_masking import mean_input_activation
from raysweep.methods.salun import random_wrong_labels, saliency_mask
from raysweep.methods.sftc import biased_generator
from raysweep.methods.unsir import unsir_noise
from raysweep.methods.usifr import mixed_labels
from raysweep.models import ModelSpec
from raysweep.testing import TinyProblem, tiny_problem, tiny_text_problem
from raysweep.training import TrainConfig, predict_logits, seed_everything, train_model

CPU = torch.device("cpu")


def noise_cfg(name: str, model: str = "mlp") -> dict[str, object]:
    """Impair/repair scaled to the tiny workload (720 retain rows, not CIFAR's 45k): USI(F)R and
    DNF use 64-row noise batches repeated 4 times; UNSIR keeps its reference-default rows (the
    input channels: 1 per class here) repeated 4 times. Unlearned DNF noise is weaker per row,
    so it gets 8 copies on the MLP; the BatchNorm CNN takes one more repair epoch instead."""
    copies = 8 if (name == "dnf" and model == "mlp") else 4
    return {"batch_size": 32, "noise_batch_size": 64, "noise_copies": copies,
                "repair_epochs": 2 if model == "mlp" else 3}


def digits10(seed: int = 0, model: str = "mlp") -> TinyProblem:
    return tiny_problem(seed=seed, num_classes=10, n_per_class=80, model=model, train_epochs=15)


def with_forget_classes(prob: TinyProblem, classes: tuple[int, ...]) -> TinyProblem:
    """The same trained model with D_f = every training row of ``classes``."""
    d = prob.data
    x = torch.cat([d.forget.tensors[0], d.retain.tensors[0]])
    y = torch.cat([d.forget.tensors[1], d.retain.tensors[1]])
    f = torch.isin(y, torch.tensor(classes))
    data = UnlearnData(TensorDataset(x[f], y[f]), TensorDataset(x[~f], y[~f]), d.val, d.test,
                       d.num_classes, classes, d.batch_size)
    return TinyProblem(prob.model, data, prob.ctx)


def heldout(prob: TinyProblem) -> TensorDataset:
    (xv, yv), (xt, yt) = prob.data.val.tensors, prob.data.test.tensors
    return TensorDataset(torch.cat([xv, xt]), torch.cat([yv, yt]))


def class_accuracy(model: nn.Module, prob: TinyProblem) -> tuple[float, float, float]:
    """(held-out acc on forget classes, held-out acc on retained classes, acc on D_f)."""
    logits, y = predict_logits(model, heldout(prob), device=CPU)
    pred = logits.argmax(1)
    f = np.isin(y, prob.data.forget_classes)
    lf, yf = predict_logits(model, prob.data.forget, device=CPU)
    return (float((pred[f] == y[f]).mean()), float((pred[~f] == y[~f]).mean()),
            float((lf.argmax(1) == yf).mean()))


def unlearn(prob: TinyProblem, name: str, **overrides: object) -> nn.Module:
    model = prob.fresh_copy()
    run_method(name, model, prob.data, make_config(name, overrides), prob.ctx)
    return model


@pytest.fixture(scope="module")
def digits() -> TinyProblem:
    return digits10(seed=0)


@pytest.fixture(scope="module")
def digits_multi(digits: TinyProblem) -> TinyProblem:
    return with_forget_classes(digits, (0, 3, 7))


# --- UNSIR family -----------------------------------------------------------------------------


def assert_forgets(prob: TinyProblem, model: nn.Module, *, max_forget: float,
                   retain_margin: float) -> None:
    f0, r0, _ = class_accuracy(prob.model, prob)
    f1, r1, d1 = class_accuracy(model, prob)
    assert f0 >= 0.95 and r0 >= 0.95, "the original should know every class"
    assert f1 <= max_forget and d1 <= max_forget, (
        f"forget-class accuracy {f1:.3f} (D_f {d1:.3f}) should drop from {f0:.3f} "
        f"to <= {max_forget}")
    assert r1 >= r0 - retain_margin, (
        f"retained-class accuracy fell from {r0:.3f} to {r1:.3f} (margin {retain_margin})")


@pytest.mark.parametrize("name", ["unsir", "usifr", "dnf"])
def test_noise_methods_forget_one_class(digits: TinyProblem, name: str) -> None:
    # Measured (seed 0): forget 1.0 -> 0.0 / 0.0 / 0.013; retained 0.967 -> 0.944 for all three.
    assert_forgets(digits, unlearn(digits, name, **noise_cfg(name)), max_forget=0.2,
                   retain_margin=0.05)


@pytest.mark.parametrize("name", ["unsir", "usifr", "dnf"])
def test_noise_methods_forget_three_classes(digits_multi: TinyProblem, name: str) -> None:
    # Measured (seed 0, classes 0, 3, 7): forget 0.979 -> 0.0 / 0.0 / 0.004; retained 0.966 ->
    # 0.927 / 0.954 / 0.927.
    assert_forgets(digits_multi, unlearn(digits_multi, name, **noise_cfg(name)),
                   max_forget=0.2, retain_margin=0.06)


def test_unsir_keeps_channel_count_rows_by_default(digits_multi: TinyProblem) -> None:
    # The reference's impair set takes batch[0].size(0) rows of each learned batch: the input
    # channels (1 here), not the 32 learned.
    cfg = make_config("unsir", {"noise_batch_size": 32, "noise_steps": 2})
    noise, labels, _ = unsir_noise(digits_multi.fresh_copy(), digits_multi.data, cfg,
                                   digits_multi.ctx, torch.Generator().manual_seed(0))
    assert noise.shape == (3, 1, 8, 8) and labels.tolist() == [0, 3, 7]


def test_unsir_noise_batches_carry_their_own_class(digits_multi: TinyProblem) -> None:
    cfg = make_config("unsir", {"noise_batch_size": 32, "noise_rows": 32})
    model = digits_multi.fresh_copy()
    noise, labels, _ = unsir_noise(model, digits_multi.data, cfg, digits_multi.ctx,
                                   torch.Generator().manual_seed(0))
    classes = [0, 3, 7]
    assert noise.shape == (96, 1, 8, 8)
    block = torch.arange(96) // 32
    for i, c in enumerate(classes):
        # Labelled with its own class, not all class 0 (the reference notebook's bug) ...
        assert labels[block == i].tolist() == [c] * 32
    with torch.no_grad():
        probs = torch.softmax(model.eval()(noise), dim=1)
    for i, c in enumerate(classes):
        own, others = probs[block == i, c].mean(), probs[block != i, c].mean()
        # ... and optimised against that class: the model avoids c on block c far more than on
        # the blocks optimised against the other classes.
        assert own < 0.02 and own < others / 2, (c, float(own), float(others))


def test_usifr_learns_one_mixed_batch(digits_multi: TinyProblem) -> None:
    labels = mixed_labels(digits_multi.data, 64)
    assert len(labels) == 64
    assert torch.bincount(labels, minlength=10)[[0, 3, 7]].tolist() == [22, 21, 21]


def test_noise_targets_for_random_forgetting_follow_forget_labels() -> None:
    y = torch.tensor([1] * 6 + [4] * 3 + [9])
    one = TensorDataset(torch.zeros(1, 2), torch.tensor([0]))
    data = UnlearnData(TensorDataset(torch.zeros(10, 2), y),
                       TensorDataset(torch.zeros(2, 2), torch.tensor([0, 2])), one, one,
                       num_classes=10)
    labels, weights = noise_targets(data)
    assert labels.tolist() == [1, 4, 9] and weights.tolist() == [6, 3, 1]
    assert torch.bincount(mixed_labels(data, 20), minlength=10)[[1, 4, 9]].tolist() == [12, 6, 2]
    assert torch.bincount(mixed_labels(data, 5), minlength=10)[[1, 4, 9]].tolist() == [3, 1, 1]


def test_allocate_rows() -> None:
    assert allocate_rows(10, torch.tensor([1.0, 1.0, 1.0])).tolist() == [4, 3, 3]
    assert allocate_rows(5, torch.tensor([100.0, 1.0])).tolist() == [4, 1]   # each label >= 1
    assert allocate_rows(20, torch.tensor([6.0, 3.0, 1.0])).tolist() == [12, 6, 2]
    assert allocate_rows(2, torch.tensor([1.0, 5.0, 3.0])).tolist() == [0, 1, 1]


# --- SFTC -------------------------------------------------------------------------------------


def test_sftc_generator_prefers_the_true_label_when_c_is_0() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (2000,), generator=gen)
    logits, targets = biased_generator(labels, 10, 0.0, gen)
    assert torch.equal(targets, labels)
    assert (logits >= 0).all()
    assert torch.equal(logits.argmax(1), labels)
    top2 = logits.topk(2, dim=1).values
    assert (top2[:, 0] > top2[:, 1]).all()                       # strictly the argmax
    # The other classes keep their |N(0, 1)| logits (mean sqrt(2/pi) = 0.80) ...
    others = logits[torch.arange(len(labels))[:, None], torch.arange(10)[None, :]][
        torch.arange(10)[None, :] != labels[:, None]]
    assert abs(float(others.mean()) - 0.798) < 0.03
    # ... and the target is only nudged above them: a soft target, not a one-hot.
    assert float(torch.softmax(logits, 1).max(1).values.mean()) < 0.5


def test_sftc_generator_confusion_gives_random_labels() -> None:
    # c = 1 (default "unbiased", paper 004 and reference): plain |N(0, 1)| logits, no label.
    labels = torch.full((5000,), 3)
    logits, targets = biased_generator(labels, 10, 1.0, torch.Generator().manual_seed(1))
    assert targets is None and (logits >= 0).all()
    counts = torch.bincount(logits.argmax(1), minlength=10).float() / len(labels)
    assert float(counts.min()) > 0.08 and float(counts.max()) < 0.12   # argmax uniform
    # c = 1 with "random_label": every row biased towards a uniformly random label.
    gen = torch.Generator().manual_seed(1)
    logits, targets = biased_generator(labels, 10, 1.0, gen, "random_label")
    assert torch.equal(logits.argmax(1), targets)                # biased towards the new label
    counts = torch.bincount(targets, minlength=10).float() / len(targets)
    assert float(counts.min()) > 0.08 and float(counts.max()) < 0.12   # uniform over 10 classes
    # c = 0.5: exactly max(1, int(c * n)) rows are relabelled (a random label may equal the
    # truth).
    labels = torch.arange(1000) % 10
    _, targets = biased_generator(labels, 10, 0.5, torch.Generator().manual_seed(2))
    changed = float((targets != labels).float().mean())
    assert 0.5 * 0.8 < changed <= 0.5


def test_sftc_generator_is_reproducible() -> None:
    labels = torch.arange(50) % 7
    a = biased_generator(labels, 7, 0.3, torch.Generator().manual_seed(5))
    b = biased_generator(labels, 7, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_sftc_with_confusion_forgets_a_class(digits: TinyProblem) -> None:
    # c = 1 (Bad-Teaching-like targets on D_f), 4 epochs (paper 004's upper end).
    # Measured: forget 1.0 -> 0.15 (D_f 0.125); retained 0.967 -> 0.957.
    assert_forgets(digits, unlearn(digits, "sftc", confusion=1.0, epochs=4),
                   max_forget=0.3, retain_margin=0.03)


def test_sftc_default_lowers_forget_confidence_only(digits: TinyProblem) -> None:
    # c = 0 keeps the true label as the target's argmax: SFTC removes confidence, not labels.
    # Measured: mean max-softmax on D_f 0.997 -> 0.70, on D_r 0.98; retained accuracy 0.954.
    model = unlearn(digits, "sftc")

    def confidence(m: nn.Module, ds: TensorDataset) -> float:
        logits, _ = predict_logits(m, ds, device=CPU)
        return float(torch.softmax(torch.from_numpy(logits), 1).max(1).values.mean())

    assert confidence(digits.model, digits.data.forget) > 0.99
    assert confidence(model, digits.data.forget) < 0.85
    assert confidence(model, digits.data.retain) > 0.9
    _, r0, _ = class_accuracy(digits.model, digits)
    _, r1, _ = class_accuracy(model, digits)
    assert r1 >= r0 - 0.03


def noisy_digits(seed: int) -> TinyProblem:
    """Random forgetting (10% of 600 training rows) on digits with N(0, 0.5) pixel noise: the MLP
    memorises its training rows (loss ~0.01) but reaches only ~63% held-out accuracy (loss ~1.9),
    so the forget-set and test loss distributions start far apart."""
    from sklearn.datasets import load_digits

    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    x = x + 0.5 * torch.randn(x.shape, generator=gen)
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=gen)
    tr, te = perm[:600], perm[600:1200]
    fmask = torch.zeros(600, dtype=torch.bool)
    fmask[torch.randperm(600, generator=gen)[:60]] = True
    spec = ModelSpec("mlp", 10, in_chans=1, img_size=8)
    recipe = TrainConfig(epochs=40, lr=0.05, batch_size=32)
    original = spec.build(seed=seed)
    train_model(original, TensorDataset(x[tr], y[tr]), recipe, device=CPU, seed=seed)
    xtr, ytr = x[tr], y[tr]
    data = UnlearnData(TensorDataset(xtr[fmask], ytr[fmask]),
                       TensorDataset(xtr[~fmask], ytr[~fmask]),
                       TensorDataset(x[te[:300]], y[te[:300]]),
                       TensorDataset(x[te[300:]], y[te[300:]]), num_classes=10, batch_size=32)
    ctx = UnlearnContext(copy.deepcopy(original), spec, CPU, seed, recipe)
    return TinyProblem(original, data, ctx)


def loss_gap(model: nn.Module, prob: TinyProblem) -> tuple[float, float, float]:
    """(ROC AUC of "is a forget row" from -loss, mean forget loss, held-out accuracy)."""
    from sklearn.metrics import roc_auc_score

    def losses(ds: TensorDataset) -> tuple[np.ndarray, float]:
        logits, y = predict_logits(model, ds, device=CPU)
        ce = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y), reduction="none")
        return ce.numpy(), float((logits.argmax(1) == y).mean())

    (lf, _), (lt, acc_t) = losses(prob.data.forget), losses(heldout(prob))
    auc = roc_auc_score(np.r_[np.ones(len(lf)), np.zeros(len(lt))], -np.r_[lf, lt])
    return float(auc), float(lf.mean()), acc_t


def test_sftc_random_forgetting_moves_forget_losses_toward_test() -> None:
    # Measured (seed 0): AUC 0.72 -> 0.64, mean forget loss 0.010 -> 0.094 (test loss 1.8 -> 1.5),
    # held-out accuracy 0.638 -> 0.630. A no-op keeps AUC and forget loss unchanged.
    prob = noisy_digits(seed=0)
    auc0, lf0, acc0 = loss_gap(prob.model, prob)
    assert auc0 > 0.68 and lf0 < 0.03
    auc1, lf1, acc1 = loss_gap(unlearn(prob, "sftc", epochs=4), prob)
    assert auc1 <= auc0 - 0.04, (auc0, auc1)
    assert lf1 >= 4 * lf0, (lf0, lf1)
    assert acc1 >= acc0 - 0.04, (acc0, acc1)


# --- neuron masking, SalUn, L1-sparse ---------------------------------------------------------


def test_neuron_masking_zeroes_head_inputs_above_threshold(digits: TinyProblem) -> None:
    model = digits.fresh_copy()
    head = model.fc
    means, _ = mean_input_activation(model, [head], digits.data.forget, 256, CPU)
    expected = means[head] > 0.5
    assert 0 < int(expected.sum()) < len(expected)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = run_method("neuron-masking", model, digits.data, make_config("neuron-masking"),
                     digits.ctx)
    assert res.epochs == 1 and get_method("neuron-masking").one_shot
    zeroed = (head.weight == 0).all(dim=0)
    assert torch.equal(zeroed, expected)
    assert torch.equal(head.weight[:, ~expected], before["fc.weight"][:, ~expected])
    for k, v in model.state_dict().items():
        if k != "fc.weight":
            assert torch.equal(v, before[k]), k


def test_neuron_masking_ratio_rule_forgets_a_class(digits: TinyProblem) -> None:
    # Measured: forget 1.0 -> 0.0; retained 0.967 -> 0.892 (units tied to class 0 also help
    # some retained digits: masking is coarse, as paper 001 reports).
    model = unlearn(digits, "neuron-masking", rule="ratio", threshold=2.0)
    assert_forgets(digits, model, max_forget=0.2, retain_margin=0.1)


def test_salun_only_moves_salient_weights_and_forgets(digits: TinyProblem) -> None:
    model = digits.fresh_copy()
    masks = saliency_mask(model, digits.data.forget, 0.5, 256, CPU)
    n_total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.5 * n_total)
    run_method("salun", model, digits.data, make_config("salun", {"batch_size": 64, "epochs": 5}),
               digits.ctx)
    original = dict(digits.model.named_parameters())
    moved = 0
    for name, p in model.named_parameters():
        assert torch.equal(p[~masks[name]], original[name][~masks[name]]), name
        moved += int((p[masks[name]] != original[name][masks[name]]).sum())
    assert moved > 0.5 * round(0.5 * n_total)
    # Measured: forget 1.0 -> 0.0; retained 0.967 -> 0.956.
    assert_forgets(digits, model, max_forget=0.1, retain_margin=0.04)


def test_salun_random_labels_avoid_the_true_and_forgotten_classes() -> None:
    y = torch.tensor([0, 0, 3, 3, 5] * 40)
    out = random_wrong_labels(y, 6, (0, 3), torch.Generator().manual_seed(0))
    assert not torch.isin(out, torch.tensor([0, 3])).any()
    assert (out != y).all()
    assert set(out[y == 5].tolist()) == {1, 2, 4}   # uniform over the allowed classes
    assert set(out[y == 0].tolist()) == {1, 2, 4, 5}


def test_l1_sparse_shrinks_weights_and_decays_alpha(digits: TinyProblem) -> None:
    def l1(m: nn.Module) -> float:
        return sum(float(p.detach().abs().sum()) for p in m.parameters())

    def cfg(alpha: float):
        return make_config("l1-sparse", {"alpha": alpha, "batch_size": 64, "epochs": 3})

    plain = digits.fresh_copy()
    run_method("l1-sparse", plain, digits.data, cfg(0.0), digits.ctx)
    sparse = digits.fresh_copy()
    res = run_method("l1-sparse", sparse, digits.data, cfg(5e-3), digits.ctx)
    alphas = [e.metrics["alpha"] for e in res.history]
    assert alphas == sorted(alphas, reverse=True) and alphas[-1] == 0.0
    assert l1(sparse) < 0.97 * l1(plain)
    _, r0, _ = class_accuracy(digits.model, digits)
    _, r1, _ = class_accuracy(sparse, digits)
    assert r1 >= r0 - 0.03


# --- text models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_problem() -> TinyProblem:
    return tiny_text_problem(seed=0, n_per_class=16, train_epochs=12)


@pytest.mark.parametrize("name", ["unsir", "sftc"])
def test_text_model_smoke(text_problem: TinyProblem, name: str) -> None:
    prob = text_problem
    original = {k: v.clone() for k, v in prob.ctx.original.state_dict().items()}
    model = prob.fresh_copy()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = ({"batch_size": 16, "noise_batch_size": 16, "noise_copies": 2} if name == "unsir"
           else {"batch_size": 16, "confusion": 1.0})
    res = run_method(name, model, prob.data, make_config(name, cfg), prob.ctx)
    assert res.epochs == 2
    after = model.state_dict()
    assert any(not torch.equal(start[k], after[k]) for k in start)
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    assert all(torch.equal(v, prob.ctx.original.state_dict()[k]) for k, v in original.items())

    def forget_loss(m: nn.Module) -> float:
        logits, y = predict_logits(m, prob.data.forget, device=CPU)
        return float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))

    assert forget_loss(model) > forget_loss(prob.model) + 0.1


def test_unsir_text_noise_lives_in_embedding_space(text_problem: TinyProblem) -> None:
    cfg = make_config("unsir", {"noise_batch_size": 8, "noise_steps": 3})
    noise, labels, _ = unsir_noise(text_problem.fresh_copy(), text_problem.data, cfg,
                                   text_problem.ctx, torch.Generator().manual_seed(0))
    assert noise.shape == (8, 12, 32) and noise.dtype == torch.float32
    assert labels.tolist() == [0] * 8


# --- slower: more seeds and a BatchNorm CNN ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("model", ["mlp", "smallcnn"])
def test_forgetting_holds_across_seeds_and_models(seed: int, model: str) -> None:
    # The BatchNorm CNN needs a gentler impair (4 copies) and one more repair epoch; with 8
    # copies and 2 repairs UNSIR kept only 0.69-0.90 retained accuracy.
    # Measured forget / retained (original retained: mlp 0.960/0.964, smallcnn 0.979/0.981):
    #   mlp      seed 1: unsir 0.0/0.931 dnf 0.0/0.940  sftc(c=1) 0.138/0.964
    #            seed 2: unsir 0.0/0.921 dnf 0.062/0.956 sftc(c=1) 0.175/0.965
    #   smallcnn seed 1: unsir 0.0/0.956 dnf 0.0/0.971 sftc(c=1) 0.0/0.979
    #            seed 2: unsir 0.0/0.972 dnf 0.0/0.972 sftc(c=1) 0.0/0.981
    prob = digits10(seed=seed, model=model)
    for name in ("unsir", "usifr", "dnf"):
        assert_forgets(prob, unlearn(prob, name, **noise_cfg(name, model)), max_forget=0.2,
                       retain_margin=0.06)
    assert_forgets(prob, unlearn(prob, "sftc", confusion=1.0, epochs=4), max_forget=0.3,
                   retain_margin=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sftc_random_forgetting_across_seeds(seed: int) -> None:
    # Measured: seed 1 AUC 0.71 -> 0.64, seed 2 0.75 -> 0.67.
    prob = noisy_digits(seed=seed)
    auc0, lf0, acc0 = loss_gap(prob.model, prob)
    auc1, lf1, acc1 = loss_gap(unlearn(prob, "sftc", epochs=4), prob)
    assert auc1 <= auc0 - 0.04 and lf1 >= 4 * lf0 and acc1 >= acc0 - 0.04
