"""Compute cost in sample-passes (``raysweep.methods._cost``) and its use by ``run_method``.

* The counter on toy modules: forward/backward per example, no-grad calls, gradients w.r.t.
  inputs, tuple/dict/Hugging Face outputs, deep copies, pausing, detaching, pickling.
* ``run_method`` on the tiny ``digits-class`` workload: retrain with the recipe's epochs costs
  exactly :func:`retrain_passes`; finetune 1 epoch is |D_r| forward and backward; bad-teaching
  counts its random teacher (built with ``ctx.fresh_model``); UNSIR counts its noise learning
  (gradients w.r.t. the input) exactly, also for a text model (``forward_embeds``); evaluation
  inside ``on_epoch`` is not counted; every registered method reports forward > 0.
"""

from __future__ import annotations

import copy
import io
import os

import pytest
import torch
from torch import nn

from raysweep.methods import (
    EpochEnd,
    PassCount,
    PassCounter,
    get_method,
    list_methods,
    make_config,
    retrain_passes,
    run_method,
)
from raysweep.methods._common import random_subset
from raysweep.methods._cost import active_counter
from raysweep.models import ModelSpec
from raysweep.training import predict_logits


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _has_hooks(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


# --------------------------------------------------------------------------------------------
# The counter on toy modules
# --------------------------------------------------------------------------------------------


def test_pass_count_arithmetic_and_metrics() -> None:
    c = PassCount(forward=10, backward=4)
    assert c.passes == 18
    assert c.as_metrics() == {"cost/forward": 10.0, "cost/backward": 4.0, "cost/passes": 18.0}
    assert c + PassCount(1, 1) == PassCount(11, 5)
    assert c - PassCount(10, 4) == PassCount()
    with pytest.raises(AttributeError):
        c.forward = 3  # type: ignore[misc]
    assert retrain_passes(100, 3) == PassCount(300, 300)
    assert retrain_passes(100, 3).passes == 900


def test_forward_backward_and_no_grad() -> None:
    counter = PassCounter()
    model = counter.attach(_mlp())
    model(torch.randn(5, 3)).sum().backward()          # train step: 5 forward, 5 backward
    assert counter.snapshot() == PassCount(5, 5)
    with torch.no_grad():
        model(torch.randn(7, 3))                         # inference: forward only
    model(torch.randn(2, 3))                             # graph built, backward never run
    assert counter.snapshot() == PassCount(14, 5)
    out = model(torch.randn(3, 3))
    out.sum().backward(retain_graph=True)                # backward twice through one graph
    out.sum().backward()
    assert counter.snapshot() == PassCount(17, 11)
    # Sub-modules are not counted separately: one call of the root is one forward.
    counter.detach()
    assert not _has_hooks(model)
    model(torch.randn(4, 3)).sum().backward()
    assert counter.snapshot() == PassCount(17, 11)


def test_gradient_with_respect_to_input_counts_backward() -> None:
    counter = PassCounter()
    model = counter.attach(_mlp())
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(6, 3, requires_grad=True)
    (g,) = torch.autograd.grad(model(x).pow(2).sum(), [x])
    assert g.shape == x.shape
    assert counter.snapshot() == PassCount(6, 6)
    # Frozen weights and an input without grad: nothing to differentiate, no backward.
    model(torch.randn(6, 3))
    assert counter.snapshot() == PassCount(12, 6)


class _TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(()), self.fc(x)               # a 0-dim tensor first: skipped


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(x)}


class _ScalarOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).sum()                          # no batch dim: counted from the input


def test_tuple_dict_and_scalar_outputs() -> None:
    counter = PassCounter()
    tup, dic, sca = (counter.attach(m) for m in (_TupleOut(), _DictOut(), _ScalarOut()))
    tup(torch.randn(4, 3))[1].sum().backward()
    assert counter.snapshot() == PassCount(4, 4)
    dic(torch.randn(3, 3))["logits"].sum().backward()
    assert counter.snapshot() == PassCount(7, 7)
    sca(torch.randn(2, 3)).backward()
    assert counter.snapshot() == PassCount(9, 7)         # no per-example output to hook
    counter.detach()


def test_hugging_face_model_output() -> None:
    pytest.importorskip("transformers")
    from transformers.modeling_outputs import SequenceClassifierOutput

    class HF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> SequenceClassifierOutput:
            return SequenceClassifierOutput(logits=self.fc(x))

    counter = PassCounter()
    model = counter.attach(HF())
    model(torch.randn(5, 3)).logits.sum().backward()
    assert counter.snapshot() == PassCount(5, 5)
    counter.detach()


def test_deep_copies_keep_counting_and_detach_cleans_them() -> None:
    counter = PassCounter()
    with counter.counting(_mlp()) as c:
        model = _mlp()
        c.attach(model)
        twin = copy.deepcopy(model)                      # hooks are copied with the module
        assert _has_hooks(twin)
        twin(torch.randn(3, 3)).sum().backward()
        assert counter.snapshot() == PassCount(3, 3)
        twin_of_twin = copy.deepcopy(twin)
        with torch.no_grad():
            twin_of_twin(torch.randn(2, 3))
        assert counter.snapshot() == PassCount(5, 3)
        c.attach(twin)                                   # already counted: no second hook
        twin(torch.randn(1, 3))
        assert counter.snapshot() == PassCount(6, 3)
        # A copy can still be pickled (the hook pickles as an inert one).
        buf = io.BytesIO()
        torch.save(twin, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        loaded(torch.randn(4, 3))
        assert counter.snapshot() == PassCount(6, 3)
        never_ran = copy.deepcopy(model)
    # Models that ran are cleaned; a copy that never ran keeps an inert hook.
    assert not _has_hooks(model) and not _has_hooks(twin) and not _has_hooks(twin_of_twin)
    never_ran(torch.randn(9, 3)).sum().backward()
    assert counter.snapshot() == PassCount(6, 3)


def test_paused_counts_nothing_and_attaches_nothing() -> None:
    spec = ModelSpec("mlp", 3, in_chans=1, img_size=4)
    counter = PassCounter()
    with counter.counting(_mlp()) as c:
        model = spec.build(seed=0)
        assert _has_hooks(model) and active_counter() is c
        with c.paused():
            assert active_counter() is None
            model(torch.randn(4, 1, 4, 4)).sum().backward()
            built_while_paused = spec.build(seed=1)
            assert not _has_hooks(built_while_paused)
        assert counter.snapshot() == PassCount()
        model(torch.randn(2, 1, 4, 4)).sum().backward()
        assert counter.snapshot() == PassCount(2, 2)
    assert active_counter() is None and not _has_hooks(model)


def test_build_outside_a_counter_is_unchanged() -> None:
    spec = ModelSpec("mlp", 3, in_chans=1, img_size=4)
    a, b = spec.build(seed=3), spec.build(seed=3)
    assert not _has_hooks(a)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with PassCounter().counting():
        c = spec.build(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


# --------------------------------------------------------------------------------------------
# run_method on the digits-class workload
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    from raysweep.workload import load_workload_config, prepare

    old = os.environ.get("RAYSWEEP_CACHE")
    os.environ["RAYSWEEP_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield prepare(load_workload_config("digits-class"), quiet=True)
    finally:
        if old is None:
            os.environ.pop("RAYSWEEP_CACHE", None)
        else:
            os.environ["RAYSWEEP_CACHE"] = old


def _run(w, name: str, values: dict | None = None, **kw):
    data = w.unlearn_data(batch_size=w.config.train.batch_size)
    ctx = w.context()
    model = w.build_model()
    res = run_method(name, model, data, make_config(name, values or {}), ctx, **kw)
    assert not _has_hooks(model) and not _has_hooks(ctx.original)
    return res


def test_retrain_with_the_recipe_costs_retrain_passes(digits) -> None:
    recipe = digits.config.train
    res = _run(digits, "retrain")
    assert res.epochs == recipe.epochs
    n_retain = len(digits.splits["retain"])
    assert n_retain % recipe.batch_size != 0             # the partial last batch is counted
    assert res.cost == retrain_passes(n_retain, recipe.epochs)
    assert [e.cost for e in res.history] == [retrain_passes(n_retain, k + 1)
                                             for k in range(recipe.epochs)]


def test_finetune_one_epoch_is_one_pass_over_retain(digits) -> None:
    n = len(digits.splits["retain"])
    res = _run(digits, "finetune", {"epochs": 1})
    assert res.cost == PassCount(n, n)
    assert res.cost.as_metrics()["cost/passes"] == 3 * n


def test_counts_are_deterministic(digits) -> None:
    for name in ("bad-teaching", "unsir"):
        first = _run(digits, name, max_epochs=1).cost
        second = _run(digits, name, max_epochs=1).cost
        assert first == second and first.forward > 0


def test_bad_teacher_from_fresh_model_is_counted(digits) -> None:
    cfg = make_config("bad-teaching")
    n_f = len(digits.splits["forget"])
    k = len(random_subset(digits.splits["retain"], cfg.retain_fraction, seed=digits.config.seed))
    res = _run(digits, "bad-teaching")
    # student on D_f ∪ subset (forward + backward), bad teacher on D_f, good teacher on the subset.
    assert res.cost == PassCount(forward=2 * (n_f + k), backward=n_f + k)


def test_unsir_counts_noise_learning_exactly(digits) -> None:
    values = {"noise_steps": 5, "noise_batch_size": 16, "noise_rows": 16, "noise_copies": 3,
              "retain_per_class": 20}
    res = _run(digits, "unsir", values)
    labels = len(digits.forget_classes)
    retained = len(set(digits.splits["retain"].tensors[1].tolist()))
    noise = 5 * 16 * labels                              # noise learning: grads w.r.t. the input
    impair = 16 * labels * 3 + 20 * retained
    repair = 20 * retained
    assert [e.cost for e in res.history] == [PassCount(noise + impair, noise + impair),
                                             PassCount(noise + impair + repair,
                                                       noise + impair + repair)]


def test_unsir_on_a_text_model_counts_forward_embeds() -> None:
    from raysweep.testing import tiny_text_problem

    prob = tiny_text_problem(train_epochs=2)
    values = {"noise_steps": 3, "noise_batch_size": 8, "noise_copies": 2, "retain_per_class": 5,
              "batch_size": 16}
    res = run_method("unsir", prob.fresh_copy(), prob.data, make_config("unsir", values), prob.ctx,
                     max_epochs=1)
    retained = len(set(prob.data.retain.tensors[1].tolist()))
    expected = 3 * 8 + 8 * 2 + 5 * retained              # noise (forward_embeds) + impair
    assert res.cost == PassCount(expected, expected)


def test_evaluation_inside_on_epoch_is_not_counted(digits) -> None:
    n = len(digits.splits["retain"])
    seen: list[PassCount | None] = []
    built: list[nn.Module] = []
    ctx_holder: dict = {}

    def on_epoch(event: EpochEnd, seconds: float) -> bool:
        seen.append(event.cost)
        predict_logits(model, digits.splits["val"], device=torch.device("cpu"))
        model(digits.splits["val"].tensors[0][:8]).sum().backward()   # even with gradients
        fresh = ctx_holder["ctx"].fresh_model()
        fresh(digits.splits["val"].tensors[0][:8])
        built.append(fresh)
        return False

    data = digits.unlearn_data(batch_size=32)
    ctx = digits.context()
    ctx_holder["ctx"] = ctx
    model = digits.build_model()
    counter = PassCounter()
    res = run_method("finetune", model, data, make_config("finetune", {"epochs": 2}), ctx,
                     on_epoch=on_epoch, counter=counter)
    assert seen == [PassCount(n, n), PassCount(2 * n, 2 * n)]
    assert res.cost == PassCount(2 * n, 2 * n) == counter.snapshot()
    assert [e.cost for e in res.history] == seen
    assert not any(_has_hooks(m) for m in built)


def test_counter_is_detached_on_error(digits) -> None:
    def boom(event: EpochEnd, seconds: float) -> bool:
        raise RuntimeError("boom")

    data = digits.unlearn_data(batch_size=32)
    ctx = digits.context()
    model = digits.build_model()
    counter = PassCounter()
    with pytest.raises(RuntimeError, match="boom"):
        run_method("finetune", model, data, make_config("finetune"), ctx, on_epoch=boom,
                   counter=counter)
    assert not _has_hooks(model) and not _has_hooks(ctx.original)
    assert active_counter() is None
    n = len(digits.splits["retain"])
    assert counter.snapshot() == PassCount(n, n)
    # A reused counter keeps adding; RunResult.cost is the run's own share.
    res = run_method("finetune", model, data, make_config("finetune", {"epochs": 1}), ctx,
                     counter=counter)
    assert res.cost == PassCount(n, n) and counter.snapshot() == PassCount(2 * n, 2 * n)


@pytest.mark.parametrize("name", list_methods())
def test_every_method_reports_its_cost(digits, name: str) -> None:
    if "classify" in get_method(name).tasks:
        res = _run(digits, name, max_epochs=1)
    else:  # a language-model method: the tiny GPT of the conformance suite
        import copy

        from raysweep.testing import tiny_lm_problem

        prob = tiny_lm_problem()
        model = copy.deepcopy(prob.model)
        res = run_method(name, model, prob.data, make_config(name, {}), prob.ctx, max_epochs=1)
        assert not _has_hooks(model)
    assert res.epochs == 1
    assert res.cost.forward > 0, name
    assert res.history[-1].cost == res.cost
    info = get_method(name)
    if name == "ssd":
        # One shot, no training, but gradients for the importances on D_f and on D = D_r ∪ D_f.
        n = (len(digits.splits["forget"]) + len(digits.splits["forget"])
             + len(digits.splits["retain"]))
        assert res.cost == PassCount(n, n)
    elif info.one_shot:
        assert res.cost.backward >= 0
    else:
        assert res.cost.backward > 0, name
