"""Reference equivalence: each method against an independent restatement of its reference.

For every method with public reference code, a few lines of plain PyTorch below restate the
reference's update rule (written from reading the reference, not copied from it); methods
without reference code (neuron masking, pseudo-label) are restated from their paper's
equations. Each test runs raysweep's method through ``run_method`` and the restatement from the
same initial weights, the same batches (a ``DataLoader`` with the same seeded generator, so the
same shuffling) and the same random draws, then compares every weight and BatchNorm buffer:
max |Δw| < 1e-6 for one-shot methods, < 1e-5 after several optimizer steps for iterative ones.

An intended difference between raysweep and the reference is a named keyword of the
restatement whose default is raysweep's choice. The test asserts that raysweep matches with
that default and, where the difference can show on these tiny models, that it does *not* match
with the reference's setting (so the difference is real, and it is the only one).

=================  ===========================================================================
method             reference (repository: file)
=================  ===========================================================================
finetune           if-loops/selective-synaptic-dampening: src/forget_random_strategies.py
                   ``finetune``, src/utils.py ``fit_one_cycle``
amnesiac           if-loops/selective-synaptic-dampening: src/forget_random_strategies.py
                   ``amnesiac``, src/unlearn.py ``fit_one_unlearning_cycle``
bad-teaching       vikram2000b/bad-teaching-unlearning: unlearn.py (``UnlearnerLoss``,
                   ``blindspot_unlearner``); the 30% retain subset and Adam 1e-4 from the SSD
                   repository's ``blindspot``
cf-k, eu-k         shash42/Evaluating-Inexact-Unlearning (Goel et al.): src/methods.py
                   ``resetFinalResnet``, src/learn.py ``train_loop``; and the port in
                   xcadet/deepunlearn: munl/unlearning/catastrophic_forgetting_k.py,
                   exact_unlearning_k.py, scrub_utils.py ``fk_finetune``
divergence         xcadet/deepunlearn: munl/unlearning/kgltop1.py
gradient-mask      xcadet/deepunlearn: munl/unlearning/kgltop2.py
deviation          xcadet/deepunlearn: munl/unlearning/kgltop3.py
pruning            xcadet/deepunlearn: munl/unlearning/kgltop4.py
rotate             xcadet/deepunlearn: munl/unlearning/kgltop5.py
distillation       xcadet/deepunlearn: munl/unlearning/kgltop6.py
pseudo-label       paper 002 (IV-B3, Fig. 5); the port has Rotate only
neuron-masking     paper 001's rule (mean forget activation above a threshold)
=================  ===========================================================================

Models: the project's tiny MLP on 8x8 digits (``raysweep.testing.tiny_problem``: 4 classes,
D_f = class 0 with 16 rows, D_r 48 rows) and, for the methods written against a torchvision
ResNet's layer names (``conv1``, ``fc``, every ``Conv2d``), :class:`TinyResNet`, the same
layout at 4 channels. Runs in well under a minute on one CPU thread.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from _reference import frozen_copy, loader, max_diff, trainable_copy
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import TensorDataset

from raysweep.methods import UnlearnContext, UnlearnData, make_config, run_method
from raysweep.methods.amnesiac import random_wrong_labels
from raysweep.methods.bad_teaching import _TEACHER_SEED_OFFSET
from raysweep.methods.eu_k import reinitialise
from raysweep.methods.gradient_mask import reinit_by_gradient
from raysweep.methods.neuron_masking import mean_input_activation
from raysweep.methods.rotate import rotate_kernels
from raysweep.models import ModelSpec
from raysweep.testing import tiny_problem
from raysweep.training import TrainConfig, train_model

CPU = torch.device("cpu")
ONE_SHOT_TOL = 1e-6
STEPS_TOL = 1e-5
FRESH_SEED_OFFSET = 104_729     # UnlearnContext.fresh_model's default draw: ctx.seed + this


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


class TinyResNet(nn.Module):
    """A torchvision-ResNet layout in miniature: top-level ``conv1``/``bn1``/``layer1``/``fc``.

    The challenge solutions name these layers (deviation perturbs children named "conv",
    distillation resets ``conv1`` and ``fc``), so they are tested on this shape. ``layer1``'s
    convolution has a bias (ResNet's have none) to exercise the gradient-mask bias rule.
    """

    def __init__(self, num_classes: int, in_chans: int = 1, width: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
                                    nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


@dataclass(frozen=True)
class TinyResNetSpec(ModelSpec):
    def build(self, *, pretrained: bool | None = None, seed: int | None = None) -> nn.Module:
        if seed is not None:
            torch.manual_seed(seed)
        return TinyResNet(self.num_classes, self.in_chans)


@dataclass
class Problem:
    original: nn.Module
    data: UnlearnData
    ctx: UnlearnContext

    @property
    def seed(self) -> int:
        return self.ctx.seed


@pytest.fixture(scope="module")
def mlp() -> Problem:
    p = tiny_problem(seed=0)
    return Problem(p.model, p.data, p.ctx)


@pytest.fixture(scope="module")
def resnet(mlp: Problem) -> Problem:
    """TinyResNet trained on the same digits (D_f ∪ D_r), class 0 to forget."""
    data = mlp.data
    spec = TinyResNetSpec("tiny-resnet", data.num_classes, in_chans=1, img_size=8)
    recipe = TrainConfig(epochs=8, lr=0.05, batch_size=16)
    original = spec.build(seed=0)
    full = TensorDataset(torch.cat([data.forget.tensors[0], data.retain.tensors[0]]),
                         torch.cat([data.forget.tensors[1], data.retain.tensors[1]]))
    train_model(original, full, recipe, device=CPU, seed=0)
    ctx = UnlearnContext(original=copy.deepcopy(original), model_spec=spec, device=CPU, seed=0,
                         train_recipe=recipe)
    return Problem(original, data, ctx)


# --------------------------------------------------------------------------------------------
# Helpers (plain PyTorch)
# --------------------------------------------------------------------------------------------


def assert_same(got: nn.Module, ref: nn.Module, original: nn.Module,
                tol: float = STEPS_TOL) -> None:
    """raysweep's result equals the restatement's, and the method did move the weights (so the
    comparison is not vacuous)."""
    diff, moved = max_diff(got, ref), max_diff(got, original)
    assert diff < tol, f"max |Δw| = {diff:.3g} (tolerance {tol:g})"
    assert moved > 100 * tol, f"the method barely moved the weights ({moved:.3g})"


def ours(name: str, prob: Problem, values: dict, **kw) -> nn.Module:
    """raysweep's method on a private copy of the original, through ``run_method``."""
    model = trainable_copy(prob.original)
    run_method(name, model, prob.data, make_config(name, values), prob.ctx, **kw)
    return model


def retain_subset_rows(n: int, fraction: float, seed: int) -> torch.Tensor:
    """A seeded random ``fraction`` of ``n`` rows (the draw of raysweep's ``random_subset``)."""
    k = max(1, round(fraction * n))
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


def sgd_epoch(model: nn.Module, ds: TensorDataset, opt: torch.optim.Optimizer, batch_size: int,
              seed: int) -> None:
    """One epoch of cross-entropy on ``ds``, batches in raysweep's order for ``seed``."""
    model.train()
    for x, y in loader(ds, batch_size, seed):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


# --------------------------------------------------------------------------------------------
# finetune: SSD repository, fit_one_cycle(5, lr=0.02): SGD momentum 0.9, wd 5e-4, no schedule
# --------------------------------------------------------------------------------------------


def test_finetune_matches_ssd_fit_one_cycle(mlp: Problem) -> None:
    cfg = make_config("finetune")
    assert (cfg.epochs, cfg.lr, cfg.optimizer, cfg.momentum, cfg.weight_decay) == \
        (5, 0.02, "sgd", 0.9, 5e-4)        # the reference's recipe
    got = ours("finetune", mlp, {"epochs": 3, "batch_size": 16})

    ref = trainable_copy(mlp.original)
    opt = torch.optim.SGD(ref.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    for epoch in range(3):
        sgd_epoch(ref, mlp.data.retain, opt, 16, mlp.seed + epoch)
    assert_same(got, ref, mlp.original)


# --------------------------------------------------------------------------------------------
# amnesiac: SSD repository. Relabel each forget row with a random label != its own (rejection
# sampling), then Adam 1e-4 on relabelled D_f ∪ D_r with CE, 3 epochs, batch 128.
# --------------------------------------------------------------------------------------------


def test_amnesiac_matches_ssd_reference(mlp: Problem) -> None:
    data, seed = mlp.data, mlp.seed
    cfg = make_config("amnesiac")
    assert (cfg.epochs, cfg.lr, cfg.optimizer, cfg.batch_size) == (3, 1e-4, "adam", 128)
    got = ours("amnesiac", mlp, {"epochs": 2, "batch_size": 16, "lr": 1e-3})

    xf, yf = data.forget.tensors
    xr, yr = data.retain.tensors
    # The draw itself is raysweep's (seeded); its support is checked against the reference's.
    new = random_wrong_labels(yf, data.num_classes, data.forget_classes, seed=seed)
    assert bool((new != yf).all())
    # Single-class forgetting: the reference's support {c != y} equals raysweep's.
    assert set(new.tolist()) <= set(range(data.num_classes)) - set(data.forget_classes)
    ref = trainable_copy(mlp.original)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    train = TensorDataset(torch.cat([xr, xf]), torch.cat([yr, new]))
    for epoch in range(2):
        sgd_epoch(ref, train, opt, 16, seed + epoch)
    assert_same(got, ref, mlp.original)


def test_amnesiac_intended_difference_never_relabels_into_a_forgotten_class() -> None:
    # Multi-class forgetting of {0, 1}: the reference's rejection sampling (against the row's
    # own label only) may relabel a class-0 row as class 1, another forgotten class; raysweep
    # draws from the retained classes only.
    y = torch.tensor([0] * 32 + [1] * 32)
    new = random_wrong_labels(y, 4, (0, 1), seed=0)
    reference_support_for_class0 = {1, 2, 3}
    assert set(new.tolist()) == {2, 3}
    assert 1 in reference_support_for_class0 - set(new.tolist())


# --------------------------------------------------------------------------------------------
# bad-teaching: vikram2000b/bad-teaching-unlearning. KL(mixed teacher_T || student_T) with
# F.kl_div's default reduction ("mean": over batch *and* classes); raysweep: batchmean x T^2.
# --------------------------------------------------------------------------------------------


OptimizerFn = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def ref_bad_teaching(prob: Problem, opt_fn: OptimizerFn, *, epochs: int, temperature: float,
                     batch_size: int, loss_scale: float = 1.0) -> tuple[nn.Module, list[float]]:
    """``loss_scale`` multiplies the reference's loss (raysweep's scale: C * T^2)."""
    data, seed, T = prob.data, prob.seed, temperature
    xf = data.forget.tensors[0]
    xr = data.retain.tensors[0][retain_subset_rows(len(data.retain), 0.3, seed)]
    # the reference's UnLearningData: label 1 = forget row, 0 = retain row
    unlearn = TensorDataset(torch.cat([xf, xr]),
                            torch.cat([torch.ones(len(xf)), torch.zeros(len(xr))]))
    full_teacher = frozen_copy(prob.original)
    # The incompetent teacher: a randomly initialised model (raysweep seeds its draw).
    bad_teacher = frozen_copy(prob.ctx.model_spec.build(seed=seed + _TEACHER_SEED_OFFSET))
    model = trainable_copy(prob.original)
    opt = opt_fn(model.parameters())
    losses = []
    for epoch in range(epochs):
        model.train()
        for x, is_forget in loader(unlearn, batch_size, seed + epoch):
            with torch.no_grad():
                f_out = F.softmax(full_teacher(x) / T, dim=1)
                u_out = F.softmax(bad_teacher(x) / T, dim=1)
            label = is_forget[:, None]
            target = label * u_out + (1 - label) * f_out
            # F.kl_div's default reduction "mean": the sum over the batch *and* the classes
            # divided by B * C (written out: torch warns on the default)
            kl = F.kl_div(F.log_softmax(model(x) / T, dim=1), target, reduction="sum")
            loss = loss_scale * kl / target.numel()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return model, losses


def test_bad_teaching_is_the_reference_with_the_loss_scaled_by_C_T2(mlp: Problem) -> None:
    C, T, lr = mlp.data.num_classes, 2.0, 0.01
    scale = C * T**2
    got = ours("bad-teaching", mlp, {"optimizer": "sgd", "momentum": 0.0, "lr": lr,
                                      "temperature": T, "epochs": 2, "batch_size": 8})

    def sgd(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr)

    scaled, _ = ref_bad_teaching(mlp, sgd, epochs=2, temperature=T, batch_size=8,
                                 loss_scale=scale)
    assert_same(got, scaled, mlp.original)
    # Intended difference "KL batchmean x T^2": without it the reference moves C*T^2 = 16x less.
    plain, _ = ref_bad_teaching(mlp, sgd, epochs=2, temperature=T, batch_size=8)
    assert max_diff(got, plain) > 100 * STEPS_TOL
    # Equivalently: plain SGD at lr * C * T^2 reproduces raysweep.
    def sgd_scaled(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr * scale)

    lr_scaled, _ = ref_bad_teaching(mlp, sgd_scaled, epochs=2, temperature=T, batch_size=8)
    assert max_diff(got, lr_scaled) < STEPS_TOL


def test_bad_teaching_reported_loss_is_C_T2_times_the_reference_loss(mlp: Problem) -> None:
    C, T = mlp.data.num_classes, 3.0
    model = trainable_copy(mlp.original)
    res = run_method("bad-teaching", model, mlp.data,
                     make_config("bad-teaching", {"temperature": T, "batch_size": 256}), mlp.ctx)
    # One batch holds the whole unlearning set, so the epoch's loss is the loss at the start.
    _, ref_losses = ref_bad_teaching(mlp, lambda p: torch.optim.Adam(p, lr=1e-4), epochs=1,
                                     temperature=T, batch_size=256)
    assert len(ref_losses) == 1
    assert res.history[0].metrics["loss"] == pytest.approx(C * T**2 * ref_losses[0], rel=1e-5)


def test_bad_teaching_with_adam_the_scale_hardly_matters(mlp: Problem) -> None:
    # Adam is invariant to the loss scale except through its eps (1e-8): weights whose
    # gradients are near eps move differently (|Δw| up to ~20% of their step here), so the
    # comparison is on outputs: with the paper's optimizer, raysweep and the unscaled reference
    # give the same predictions to within 1% of how far the predictions moved.
    got = ours("bad-teaching", mlp, {"lr": 1e-3, "epochs": 2, "batch_size": 8})
    ref, _ = ref_bad_teaching(mlp, lambda p: torch.optim.Adam(p, lr=1e-3), epochs=2,
                              temperature=1.0, batch_size=8)
    x = mlp.data.test.tensors[0]
    with torch.no_grad():
        moved = float((got.eval()(x) - frozen_copy(mlp.original)(x)).abs().max())
        apart = float((got(x) - ref.eval()(x)).abs().max())
    assert moved > 0.1
    assert apart < 0.01 * moved


# --------------------------------------------------------------------------------------------
# cf-k / eu-k: Goel et al.'s code and the deepunlearn port (SCRUB notebook's fk_finetune)
# --------------------------------------------------------------------------------------------


def goel_retrain_layers(model: nn.Module, K: int) -> list[nn.Module]:
    """Goel's ``resetFinalResnet`` selection: walking Conv2d/BatchNorm2d/Linear modules from the
    output backwards, everything up to and including the K-th Conv2d/Linear."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    chosen, done = [], 0
    for m in reversed(layers):
        chosen.append(m)
        done += isinstance(m, (nn.Conv2d, nn.Linear))
        if done >= K:
            break
    return chosen


def goel_warm_restarts(lr: float, eta_min: float) -> Callable[[int], float]:
    """CosineAnnealingWarmRestarts(T_0=1, T_mult=2, eta_min), stepped once per epoch."""
    def at(epoch: int) -> float:
        t_cur, t_i = epoch, 1
        while t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, 2 * t_i
        return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
    return at


def ref_train_layers(model: nn.Module, trained: list[nn.Module], data: UnlearnData, *,
                     epochs: int, lr: float, momentum: float, weight_decay: float,
                     batch_size: int, seed: int, frozen_bn_eval: bool = True,
                     whole_model_eval: bool = False, clip: float | None = None,
                     lr_at: Callable[[int], float] | None = None,
                     l2_to_init: float = 0.0) -> nn.Module:
    """Train only the parameters of ``trained`` on D_r with CE.

    Named differences (default = raysweep): ``frozen_bn_eval`` (Goel: frozen BatchNorm layers
    stay in train mode), ``whole_model_eval`` (the port runs the whole model in eval mode),
    ``clip`` (Goel clips the gradient norm at 10), ``lr_at`` (Goel: cosine warm restarts; the
    port: x0.1 steps), ``l2_to_init`` (the port's penalty (wd/2)·||w - w_init||² in place of
    weight decay).
    """
    keep = {id(p) for m in trained for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    frozen_bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                 and not any(p.requires_grad for p in m.parameters())]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    for epoch in range(epochs):
        if lr_at is not None:
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch)
        model.train(not whole_model_eval)
        if frozen_bn_eval:
            for m in frozen_bn:
                m.eval()
        for x, y in loader(data.retain, batch_size, seed + epoch):
            loss = F.cross_entropy(model(x), y)
            if l2_to_init:
                loss = loss + l2_to_init / 2 * sum(((p - p0) ** 2).sum()
                                                    for p, p0 in zip(params, start))
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def test_cf_k_matches_goel_with_named_differences(resnet: Problem) -> None:
    data, seed = resnet.data, resnet.seed
    cfg = {"k": 1, "epochs": 3, "batch_size": 16, "lr": 0.02}
    got = ours("cf-k", resnet, cfg)

    def ref(**named: object) -> nn.Module:
        m = trainable_copy(resnet.original)
        # raysweep's k counts blocks (k=1: layer1 + fc); Goel's K counts Conv/Linear layers
        # from the output: K=2 selects fc, layer1's BatchNorm and layer1's conv, the same set.
        return ref_train_layers(m, goel_retrain_layers(m, 2), data, epochs=3, lr=0.02,
                                momentum=0.9, weight_decay=5e-4, batch_size=16, seed=seed,
                                **named)

    m = trainable_copy(resnet.original)
    assert {id(p) for layer in goel_retrain_layers(m, 2) for p in layer.parameters()} == \
        {id(p) for p in [*m.layer1.parameters(), *m.fc.parameters()]}
    assert_same(got, ref(), resnet.original)
    # Named: gradient clipping at norm 10 (Goel) is inert at these gradient norms.
    assert max_diff(got, ref(clip=10.0)) < STEPS_TOL
    # Named: frozen blocks run in eval mode; Goel's model.train() would update bn1's running
    # statistics (and normalise with batch statistics), raysweep keeps the original's.
    goel_bn = ref(frozen_bn_eval=False)
    assert max_diff(got, goel_bn) > 100 * STEPS_TOL
    assert torch.equal(got.bn1.running_mean, resnet.original.bn1.running_mean)
    assert not torch.equal(goel_bn.bn1.running_mean, resnet.original.bn1.running_mean)
    # Named: constant lr; Goel's train_loop anneals with cosine warm restarts (minlr 0.005).
    assert max_diff(got, ref(lr_at=goel_warm_restarts(0.02, 0.005))) > 100 * STEPS_TOL


def test_cf_k_matches_the_deepunlearn_port_in_its_plain_sgd_setting(mlp: Problem) -> None:
    # The port (fk_finetune): plain SGD, no momentum, (wd/2)·||w - w_init||² instead of weight
    # decay, lr x0.1 after 50/80/90% of the epochs, whole model in eval mode. With 2 epochs
    # the decay never triggers; on the MLP (no BatchNorm, no dropout) eval mode is inert.
    data, seed = mlp.data, mlp.seed
    got = ours("cf-k", mlp, {"k": 1, "epochs": 2, "batch_size": 16, "lr": 0.05,
                             "momentum": 0.0, "weight_decay": 0.0})

    def ref(**named: object) -> nn.Module:
        m = trainable_copy(mlp.original)
        # the port: the last k blocks (select_last_k_blocks) plus the classifier
        return ref_train_layers(m, [m.hidden2, m.fc], data, epochs=2, lr=0.05, momentum=0.0,
                                weight_decay=0.0, batch_size=16, seed=seed,
                                whole_model_eval=True, **named)

    assert_same(got, ref(), mlp.original)
    # Named: the port's pull towards the original weights (its default wd 0.1) is not ported.
    assert max_diff(got, ref(l2_to_init=0.1)) > 10 * STEPS_TOL


def test_eu_k_matches_goel_with_named_differences(resnet: Problem) -> None:
    data, seed, recipe = resnet.data, resnet.seed, resnet.ctx.train_recipe
    got = ours("eu-k", resnet, {"k": 1, "epochs": 2, "batch_size": 16})

    # Re-initialise layer1 and fc. raysweep: PyTorch's default init (``reset_parameters``,
    # drawn from the global RNG that run_method seeds), BatchNorm statistics reset too.
    m = trainable_copy(resnet.original)
    torch.manual_seed(seed)
    with torch.no_grad():
        for block in (m.layer1, m.fc):
            for mod in block.modules():
                if hasattr(mod, "reset_parameters"):
                    mod.reset_parameters()
    reinit = copy.deepcopy(m)
    ref = ref_train_layers(m, [m.layer1, m.fc], data, epochs=2, lr=recipe.lr,
                           momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                           batch_size=16, seed=seed)
    assert_same(got, ref, resnet.original)
    # Named: constant lr (Goel: cosine warm restarts) and frozen blocks in eval mode are those
    # of cf-k (the same training loop), asserted in test_cf_k_matches_goel_with_named_differences.

    # Named: the init. Goel's _reinit draws kaiming_normal_ weights (std sqrt(2/fan_in)), zero
    # biases and keeps BatchNorm running statistics; the port uses xavier_uniform / zero bias.
    # raysweep's default init has uniform biases, |w| <= 1/sqrt(fan_in), and reset statistics.
    twin = trainable_copy(resnet.original)
    torch.manual_seed(seed)
    reinitialise([twin.layer1, twin.fc])
    assert max_diff(twin, reinit) == 0.0
    assert bool((reinit.fc.bias != 0).all())
    assert float(reinit.fc.weight.detach().abs().max()) <= 1 / math.sqrt(reinit.fc.in_features)
    assert torch.equal(reinit.layer1[1].running_mean, torch.zeros(4))
    assert not torch.equal(resnet.original.layer1[1].running_mean, torch.zeros(4))


# --------------------------------------------------------------------------------------------
# divergence (1st place): deepunlearn kgltop1.py
# --------------------------------------------------------------------------------------------


def test_divergence_matches_kgltop1(mlp: Problem) -> None:
    data, seed, E, t = mlp.data, mlp.seed, 2, 1.15
    bs, fbs = 16, 8
    got = ours("divergence", mlp, {"epochs": E, "batch_size": bs, "forget_batch_size": fbs})

    model = trainable_copy(mlp.original)
    opt = torch.optim.SGD(model.parameters(), lr=5e-3, momentum=0.9, weight_decay=0)
    opt_retain = torch.optim.SGD(model.parameters(), lr=1e-3 * bs / 64, momentum=0.9,
                                 weight_decay=1e-2)
    opt_forget = torch.optim.SGD(model.parameters(), lr=3e-4, momentum=0.9, weight_decay=0)
    n_forget_batches = math.ceil(len(data.forget) / fbs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_forget, T_max=n_forget_batches * E,
                                                       eta_min=1e-6)
    model.train()
    for x, _ in loader(data.forget, fbs, seed):                     # first stage
        out = model(x)
        uniform = torch.ones_like(out) / out.shape[1]
        loss = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(out, dim=-1), uniform)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for epoch in range(E):                                          # second stage
        model.train()
        for (xf, _), (xr, _) in zip(loader(data.forget, fbs, seed + 1000 + epoch),
                                    loader(data.retain, bs, seed + 2000 + epoch)):
            of, orr = model(xf), model(xr).detach()
            loss = (-1 * F.log_softmax(of @ orr.T / t, dim=-1)).mean()
            opt_forget.zero_grad()
            loss.backward()
            opt_forget.step()
            sched.step()
        for x, y in loader(data.retain, bs, seed + epoch):
            loss = F.cross_entropy(model(x), y)
            opt_retain.zero_grad()
            loss.backward()
            opt_retain.step()
    assert_same(got, model, mlp.original)


# --------------------------------------------------------------------------------------------
# gradient-mask (2nd place): deepunlearn kgltop2.py
# --------------------------------------------------------------------------------------------


def test_gradient_mask_matches_kgltop2(resnet: Problem) -> None:
    data, seed, E, lr, rate = resnet.data, resnet.seed, 3, 0.01, 0.3
    got = ours("gradient-mask", resnet, {"epochs": E, "batch_size": 16, "lr": lr})

    model = trainable_copy(resnet.original)
    layers = convs(model)
    # SNIP-like gradients: sum of grad CE over a |D_f|-sized random retain subset, minus the
    # same over D_f (batches of 64: one batch each here). raysweep: eval mode (see below).
    model.eval()
    rows = retain_subset_rows(len(data.retain), len(data.forget) / len(data.retain), seed)
    xr, yr = data.retain.tensors[0][rows], data.retain.tensors[1][rows]
    xf, yf = data.forget.tensors
    loss = F.cross_entropy(model(xr), yr) - F.cross_entropy(model(xf), yf)
    grads = torch.autograd.grad(loss, [c.weight for c in layers])
    # Re-initialise the round(0.3 n) smallest |g| of every conv with kaiming_normal_
    # (fan_out, relu): N(0, 2/fan_out). The draws use raysweep's seeded generator.
    gen = torch.Generator().manual_seed(seed)
    scales = {}
    with torch.no_grad():
        for conv, g in zip(layers, grads):
            n = g.numel()
            chosen = torch.zeros(n, dtype=torch.bool)
            chosen[torch.argsort(g.abs().flatten(), stable=True)[: round(rate * n)]] = True
            chosen = chosen.view_as(g)
            fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
            fresh = torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / fan_out)
            conv.weight[chosen] = fresh[chosen]
            scales[conv] = torch.where(chosen, 1.0, 0.1)      # the port's MaskConv2d mask
    # Fine-tune on D_r: masked gradients (before weight decay, which the optimizer adds),
    # lr linear up over (E+1)//2 epochs, then down, per epoch.
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    warm, total = (E + 1) // 2, E + 1
    for epoch in range(E):
        step = epoch + 1
        factor = step / warm if step <= warm else (total - step) / (total - warm)
        for g in opt.param_groups:
            g["lr"] = lr * factor
        model.train()
        for x, y in loader(data.retain, 16, seed + epoch):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            for conv, s in scales.items():
                conv.weight.grad.mul_(s)
            opt.step()
    assert_same(got, model, resnet.original)

    # Named: a convolution's bias is kept through the re-initialisation. The port rebuilds each
    # conv as a MaskConv2d and so re-draws its bias (inert on ResNet, whose convs have none).
    twin = trainable_copy(resnet.original)
    reinit_by_gradient(twin, data, make_config("gradient-mask"), resnet.ctx)
    assert torch.equal(twin.layer1[0].bias, resnet.original.layer1[0].bias)


# --------------------------------------------------------------------------------------------
# deviation (3rd place): deepunlearn kgltop3.py
# --------------------------------------------------------------------------------------------


def test_deviation_matches_kgltop3(resnet: Problem) -> None:
    data, seed, E, lr = resnet.data, resnet.seed, 3, 0.01
    got = ours("deviation", resnet, {"epochs": E, "batch_size": 16, "lr": lr})

    model = trainable_copy(resnet.original)
    # vision_confuser: every top-level child with a weight whose name contains "conv"; on the
    # ResNet layout that is conv1 alone, which raysweep's layers="first" selects.
    confused = [m for name, m in model.named_children() if hasattr(m, "weight") and "conv" in name]
    assert confused == [model.conv1]
    gen = torch.Generator().manual_seed(seed)       # raysweep's seeded draws

    def confuse(std: float) -> None:
        with torch.no_grad():
            for m in confused:
                m.weight.copy_(m.weight + std * torch.randn(m.weight.shape, generator=gen))

    confuse(0.6)
    # The port's CE is scaled by the batch mean of "balanced" class weights over D_r's labels;
    # on this class-balanced D_r they are all 1, so its loss is plain CE (named below).
    counts = torch.bincount(data.retain.tensors[1])[list(set(data.retain.tensors[1].tolist()))]
    balanced = len(data.retain) / (len(counts) * counts.double())
    assert torch.equal(balanced, torch.ones_like(balanced))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=E)
    for epoch in range(E):
        sgd_epoch(model, data.retain, opt, 16, seed + epoch)
        if epoch == E - 2:
            confuse(0.005)        # before the last epoch
        sched.step()
    assert_same(got, model, resnet.original)


# --------------------------------------------------------------------------------------------
# pruning (4th place): deepunlearn kgltop4.py
# --------------------------------------------------------------------------------------------


def ref_pruning(prob: Problem, *, amount: float, epochs: float, batch_size: int, lr: float,
                extra_step: bool = False, quantize_buffers: bool = True) -> nn.Module:
    """``extra_step``: the port stops when ``num_iters > max_iters``, i.e. one step late.
    ``quantize_buffers``: the port's ``net.to(half).to(float)`` also rounds BatchNorm buffers."""
    data, seed = prob.data, prob.seed
    model, teacher = trainable_copy(prob.original), frozen_copy(prob.original)
    modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    targets = [(m, "weight") for m in modules]
    targets += [(m, "bias") for m in modules if m.bias is not None]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for m, attr in targets:
        prune.remove(m, attr)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in modules:                 # pruned weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            mask = m.weight == 0
            fan_in = m.weight[0].numel()
            rand = (torch.rand(m.weight.shape, generator=gen) - 0.5) * 2 * math.sqrt(1 / fan_in)
            m.weight[mask] = rand[mask]
    # class weights count**-0.1 over D_r's labels (a class absent from D_r: weight 1, inert)
    counts = torch.bincount(data.retain.tensors[1], minlength=data.num_classes).float()
    weights = torch.ones(data.num_classes)
    weights[counts > 0] = counts[counts > 0] ** -0.1

    def entropy(logp: torch.Tensor) -> torch.Tensor:
        return torch.sum(-torch.exp(logp) * logp, dim=1)

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    max_iters = int(math.ceil(len(data.retain) / batch_size) * epochs)
    n_iters, epoch = 0, 0
    while n_iters < max_iters + extra_step:
        model.train()
        for x, y in loader(data.retain, batch_size, seed + epoch):
            with torch.no_grad():
                target = entropy(F.log_softmax(teacher(x), dim=1))
            out = model(x)
            loss = (F.cross_entropy(out, y, weight=weights)
                    + F.mse_loss(entropy(F.log_softmax(out, dim=1)), target))
            opt.zero_grad()
            loss.backward()
            opt.step()
            n_iters += 1
            if n_iters >= max_iters + extra_step:
                break
        epoch += 1
    with torch.no_grad():
        for t in [*model.parameters(), *(model.buffers() if quantize_buffers else [])]:
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


def test_pruning_matches_kgltop4(resnet: Problem) -> None:
    values = {"amount": 0.9, "epochs": 1.5, "batch_size": 16, "lr": 0.01}
    got = ours("pruning", resnet, values)
    kw = {"amount": 0.9, "epochs": 1.5, "batch_size": 16, "lr": 0.01}
    assert_same(got, ref_pruning(resnet, **kw), resnet.original)
    # Named: exactly int(epochs x steps per epoch) steps; the port's `num_iters > max_iters`
    # check takes one more.
    assert max_diff(got, ref_pruning(resnet, extra_step=True, **kw)) > 100 * STEPS_TOL
    # The final float16 round trip covers the BatchNorm statistics too, as the port's
    # net.to(half).to(float) does (fixed in raysweep: it rounded the parameters only).
    for name, t in got.named_buffers():
        if t.is_floating_point():
            assert torch.equal(t, t.half().float()), name
    assert not torch.equal(got.bn1.running_var, resnet.original.bn1.running_var)


# --------------------------------------------------------------------------------------------
# rotate (5th place): deepunlearn kgltop5.py
# --------------------------------------------------------------------------------------------


def test_rotate_matches_kgltop5(resnet: Problem) -> None:
    data, seed, E, lr = resnet.data, resnet.seed, 2, 0.01
    got = ours("rotate", resnet, {"epochs": E, "batch_size": 16, "lr": lr})

    model = trainable_copy(resnet.original)
    for conv in convs(model):
        conv.weight = nn.Parameter(conv.weight.detach().swapaxes(2, 3))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=E)
    for epoch in range(E):
        sgd_epoch(model, data.retain, opt, 16, seed + epoch)
        sched.step()
    assert_same(got, model, resnet.original)


def test_rotate_on_an_mlp_computes_the_original_function_of_the_transposed_image(
        mlp: Problem) -> None:
    # No reference (the port rotates Conv2d only); the docstring's claim, as an equation.
    model = trainable_copy(mlp.original).eval()
    rotate_kernels(model, in_chans=1, img_size=8)
    x = mlp.data.retain.tensors[0]
    with torch.no_grad():
        assert float((model(x.transpose(2, 3)) - frozen_copy(mlp.original)(x)).abs().max()) < 1e-5


# --------------------------------------------------------------------------------------------
# distillation (6th place): deepunlearn kgltop6.py
# --------------------------------------------------------------------------------------------


def test_distillation_matches_kgltop6(resnet: Problem) -> None:
    data, seed, T = resnet.data, resnet.seed, 5.0
    got = ours("distillation", resnet, {"epochs": 2, "warmup_epochs": 2, "batch_size": 16})

    model, teacher = trainable_copy(resnet.original), frozen_copy(resnet.original)
    # Reset conv1 and fc. Named: the port calls reset_parameters() on the global RNG; raysweep
    # copies the layers of a fresh model (the same default init, a seeded draw).
    fresh = resnet.ctx.model_spec.build(seed=seed + FRESH_SEED_OFFSET)
    model.conv1.load_state_dict(fresh.conv1.state_dict())
    model.fc.load_state_dict(fresh.fc.state_dict())

    def kl(out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(out / T, dim=1), F.softmax(teacher_out / T, dim=1),
                        reduction="batchmean")

    opt = torch.optim.SGD(model.parameters(), lr=9e-4, weight_decay=5e-4, momentum=0.9)
    for epoch in range(2):                                   # warm-up on the validation split
        model.train()
        for x, _ in loader(data.val, 16, seed + 100 + epoch):
            out = model(x)
            with torch.no_grad():
                t_out = teacher(x)
            opt.zero_grad()
            kl(out, t_out).backward()
            opt.step()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, weight_decay=5e-4, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)
    for epoch in range(2):
        model.train()
        for x, y in loader(data.retain, 16, seed + epoch):
            out = model(x)
            with torch.no_grad():
                t_out = teacher(x)
            soft_labels = F.softmax(t_out / T, dim=1)
            soft_pred = F.log_softmax(out / T, dim=1)
            # the port's soft_cross_entropy applies log_softmax again to soft_pred (idempotent)
            loss = torch.mean(torch.sum(-soft_labels * F.log_softmax(soft_pred, dim=1), dim=1))
            loss = loss + F.cross_entropy(out, y) + kl(out, t_out)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    assert_same(got, model, resnet.original)


# --------------------------------------------------------------------------------------------
# pseudo-label (5th place, second component): paper 002 IV-B3 / Fig. 5 (no reference code)
# --------------------------------------------------------------------------------------------


def test_pseudo_label_matches_the_paper_rule(resnet: Problem) -> None:
    data, ctx, seed = resnet.data, resnet.ctx, resnet.seed
    # The from-scratch probe is still unsure after 2 epochs (normalised entropy ~0.987), so
    # "low" is 0.99 here: the rule then swaps every forget row the fine-tuned probe gets right.
    E, lr, thr = 2, 0.01, 0.99
    got = ours("pseudo-label", resnet, {"epochs": E, "batch_size": 16, "lr": lr,
                                        "scratch_epochs": 2, "entropy_threshold": thr})
    xf, yf = data.forget.tensors
    xr, yr = data.retain.tensors
    C = data.num_classes

    def logits(m: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return m.eval()(xf)

    # (b) the naive unlearner: the original fine-tuned on D_r (1 epoch, the step-3 optimizer)
    tuned = trainable_copy(resnet.original)
    opt = torch.optim.SGD(tuned.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sgd_epoch(tuned, data.retain, opt, 16, seed + 100)
    tuned_pred = logits(tuned).argmax(1)
    # (c) a fresh model trained on D_r with the workload recipe (constant lr)
    scratch = ctx.model_spec.build(seed=seed + FRESH_SEED_OFFSET)
    fresh_head = copy.deepcopy(scratch.fc.state_dict())
    r = ctx.train_recipe
    opt = torch.optim.SGD(scratch.parameters(), lr=r.lr, momentum=r.momentum,
                          weight_decay=r.weight_decay)
    for e in range(2):
        sgd_epoch(scratch, data.retain, opt, r.batch_size, seed + 200 + e)
    s_logits = logits(scratch)
    p = F.softmax(s_logits, dim=1)
    norm_entropy = -(p * p.log()).sum(1) / math.log(C)
    s_pred = s_logits.argmax(1)
    # The rule: fine-tuned prediction, except where it is right and the from-scratch model is
    # wrong with low entropy; there the from-scratch prediction.
    swap = (tuned_pred == yf) & (s_pred != yf) & (norm_entropy < thr)
    labels = torch.where(swap, s_pred, tuned_pred)
    assert 0 < int(swap.sum()) < len(yf)          # both branches of the rule are exercised
    # Train: kernels transposed (Rotate), the head re-initialised, on D_r + pseudo-labelled D_f.
    model = trainable_copy(resnet.original)
    with torch.no_grad():
        for conv in convs(model):
            conv.weight.copy_(conv.weight.transpose(2, 3).clone())
    model.fc.load_state_dict(fresh_head)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=E)
    train = TensorDataset(torch.cat([xr, xf]), torch.cat([yr, labels]))
    for epoch in range(E):
        sgd_epoch(model, train, opt, 16, seed + epoch)
        sched.step()
    assert_same(got, model, resnet.original)


# --------------------------------------------------------------------------------------------
# neuron-masking: paper 001 ("mask the neurons whose average activation is above a threshold")
# --------------------------------------------------------------------------------------------


def _head_inputs(model: nn.Module, x: torch.Tensor, *, pre_relu: bool = False) -> torch.Tensor:
    with torch.no_grad():
        h = model.hidden1(x)
        z = model.hidden2[0](h)
        return z if pre_relu else torch.relu(z)


def test_neuron_masking_matches_the_paper_rule(mlp: Problem) -> None:
    original = frozen_copy(mlp.original)
    xf, xr = mlp.data.forget.tensors[0], mlp.data.retain.tensors[0]
    a_f = _head_inputs(original, xf).mean(0)       # mean activation of each unit feeding fc
    s = a_f.sort().values
    tau = float((s[40] + s[41]) / 2)               # strictly between two units' means
    got = ours("neuron-masking", mlp, {"threshold": tau})
    masked = a_f > tau
    assert 0 < int(masked.sum()) < len(masked)
    ref = trainable_copy(mlp.original)
    with torch.no_grad():
        ref.fc.weight[:, masked] = 0
    assert_same(got, ref, mlp.original, ONE_SHOT_TOL)
    # Departure (1): zeroing fc's input columns is the notebook's multiplicative mask.
    with torch.no_grad():
        notebook = original.fc(_head_inputs(original, xr) * (~masked).float())
        assert float((got.eval()(xr) - notebook).abs().max()) < ONE_SHOT_TOL
    # Departure (2): recorded after the ReLU. relu(z) >= z, so the notebook's pre-ReLU rule
    # masks a subset of raysweep's units.
    pre = _head_inputs(original, xf, pre_relu=True).mean(0) > tau
    assert bool((pre <= masked).all())
    # Departure (3): the mean magnitude |a| equals the mean for these ReLU features (inert).

    # ratio rule: forget mean > threshold x retain mean
    a_r = _head_inputs(original, xr).mean(0)
    got = ours("neuron-masking", mlp, {"rule": "ratio", "threshold": 1.5})
    ratio_masked = a_f > 1.5 * a_r
    assert 0 < int(ratio_masked.sum()) < len(ratio_masked)
    ref = trainable_copy(mlp.original)
    with torch.no_grad():
        ref.fc.weight[:, ratio_masked] = 0
    assert_same(got, ref, mlp.original, ONE_SHOT_TOL)


def test_neuron_masking_intended_difference_strictly_above_the_threshold(mlp: Problem) -> None:
    # The paper masks units "above" the threshold; the notebook tests mean >= 0.5. A unit whose
    # mean equals the threshold exactly is kept by raysweep and masked by the notebook.
    twin = frozen_copy(mlp.original)
    means, _ = mean_input_activation(twin, [twin.fc], mlp.data.forget, 256, CPU)
    a_f = next(iter(means.values()))
    j = int(a_f.argsort()[40])
    got = ours("neuron-masking", mlp, {"threshold": float(a_f[j])})
    assert not bool((got.fc.weight[:, j] == 0).all())        # kept (strict >)
    notebook = a_f >= a_f[j]
    assert bool(notebook[j])                                   # the notebook would mask it
    assert bool((got.fc.weight[:, notebook & (a_f > a_f[j])] == 0).all())
