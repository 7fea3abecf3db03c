"""SSD, bad-teaching, SCRUB, NegGrad+, CF-k, EU-k and amnesiac: correctness and behaviour.

* SSD's Fisher diagonal against an analytic (autograd-free) gradient of a 2-layer MLP and a
  hand-written autograd loop on a CNN with BatchNorm; the dampening rule on known values.
* Behaviour on a real workload: sklearn digits, 10 classes, an MLP trained on 100 images per
  class, forgetting class 0. Each method must bring class-0 accuracy (train D_f and held-out)
  from ~1.0 to at most ``FORGET_MAX`` while keeping held-out accuracy on the nine retained classes
  within ``RETAIN_DROP`` of the original. A no-op keeps class-0 accuracy ≥ 0.94 (asserted), so it
  fails. The configs are the defaults scaled to 900 training images (smaller batches, larger
  lr where the default would take only a handful of steps); measured numbers are in the report.
* A smoke run of each method on a tiny BERT (``raysweep.testing.tiny_text_problem``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from raysweep.methods import UnlearnContext, UnlearnData, make_config, run_method
from raysweep.methods.amnesiac import random_wrong_labels
from raysweep.methods.cf_k import last_blocks
from raysweep.methods.ssd import dampen, fisher_diagonal
from raysweep.models import ModelSpec, model_blocks
from raysweep.testing import fast_config, tiny_text_problem
from raysweep.training import TrainConfig, predict_logits, train_model

CPU = torch.device("cpu")
FORGET_MAX = 0.2      # class-0 accuracy after unlearning (original: 0.95-1.0)
RETAIN_DROP = 0.03    # allowed drop of held-out accuracy on classes 1-9 (original: ~0.95)
SEEDS = (0, 1, 2)

# --------------------------------------------------------------------------------------------
# SSD: Fisher diagonal and dampening
# --------------------------------------------------------------------------------------------


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.drop = nn.Dropout(0.5)   # must be off while estimating importances (eval mode)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def _analytic_grads(model: TwoLayer, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient of the batch-mean CE, derived by hand (no autograd, no dropout)."""
    w1, b1 = model.fc1.weight.detach(), model.fc1.bias.detach()
    w2, b2 = model.fc2.weight.detach(), model.fc2.bias.detach()
    z1 = x @ w1.T + b1
    h = z1.clamp_min(0)
    z2 = h @ w2.T + b2
    dz2 = (torch.softmax(z2, 1) - F.one_hot(y, 3).to(z2.dtype)) / len(x)
    dz1 = (dz2 @ w2) * (z1 > 0).to(z1.dtype)
    return {"fc1.weight": dz1.T @ x, "fc1.bias": dz1.sum(0),
            "fc2.weight": dz2.T @ h, "fc2.bias": dz2.sum(0)}


def test_fisher_diagonal_matches_analytic_gradients() -> None:
    torch.manual_seed(0)
    model = TwoLayer().double().train()
    x = torch.randn(10, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=False)   # batches 4, 4, 2
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for xb, yb in loader:
        for n, g in _analytic_grads(model, xb, yb).items():
            expected[n] += g**2
    expected = {n: v / 3 for n, v in expected.items()}

    got = fisher_diagonal(model, loader, CPU)
    assert set(got) == set(expected)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-10, atol=1e-14)
    assert model.training, "fisher_diagonal must restore the model's mode"
    assert all(p.grad is None for p in model.parameters()), "fisher_diagonal must not leave grads"


def test_fisher_diagonal_uses_eval_mode_batchnorm() -> None:
    """A hand-written autograd loop (model.eval(), backward per batch) on a CNN with BatchNorm."""
    torch.manual_seed(1)
    model = ModelSpec("smallcnn", 3, in_chans=1, img_size=8, options={"width": 4}).build(seed=1)
    # Non-trivial running statistics, so eval-mode and train-mode BatchNorm differ.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 1, 8, 8) * 2 + 1)
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,))
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=False)
    reference = copy.deepcopy(model).eval()
    expected = {n: torch.zeros_like(p) for n, p in reference.named_parameters()}
    for xb, yb in loader:
        reference.zero_grad()
        F.cross_entropy(reference(xb), yb).backward()
        for n, p in reference.named_parameters():
            expected[n] += p.grad**2
    buffers_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    got = fisher_diagonal(model, loader, CPU)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n] / len(loader))
    for k, v in buffers_before.items():
        assert torch.equal(model.state_dict()[k], v), f"{k} changed: BatchNorm was in train mode"


def test_dampen_rule_on_known_values() -> None:
    def run(alpha: float, lam: float) -> tuple[torch.Tensor, int]:
        model = nn.Linear(5, 1, bias=False)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]))
        i_d = {"weight": torch.tensor([[1.0, 1.0, 0.0, 1.0, 2.0]])}
        i_f = {"weight": torch.tensor([[5.0, 20.0, 3.0, 0.0, 100.0]])}
        selected, total = dampen(model, i_f, i_d, alpha, lam)
        assert total == 5
        return model.weight.detach()[0], selected

    # α=10: selected where I_f > 10·I_D -> indices 1, 2, 4; β = min(1, I_D/I_f) = 1/20, 0, 1/50.
    w, n = run(10.0, 1.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.1, 0.0, 4.0, 0.1]))
    assert n == 3
    # λ=50: β = min(1, 50·I_D/I_f) -> 1 at index 1 (50/20) and 4 (100/100); index 2 still 0.
    w, n = run(10.0, 50.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 2.0, 0.0, 4.0, 5.0]))
    # α=0.1: index 0 (5 > 0.1) is selected too, β = 1/5; I_f = 0 is never selected.
    w, n = run(0.1, 1.0)
    torch.testing.assert_close(w, torch.tensor([0.2, 0.1, 0.0, 4.0, 0.1]))
    assert n == 4


def test_ssd_method_equals_fisher_plus_dampening() -> None:
    """End to end: importances on D_f and on D = D_r ∪ D_f, batches in dataset order (the
    reference's unshuffled loaders)."""
    prob = _digits(0)
    cfg = make_config("ssd", {"selection_weighting": 3.0, "batch_size": 64})
    model = copy.deepcopy(prob.original)
    run_method("ssd", model, prob.data, cfg, prob.ctx)

    expected = copy.deepcopy(prob.original).eval()
    xr, yr = prob.data.retain.tensors
    xf, yf = prob.data.forget.tensors
    full = TensorDataset(torch.cat([xr, xf]), torch.cat([yr, yf]))

    def importance(ds: TensorDataset) -> dict[str, torch.Tensor]:
        imp = {n: torch.zeros_like(p) for n, p in expected.named_parameters()}
        loader = prob.data.loader(ds, 64, shuffle=False)
        for xb, yb in loader:
            expected.zero_grad()
            F.cross_entropy(expected(xb), yb).backward()
            for n, p in expected.named_parameters():
                imp[n] += p.grad**2
        return {n: v / len(loader) for n, v in imp.items()}

    i_f, i_d = importance(prob.data.forget), importance(full)
    with torch.no_grad():
        for n, p in expected.named_parameters():
            sel = i_f[n] > 3.0 * i_d[n]
            p[sel] *= torch.clamp(i_d[n][sel] / i_f[n][sel], max=1.0)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     prob.original.state_dict().values()))
    for (n, a), b in zip(model.state_dict().items(), expected.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"{n} differs")


# --------------------------------------------------------------------------------------------
# Behaviour on digits (10 classes, forget class 0)
# --------------------------------------------------------------------------------------------


class Digits:
    def __init__(self, seed: int) -> None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
        y = torch.tensor(bunch.target)
        rng = np.random.default_rng(seed)
        train, held = [], []
        for c in range(10):
            idx = rng.permutation(np.flatnonzero(bunch.target == c))
            train += list(idx[:100])
            held += list(idx[100:])
        tr, ho = torch.tensor(train), torch.tensor(held)
        spec = ModelSpec("mlp", 10, in_chans=1, img_size=8)
        recipe = TrainConfig(epochs=10, lr=0.05, batch_size=32)
        self.original = spec.build(seed=seed)
        train_model(self.original, TensorDataset(x[tr], y[tr]), recipe, device=CPU, seed=seed)
        forget = y[tr] == 0
        ho = ho[torch.randperm(len(ho), generator=torch.Generator().manual_seed(seed))]
        half = len(ho) // 2
        self.heldout = TensorDataset(x[ho], y[ho])
        self.data = UnlearnData(
            forget=TensorDataset(x[tr][forget], y[tr][forget]),
            retain=TensorDataset(x[tr][~forget], y[tr][~forget]),
            val=TensorDataset(x[ho[:half]], y[ho[:half]]),
            test=TensorDataset(x[ho[half:]], y[ho[half:]]),
            num_classes=10, forget_classes=(0,), batch_size=32)
        self.ctx = UnlearnContext(original=copy.deepcopy(self.original), model_spec=spec,
                                  device=CPU, seed=seed, train_recipe=recipe)

    def accuracies(self, model: nn.Module) -> dict[str, float]:
        lf, yf = predict_logits(model, self.data.forget, device=CPU)
        lh, yh = predict_logits(model, self.heldout, device=CPU)
        ph = lh.argmax(1)
        return {"forget": float((lf.argmax(1) == yf).mean()),
                "heldout_forget_class": float((ph[yh == 0] == 0).mean()),
                "heldout_retain_classes": float((ph[yh != 0] == yh[yh != 0]).mean())}


_DIGITS: dict[int, Digits] = {}


def _digits(seed: int) -> Digits:
    if seed not in _DIGITS:
        _DIGITS[seed] = Digits(seed)
    return _DIGITS[seed]


BEHAVIOUR_CONFIGS = {
    # α 3, λ 1. With the reference's unshuffled batches, D_f's own batches are part of the
    # estimate on D, so I_f / I_D can hardly exceed |D| / |D_f| = 10 here: α 10 (default) or
    # paper 000's 15 select (almost) nothing on one class of ten; α 3-5 forgets it.
    "ssd": {"selection_weighting": 3.0},
    # Adam lr 1e-3 for 3 epochs: the default (1e-4, 1 epoch, batch 256) is 2 steps on 370 rows.
    "bad-teaching": {"lr": 1e-3, "epochs": 3, "batch_size": 32},
    # Smaller batches and lr 2e-3 (default 5e-4) so that 100 forget images give enough max-steps.
    "scrub": {"lr": 2e-3, "epochs": 6, "msteps": 3, "batch_size": 16, "forget_batch_size": 32},
    "amnesiac": {"lr": 1e-3, "epochs": 3, "batch_size": 32},
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(BEHAVIOUR_CONFIGS))
def test_forgets_class_and_keeps_the_rest(name: str, seed: int) -> None:
    prob = _digits(seed)
    before = prob.accuracies(prob.original)
    assert before["forget"] >= 0.95 and before["heldout_forget_class"] >= 0.94, before
    model = copy.deepcopy(prob.original)
    run_method(name, model, prob.data, make_config(name, BEHAVIOUR_CONFIGS[name]), prob.ctx)
    after = prob.accuracies(model)
    assert after["forget"] <= FORGET_MAX, (before, after)
    assert after["heldout_forget_class"] <= FORGET_MAX, (before, after)
    assert after["heldout_retain_classes"] >= before["heldout_retain_classes"] - RETAIN_DROP, \
        (before, after)


def test_eu_k_cannot_predict_the_forgotten_class() -> None:
    """The re-initialised head never sees class 0 again, so class 0 is gone (exact for the top)."""
    prob = _digits(0)
    before = prob.accuracies(prob.original)
    model = copy.deepcopy(prob.original)
    run_method("eu-k", model, prob.data, make_config("eu-k", {"batch_size": 32}), prob.ctx)
    after = prob.accuracies(model)
    assert after["heldout_forget_class"] <= FORGET_MAX
    assert after["heldout_retain_classes"] >= before["heldout_retain_classes"] - RETAIN_DROP


def test_cf_k_trains_only_the_last_blocks() -> None:
    prob = _digits(0)
    model = copy.deepcopy(prob.original)
    frozen, trained = last_blocks(model, 1, "cf-k")
    assert [type(b) for b in trained] == [type(b) for b in model_blocks(model)[-2:]]
    frozen_before = [copy.deepcopy(b.state_dict()) for b in frozen]
    trained_before = [copy.deepcopy(b.state_dict()) for b in trained]
    run_method("cf-k", model, prob.data, make_config("cf-k", {"k": 1, "batch_size": 32,
                                                              "epochs": 2}), prob.ctx)
    for block, state in zip(frozen, frozen_before):
        assert all(torch.equal(v, block.state_dict()[k]) for k, v in state.items())
    for block, state in zip(trained, trained_before):
        assert any(not torch.equal(v, block.state_dict()[k]) for k, v in state.items())
    assert all(p.requires_grad for p in model.parameters()), "requires_grad must be restored"
    with pytest.raises(Exception, match="k=3"):
        last_blocks(model, 3, "cf-k")


def test_neggrad_plus_raises_forget_loss_and_keeps_retain() -> None:
    """Two epochs (reference defaults: eval mode, L2 pull to θ₀; with momentum 0.9 and lr 0.02,
    as plain SGD at lr 0.01 barely moves in two epochs here): the forget CE climbs while
    retained classes hold. Measured: forget CE 0.041 -> 0.266, D_f accuracy 0.99 -> 0.62,
    held-out retained 0.954 -> 0.940. (Left to run, the unbounded ascent term diverges on this
    problem: the method's known fragility.)"""
    prob = _digits(0)
    before = prob.accuracies(prob.original)
    model = copy.deepcopy(prob.original)
    cfg = {"batch_size": 32, "forget_batch_size": 32, "epochs": 2, "momentum": 0.9, "lr": 0.02}
    res = run_method("neggrad+", model, prob.data, make_config("neggrad+", cfg), prob.ctx)
    ce = [e.metrics["forget_ce"] for e in res.history]
    assert ce[1] > 3 * ce[0], ce
    after = prob.accuracies(model)
    assert after["forget"] < before["forget"] - 0.1, (before, after)
    assert after["heldout_retain_classes"] >= before["heldout_retain_classes"] - RETAIN_DROP


def test_scrub_runs_exactly_msteps_max_passes() -> None:
    prob = _digits(0)
    cfg = make_config("scrub", {"epochs": 4, "msteps": 2, "batch_size": 64,
                                "forget_batch_size": 64})
    res = run_method("scrub", copy.deepcopy(prob.original), prob.data, cfg, prob.ctx)
    assert [("forget_kl" in e.metrics) for e in res.history] == [True, True, False, False]


def test_amnesiac_labels_are_wrong_and_never_a_forgotten_class() -> None:
    y = torch.tensor([0, 1, 2, 3] * 50)
    out = random_wrong_labels(y, 5, seed=3)
    assert (out != y).all() and out.min() >= 0 and out.max() <= 4
    assert set(out.tolist()) == {0, 1, 2, 3, 4}             # uniform over the other labels
    cls = random_wrong_labels(torch.tensor([1, 3] * 40), 6, (1, 3), seed=0)
    assert not np.isin(cls.numpy(), [1, 3]).any() and set(cls.tolist()) == {0, 2, 4, 5}
    assert torch.equal(out, random_wrong_labels(y, 5, seed=3))


# --------------------------------------------------------------------------------------------
# Text smoke test (tiny BERT)
# --------------------------------------------------------------------------------------------

TEXT_METHODS = ["ssd", "bad-teaching", "scrub", "neggrad+", "cf-k", "eu-k", "amnesiac"]


@pytest.fixture(scope="module")
def text_problem():
    return tiny_text_problem(seed=0)


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_runs_on_text_model(name: str, text_problem) -> None:
    prob = text_problem
    model = prob.fresh_copy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    overrides = {"epochs": 1} if name in {"scrub", "neggrad+", "cf-k", "eu-k", "amnesiac"} else {}
    if name == "ssd":
        # D = 48 retain + 24 forget rows in 16-row batches, dataset order: I_f / I_D < 2.5.
        overrides = {"selection_weighting": 1.0}
    res = run_method(name, model, prob.data, fast_config(name, **overrides), prob.ctx)
    assert res.epochs >= 1
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    logits, _ = predict_logits(model, prob.data.test, device=CPU)
    assert np.isfinite(logits).all()
