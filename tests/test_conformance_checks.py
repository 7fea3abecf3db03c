"""The conformance checks catch the methods they exist for, and ``run_method`` guards the data.

Each bad method is registered under a unique name for one test (``temporary_method``) and must
fail exactly its named check; a well-behaved twin passes every check.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch.utils.data import TensorDataset

import raysweep.methods._base as base
from raysweep.methods import EpochEnd, MethodConfig, run_method
from raysweep.methods._base import MethodContractError
from raysweep.testing import (
    CHECKS,
    CheckSkipped,
    MethodCheckError,
    check_config_bounds,
    check_method,
    temporary_method,
    tiny_problem,
)


class TinyConfig(MethodConfig):
    epochs: int = Field(2, ge=1, le=20, description="epochs")
    lr: float = Field(0.05, gt=0, le=1, description="SGD learning rate")
    batch_size: int = Field(16, ge=1, le=4096, description="batch size")


def _epoch(model, loader, opt, ctx) -> float:
    total = 0.0
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(x.to(ctx.device)), y.to(ctx.device))
        loss.backward()
        opt.step()
        total += loss.item()
    return total


def good(model, data, cfg, ctx) -> Iterator[EpochEnd]:
    """Fine-tune on D_r, data order from ctx.seed."""
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    for e in range(cfg.epochs):
        loss = _epoch(model, data.loader("retain", cfg.batch_size, seed=ctx.seed + e), opt, ctx)
        yield EpochEnd(e + 1, {"loss": loss})


def ignores_seed(model, data, cfg, ctx) -> Iterator[EpochEnd]:
    """Fine-tune on D_r in an order drawn from its own fixed generator (ignores ctx.seed)."""
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(1234)
    x, y = data.retain.tensors
    for e in range(cfg.epochs):
        order = torch.randperm(len(y), generator=gen)
        batches = [(x[i], y[i]) for i in order.split(cfg.batch_size)]
        yield EpochEnd(e + 1, {"loss": _epoch(model, batches, opt, ctx)})


def mutates_forget(model, data, cfg, ctx) -> Iterator[EpochEnd]:
    """Relabel D_f in place (the bug of the issue), then train on it and D_r."""
    yf = data.forget.tensors[1]
    yf.copy_((yf + 1) % data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    for e in range(cfg.epochs):
        _epoch(model, data.loader("forget", cfg.batch_size, seed=ctx.seed + e), opt, ctx)
        loss = _epoch(model, data.loader("retain", cfg.batch_size, seed=ctx.seed + e), opt, ctx)
        yield EpochEnd(e + 1, {"loss": loss})


def repeats_a_number(model, data, cfg, ctx) -> Iterator[EpochEnd]:
    """Yields epochs 1, 1, 3."""
    for e, event in zip(range(cfg.epochs), good(model, data, cfg, ctx)):
        yield EpochEnd([1, 1, 3, 4, 5][e], event.metrics)


def extra_yield(model, data, cfg, ctx) -> Iterator[EpochEnd]:
    """Yields epochs 1..epochs, then once more for the final model."""
    yield from good(model, data, cfg, ctx)
    yield EpochEnd(cfg.epochs + 1, {})


def _failed(fn, **options) -> set[str]:
    name = f"test-{fn.__name__}-{uuid.uuid4().hex[:8]}"
    with temporary_method(name, fn, config=TinyConfig, **options):
        report = check_method(name, raise_on_failure=False)
    assert [r.check for r in report.results] == [c.__name__ for c in CHECKS]
    return {r.check for r in report.results if r.status == "failed"}


def test_a_well_behaved_method_passes_every_check() -> None:
    assert _failed(good) == set()


@pytest.mark.parametrize(("fn", "config", "check"), [
    (ignores_seed, {}, "check_seed_sensitive"),
    (mutates_forget, {}, "check_data_untouched"),
    (repeats_a_number, {"epochs": 3}, "check_yields_epochs"),
    (extra_yield, {}, "check_yields_epochs"),
])
def test_each_bad_method_fails_its_named_check(fn, config, check: str) -> None:
    class Config(TinyConfig):
        epochs: int = Field(config.get("epochs", 2), ge=1, le=20)

    name = f"test-{fn.__name__}-{uuid.uuid4().hex[:8]}"
    with temporary_method(name, fn, config=Config):
        report = check_method(name, raise_on_failure=False)
        with pytest.raises(MethodCheckError) as info:
            check_method(name)
    assert {r.check for r in report.failed} == {check}, str(report)
    # The error lists every check with its outcome.
    text = str(info.value)
    assert f"FAILED  {check}: {name}" in text and "PASSED  check_budget" in text
    assert info.value.report.failed[0].check == check


def test_the_failure_messages_say_what_the_method_did() -> None:
    def message(fn, check: str) -> str:
        name = f"test-{fn.__name__}-{uuid.uuid4().hex[:8]}"
        with temporary_method(name, fn, config=TinyConfig):
            report = check_method(name, raise_on_failure=False)
        (r,) = [r for r in report.results if r.check == check]
        return r.message

    assert "same weights under ctx.seed=0 and 1" in message(ignores_seed, "check_seed_sensitive")
    assert "modified data.forget y in place" in message(mutates_forget, "check_data_untouched")
    assert "yielded 3 times with epochs=2 (extra yields)" in message(extra_yield,
                                                                    "check_yields_epochs")


def test_a_method_registered_deterministic_skips_the_seed_check() -> None:
    name = f"test-det-{uuid.uuid4().hex[:8]}"
    with temporary_method(name, ignores_seed, config=TinyConfig, stochastic=False):
        report = check_method(name)
    (seed,) = [r for r in report.results if r.check == "check_seed_sensitive"]
    assert seed.status == "skipped" and report.passed


def test_generate_only_lists_every_named_check() -> None:
    pairs = check_method("finetune", generate_only=True)
    assert [n for n, _ in pairs] == [c.__name__ for c in CHECKS]
    assert len({n for n, _ in pairs}) == len(CHECKS) >= 10


def test_every_bound_is_checked_not_only_the_first() -> None:
    class Clamping(TinyConfig):
        momentum: float = Field(0.9, ge=0, lt=1, description="momentum")

        @field_validator("momentum", mode="before")
        @classmethod
        def _clamp(cls, v: float) -> float:  # silently "fixes" values above the bound
            return min(float(v), 0.99)

    name = f"test-clamp-{uuid.uuid4().hex[:8]}"
    with (
        temporary_method(name, good, config=Clamping),
        pytest.raises(AssertionError, match=r"momentum=1 accepted \(lt=1\)"),
    ):
        check_config_bounds(name)


def test_check_skipped_is_raised_for_checks_that_do_not_apply() -> None:
    from raysweep.testing import check_text_model

    with pytest.raises(CheckSkipped, match="supports_text=False"):
        check_text_model("rotate")


# --- the data guard in run_method ----------------------------------------------------------

@pytest.fixture()
def prob():
    return tiny_problem(seed=0)


def _guarded(fn, prob, **run_kw):
    name = f"test-{fn.__name__}-{uuid.uuid4().hex[:8]}"
    with temporary_method(name, fn, config=TinyConfig):
        return name, run_method(name, prob.fresh_copy(), prob.data, TinyConfig(), prob.ctx,
                                **run_kw)


def test_a_write_fails_the_run_in_one_line_before_the_epoch_is_seen(prob) -> None:
    seen: list = []
    y_before = prob.data.forget.tensors[1].clone()
    with pytest.raises(MethodContractError) as info:
        _guarded(mutates_forget, prob, on_epoch=lambda e, s: seen.append(e))
    msg = str(info.value)
    assert "\n" not in msg and "modified data.forget in place" in msg
    assert "methods must not write to UnlearnData — copy first" in msg
    assert "after epoch 1" in msg
    assert seen == []                                       # never evaluated on corrupted data
    assert torch.equal(prob.data.forget.tensors[1], y_before)  # restored: the next run is clean


def test_the_next_run_is_unaffected(prob) -> None:
    def weights(p) -> list[torch.Tensor]:
        name = f"test-good-{uuid.uuid4().hex[:8]}"
        with temporary_method(name, good, config=TinyConfig):
            model = p.fresh_copy()
            run_method(name, model, p.data, TinyConfig(), p.ctx)
        return list(model.state_dict().values())

    clean = weights(copy.deepcopy(prob))
    with pytest.raises(MethodContractError):
        _guarded(mutates_forget, prob)
    after = weights(prob)
    assert all(torch.equal(a, b) for a, b in zip(clean, after))


def test_writes_the_version_counter_misses_are_caught_by_the_checksum(
        prob, monkeypatch) -> None:
    def through_numpy(model, data, cfg, ctx):
        data.retain.tensors[0].numpy().reshape(-1)[5] += 1.0   # no version bump
        yield EpochEnd(1, {})

    # The large-tensor path on the tiny tensors, with a sample of element 0 only: the
    # checksum over every word must see the write.
    monkeypatch.setattr(base, "_FULL_HASH_BYTES", 0)
    monkeypatch.setattr(base, "_SAMPLE", 1)
    with pytest.raises(MethodContractError, match=r"data.retain x: values changed"):
        _guarded(through_numpy, prob)


def test_an_unrestorable_write_fails_every_later_run_on_that_data(
        prob, monkeypatch) -> None:
    monkeypatch.setattr(base, "_BACKUP_MAX_BYTES", 0)
    with pytest.raises(MethodContractError, match="could not be restored"):
        _guarded(mutates_forget, prob)
    with pytest.raises(MethodContractError, match=r"data.forget y was modified in place by an "
                                                  r"earlier run \(method 'test-mutates_forget"):
        _guarded(good, prob)


def test_rebinding_the_data_stays_private(prob) -> None:
    forget = prob.data.forget

    def rebinds(model, data, cfg, ctx):
        x, y = data.forget.tensors
        data.forget = TensorDataset(x, torch.zeros_like(y))
        data.retain.tensors = (data.retain.tensors[0][:1], data.retain.tensors[1][:1])
        data.num_classes = 99
        yield from good(model, data, cfg, ctx)

    _guarded(rebinds, prob)
    assert prob.data.forget is forget and prob.data.num_classes == 4
    assert len(prob.data.retain) == 48


def test_a_method_that_raises_after_writing_still_fails_on_the_write(prob) -> None:
    def writes_then_raises(model, data, cfg, ctx):
        data.val.tensors[1].zero_()
        raise ValueError("boom")
        yield  # pragma: no cover

    y_val = prob.data.val.tensors[1].clone()
    with pytest.raises(MethodContractError, match=r"data.val y: values changed; found at the end"):
        _guarded(writes_then_raises, prob)
    assert torch.equal(prob.data.val.tensors[1], y_val)


def test_yielding_something_else_than_epoch_end_is_a_contract_error(prob) -> None:
    def yields_int(model, data, cfg, ctx):
        yield 1

    with pytest.raises(MethodContractError, match="yielded int 1, not an EpochEnd"):
        _guarded(yields_int, prob)
