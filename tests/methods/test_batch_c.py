"""The NeurIPS 2023 challenge methods (paper 002): divergence, gradient-mask, deviation, pruning,
rotate, pseudo-label and distillation.

* Mechanism tests, one per method: the KL-to-uniform warm-up and the contrastive loss; the
  exact fraction and selection rule of the gradient re-initialisation and its gradient mask;
  the noise scale of deviation (0.6 once, 0.005 before the last epoch); 99% global L1 pruning
  and the re-initialisation of exactly the pruned weights; kernel transposition (and, on an
  image MLP, exact equivalence with transposing the input); the pseudo-labelling rule; the
  reset of the first layer and the head in distillation.
* Behaviour on a real workload: sklearn digits (8x8), 10 classes, ``smallcnn`` trained on 50
  images per class, forgetting class 0. The problem has ~28 retain steps per epoch where
  CIFAR-10 has ~700, so where a default learning rate would barely move the model the test
  raises it (stated per test). Margins are per method: paper 002 reports rotate and pruning
  lowering validation accuracy and deviation/distillation keeping it; it makes no
  class-forgetting claim for gradient-mask, which is tested on its mechanism only.
* Text models: the methods that support them run on a tiny BERT; deviation and rotate refuse.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods import UnsupportedModelError, make_config, run_method
from raysweep.methods._challenge import classifier_head, first_layer, new_init, weight_layers
from raysweep.methods.deviation import add_weight_noise
from raysweep.methods.distillation import reset_layer_names
from raysweep.methods.divergence import contrastive_forget_loss, uniform_kl
from raysweep.methods.gradient_mask import forget_retain_gradients, reinit_by_gradient, select_mask
from raysweep.methods.pruning import prunable, prune_and_reinit
from raysweep.methods.pseudo_label import pseudo_labels
from raysweep.methods.rotate import rotate_kernels
from raysweep.testing import TinyProblem, fast_config, tiny_problem, tiny_text_problem
from raysweep.training import predict_logits

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits() -> TinyProblem:
    """smallcnn on digits, 10 classes x 50 images, class 0 forgotten (original: ~0.98 held-out)."""
    return tiny_problem(model="smallcnn", n_per_class=50, num_classes=10, forget_class=0)


@pytest.fixture(scope="module")
def mlp() -> TinyProblem:
    return tiny_problem(seed=0)


def _acc(model: nn.Module, ds: TensorDataset, mask: torch.Tensor | None = None) -> float:
    logits, y = predict_logits(model, ds, device=CPU)
    hit = logits.argmax(1) == y
    if mask is not None:
        hit = hit[mask.numpy()]
    return float(hit.mean())


def _accuracies(model: nn.Module, prob: TinyProblem) -> dict[str, float]:
    d = prob.data
    held = TensorDataset(torch.cat([d.val.tensors[0], d.test.tensors[0]]),
                         torch.cat([d.val.tensors[1], d.test.tensors[1]]))
    is_forget = held.tensors[1] == 0
    return {"forget": _acc(model, d.forget), "retain": _acc(model, d.retain),
            "held_retain": _acc(model, held, ~is_forget),
            "held_forget": _acc(model, held, is_forget)}


def _run(name: str, prob: TinyProblem, **overrides: object) -> tuple[nn.Module, dict[str, float]]:
    model = prob.fresh_copy()
    run_method(name, model, prob.data, make_config(name, overrides), prob.ctx)
    return model, _accuracies(model, prob)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# divergence (1st place)
# --------------------------------------------------------------------------------------------


def test_divergence_losses() -> None:
    assert uniform_kl(torch.zeros(4, 5)).item() == pytest.approx(0.0, abs=1e-7)
    assert uniform_kl(torch.tensor([[10.0, 0, 0, 0, 0]])).item() > 1.0
    retain = torch.randn(7, 5)
    # Zero forget logits are equally similar to every retain output: the loss is at its
    # minimum, log(n_retain); aligning with one retain output raises it.
    at_minimum = contrastive_forget_loss(torch.zeros(3, 5), retain, 1.15).item()
    assert at_minimum == pytest.approx(math.log(7))
    assert contrastive_forget_loss(retain[:1] * 5, retain, 1.15).item() > math.log(7) + 0.5


def test_divergence_warmup_pulls_forget_outputs_to_uniform(mlp: TinyProblem) -> None:
    model = mlp.fresh_copy()
    xf = mlp.data.forget.tensors[0]
    with torch.no_grad():
        before = uniform_kl(model(xf)).item()
    # Only the warm-up moves the weights (the other two phases get a negligible lr); forget
    # batches of 2 give it 8 steps on this 16-image forget set.
    cfg = fast_config("divergence", epochs=1, forget_lr=1e-12, retain_lr=1e-12,
                      forget_batch_size=2)
    run_method("divergence", model, mlp.data, cfg, mlp.ctx)
    with torch.no_grad():
        after = uniform_kl(model(xf)).item()
    assert after < 0.5 * before


def test_divergence_forgets_class(digits: TinyProblem) -> None:
    base = _accuracies(digits.model, digits)
    _, acc = _run("divergence", digits, batch_size=16, forget_batch_size=16)   # 8 epochs
    assert base["held_forget"] >= 0.9
    assert acc["held_forget"] <= base["held_forget"] - 0.25      # measured 0.96 -> 0.56
    assert acc["forget"] <= 0.8                                    # measured 1.00 -> 0.66
    assert acc["held_retain"] >= base["held_retain"] - 0.05       # measured 0.984 -> 0.962


# --------------------------------------------------------------------------------------------
# gradient-mask (2nd place)
# --------------------------------------------------------------------------------------------


def test_select_mask_picks_exact_count_smallest() -> None:
    g = torch.tensor([[0.5, -0.1, 3.0], [-2.0, 0.05, 1.0]])
    assert select_mask(g, 0.5).tolist() == [[True, True, False], [False, True, False]]
    assert select_mask(g, 0.5, "largest").tolist() == [[False, False, True], [True, False, True]]
    assert int(select_mask(torch.randn(10, 7), 0.3).sum()) == round(0.3 * 70)


def test_gradient_mask_reinits_exact_fraction_and_freezes_the_rest(digits: TinyProblem) -> None:
    original = digits.model
    model = digits.fresh_copy()
    # keep_grad_scale=0 and no weight decay: weights outside the mask must not move at all,
    # so every changed weight is one the method chose to re-initialise.
    cfg = fast_config("gradient-mask", keep_grad_scale=0.0, weight_decay=0.0, lr=0.01)
    grads = forget_retain_gradients(copy.deepcopy(original), digits.data, digits.ctx,
                                    cfg.grad_batch_size)
    run_method("gradient-mask", model, digits.data, cfg, digits.ctx)
    before, after = dict(original.named_modules()), dict(model.named_modules())
    layers = weight_layers(model)
    assert [n for n, _ in layers] == ["features1.0", "features2.0"]   # the two Conv2d
    for name, m in layers:
        changed = after[name].weight.detach() != before[name].weight.detach()
        expected = select_mask(grads[name], 0.3, "smallest")
        assert int(changed.sum()) == round(0.3 * m.weight.numel())
        assert torch.equal(changed, expected)
    for m in model.modules():     # the gradient hooks were removed
        for p in m.parameters(recurse=False):
            assert not p._backward_hooks


def test_gradient_mask_reinit_breaks_then_finetune_recovers(digits: TinyProblem) -> None:
    base = _accuracies(digits.model, digits)
    broken = digits.fresh_copy()
    reinit_by_gradient(broken, digits.data, make_config("gradient-mask"), digits.ctx)
    hit = _accuracies(broken, digits)
    assert hit["forget"] <= 0.2 and hit["retain"] <= 0.8          # measured 0.02 and 0.54
    _, acc = _run("gradient-mask", digits, batch_size=16, lr=0.01)
    assert acc["held_retain"] >= base["held_retain"] - 0.05       # measured 0.98
    # No class-forgetting claim (paper 002 studies random forgetting): fine-tuning on D_r
    # through the untouched head brings class 0 back here (measured forget accuracy 1.0).


def test_gradient_mask_falls_back_to_hidden_linears_without_conv(mlp: TinyProblem) -> None:
    names = [n for n, _ in weight_layers(mlp.model)]
    assert names == ["hidden1.1", "hidden2.0"]      # every Linear but the head ``fc``


# --------------------------------------------------------------------------------------------
# deviation (3rd place)
# --------------------------------------------------------------------------------------------


def test_deviation_noise_is_absolute_sigma_on_first_conv(digits: TinyProblem) -> None:
    model = digits.fresh_copy()
    before = _state(model)
    add_weight_noise(model, "first", 0.6, torch.Generator().manual_seed(0))
    after = _state(model)
    diff = after["features1.0.weight"] - before["features1.0.weight"]
    assert diff.std().item() == pytest.approx(0.6, abs=0.08)     # 288 draws
    assert diff.mean().abs().item() < 0.1
    assert all(torch.equal(before[k], after[k]) for k in before if k != "features1.0.weight")
    add_weight_noise(model, "all", 0.6, torch.Generator().manual_seed(0))
    assert not torch.equal(_state(model)["features2.0.weight"], before["features2.0.weight"])


def test_deviation_final_noise_before_last_epoch(digits: TinyProblem) -> None:
    model = digits.fresh_copy()
    before = _state(model)
    cfg = fast_config("deviation", epochs=2, sigma=0.0, final_sigma=0.005, lr=1e-12,
                      weight_decay=0.0)
    run_method("deviation", model, digits.data, cfg, digits.ctx)
    after = _state(model)
    diff = after["features1.0.weight"] - before["features1.0.weight"]
    assert diff.std().item() == pytest.approx(0.005, rel=0.2)
    assert torch.allclose(after["features2.0.weight"], before["features2.0.weight"], atol=1e-8)


def test_deviation_forgets_some_and_keeps_accuracy(digits: TinyProblem) -> None:
    base = _accuracies(digits.model, digits)
    _, acc = _run("deviation", digits, batch_size=16)              # paper defaults otherwise
    assert acc["forget"] <= 0.9                                    # measured 1.00 -> 0.74
    assert acc["held_retain"] >= base["held_retain"] - 0.12       # measured 0.984 -> 0.907


# --------------------------------------------------------------------------------------------
# pruning (4th place)
# --------------------------------------------------------------------------------------------


def test_pruning_zeroes_99_percent_globally_by_magnitude(digits: TinyProblem) -> None:
    original = digits.model
    model = digits.fresh_copy()
    pruned = prune_and_reinit(model, 0.99, reinit=False)
    flat_new = torch.cat([getattr(m, a).detach().flatten() for m, a in prunable(model)])
    flat_old = torch.cat([getattr(m, a).detach().flatten() for m, a in prunable(original)])
    n_keep = round(0.01 * flat_old.numel())
    assert pruned == pytest.approx(0.99, abs=1e-3)
    assert int((flat_new != 0).sum()) == n_keep
    kept = flat_new != 0
    assert torch.equal(flat_new[kept], flat_old[kept])
    assert flat_old[kept].abs().min() >= flat_old[~kept].abs().max()   # global L1 ranking
    # BatchNorm is not pruned.
    assert torch.equal(model.features1[1].weight, original.features1[1].weight)


def test_pruning_reinit_touches_exactly_the_pruned_weights(digits: TinyProblem) -> None:
    original = digits.model
    zeroed = digits.fresh_copy()
    prune_and_reinit(zeroed, 0.99, reinit=False)
    model = digits.fresh_copy()
    prune_and_reinit(model, 0.99, reinit=True, gen=torch.Generator().manual_seed(0))
    layers = zip(prunable(model), prunable(zeroed), prunable(original), strict=True)
    for (m, attr), (z, _), (o, _) in layers:
        new, kept, old = getattr(m, attr), getattr(z, attr) != 0, getattr(o, attr)
        assert torch.equal(new[kept], old[kept])
        if attr == "weight":
            fan_in = new.shape[1] * (new[0, 0].numel() if new.dim() > 2 else 1)
            assert (new[~kept] != 0).all() and new[~kept].abs().max() <= 1 / math.sqrt(fan_in)
        else:
            assert (new[~kept] == 0).all()          # pruned biases stay zero


def test_pruning_forgets_class(digits: TinyProblem) -> None:
    base = _accuracies(digits.model, digits)
    _, acc = _run("pruning", digits, batch_size=16, lr=1e-3)      # default 5e-4: too few steps
    assert acc["forget"] <= 0.1 and acc["held_forget"] <= 0.1     # measured 0.0 and 0.0
    assert acc["held_retain"] >= base["held_retain"] - 0.06       # measured 0.984 -> 0.973


# --------------------------------------------------------------------------------------------
# rotate (5th place)
# --------------------------------------------------------------------------------------------


def test_rotate_transposes_every_conv_kernel(digits: TinyProblem) -> None:
    model = digits.fresh_copy()
    assert rotate_kernels(model, 1, 8) == 2
    old = dict(digits.model.named_modules())
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert torch.equal(m.weight, old[name].weight.transpose(2, 3))


def test_rotate_mlp_computes_the_original_on_transposed_images(mlp: TinyProblem) -> None:
    model = mlp.fresh_copy().eval()
    rotate_kernels(model, 1, 8)
    x = mlp.data.test.tensors[0]
    with torch.no_grad():
        assert torch.allclose(model(x), mlp.model.eval()(x.transpose(2, 3)), atol=1e-5)
        assert not torch.allclose(model(x), mlp.model(x), atol=1e-3)


def test_rotate_forgets_class(digits: TinyProblem) -> None:
    base = _accuracies(digits.model, digits)
    _, acc = _run("rotate", digits, batch_size=16, lr=5e-3)       # default 1e-3: too few steps
    assert acc["forget"] <= 0.1 and acc["held_forget"] <= 0.1     # measured 0.0 and 0.0
    assert acc["held_retain"] >= base["held_retain"] - 0.06       # measured 0.984 -> 0.958


# --------------------------------------------------------------------------------------------
# pseudo-label (5th place, with rotate)
# --------------------------------------------------------------------------------------------


def test_pseudo_label_rule() -> None:
    y = torch.tensor([0, 0, 0, 0, 1])
    tuned = torch.tensor([0, 0, 0, 2, 1])       # right, right, right, wrong, right
    confident_wrong = [0.0, 9.0, 0.0]            # scratch says class 1 with low entropy
    unsure_wrong = [0.0, 0.1, 0.0]               # scratch says class 1 with high entropy
    scratch = torch.tensor([confident_wrong, unsure_wrong, [9.0, 0, 0], confident_wrong,
                            [0.0, 0.0, 9.0]])
    got = pseudo_labels(tuned, scratch, y, entropy_threshold=0.5)
    # swapped only where tuned is right and scratch is confidently wrong
    assert got.tolist() == [1, 0, 0, 2, 2]
    assert pseudo_labels(tuned, scratch, y, entropy_threshold=1.0).tolist() == [1, 1, 0, 2, 2]


def test_pseudo_label_forgets_class(digits: TinyProblem) -> None:
    base = _accuracies(digits.model, digits)
    model = digits.fresh_copy()
    cfg = make_config("pseudo-label", {"batch_size": 16, "lr": 0.01, "epochs": 5})
    res = run_method("pseudo-label", model, digits.data, cfg, digits.ctx)
    stats = res.history[0].metrics
    assert stats["finetuned_forget_acc"] >= 0.9 and stats["scratch_forget_acc"] <= 0.1
    assert stats["pseudo_label_acc"] <= 0.2     # most class-0 images get the scratch label
    acc = _accuracies(model, digits)
    assert acc["forget"] <= 0.1 and acc["held_forget"] <= 0.1     # measured 0.0 and 0.0
    assert acc["held_retain"] >= base["held_retain"] - 0.06       # measured 0.984 -> 0.958


# --------------------------------------------------------------------------------------------
# distillation (6th place)
# --------------------------------------------------------------------------------------------


def test_distillation_resets_first_layer_and_head(mlp: TinyProblem) -> None:
    assert reset_layer_names(mlp.model, False) == ["hidden1.1", "fc"]
    model = mlp.fresh_copy()
    cfg = fast_config("distillation", warmup_epochs=0, epochs=1, lr=1e-12, weight_decay=0.0)
    run_method("distillation", model, mlp.data, cfg, mlp.ctx)
    fresh, orig, got = _state(new_init(mlp.ctx)), _state(mlp.model), _state(model)
    for k in got:
        ref = fresh[k] if k.startswith(("hidden1.1.", "fc.")) else orig[k]
        assert torch.allclose(got[k], ref, atol=1e-8), k
    # a reset is a new draw, not the original's own initialisation
    original_init = mlp.ctx.model_spec.build(seed=mlp.ctx.seed)
    assert not torch.allclose(fresh["fc.weight"], _state(original_init)["fc.weight"])


def test_distillation_layer_choice_on_cnn(digits: TinyProblem) -> None:
    assert reset_layer_names(digits.model, False) == ["features1.0", "fc"]
    assert first_layer(digits.model)[0] == "features1.0"
    assert classifier_head(digits.model)[0] == "fc"


def test_distillation_forgets_class(digits: TinyProblem) -> None:
    base = _accuracies(digits.model, digits)
    # lr 1e-2 instead of 9e-4 / 1e-3, 5 epochs instead of 3: the reset head must be relearnt
    # from ~28 steps per epoch.
    _, acc = _run("distillation", digits, batch_size=16, lr=0.01, warmup_lr=0.01, epochs=5)
    assert acc["forget"] <= 0.1 and acc["held_forget"] <= 0.1     # measured 0.0 and 0.0
    assert acc["held_retain"] >= base["held_retain"] - 0.06       # measured 0.984 -> 0.962


# --------------------------------------------------------------------------------------------
# text models
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_problem() -> TinyProblem:
    pytest.importorskip("transformers")
    return tiny_text_problem(seed=0)


@pytest.mark.parametrize("name,overrides", [
    ("divergence", {"epochs": 1}),
    ("gradient-mask", {"epochs": 1}),
    ("pruning", {"epochs": 1.0}),
    ("pseudo-label", {"epochs": 1, "rotate": False, "scratch_epochs": 1}),
    ("distillation", {"epochs": 1, "warmup_epochs": 1}),
])
def test_runs_on_text_model(name: str, overrides: dict, text_problem: TinyProblem) -> None:
    prob = text_problem
    model = prob.fresh_copy()
    before = _state(model)
    run_method(name, model, prob.data, fast_config(name, **overrides), prob.ctx)
    after = _state(model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("encoder.") for k in changed)
    logits, _ = predict_logits(model, prob.data.test, device=CPU)
    assert np.isfinite(logits).all()


def test_text_layer_choices(text_problem: TinyProblem) -> None:
    model = text_problem.model
    names = [n for n, _ in weight_layers(model)]
    assert names and all(n.startswith("encoder.") for n in names)   # head excluded
    first, head = reset_layer_names(model, True)
    assert first == "encoder.encoder.layer.0" and head == "fc"


@pytest.mark.parametrize("name,overrides", [("deviation", {}), ("rotate", {}),
                                            ("pseudo-label", {"rotate": True})])
def test_image_only_methods_refuse_text(name: str, overrides: dict,
                                        text_problem: TinyProblem) -> None:
    prob = text_problem
    with pytest.raises(UnsupportedModelError, match=r"text|rotate"):
        run_method(name, prob.fresh_copy(), prob.data, fast_config(name, **overrides), prob.ctx)
