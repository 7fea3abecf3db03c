"""The trainable, run in-process on the digits workload (no Ray): reports, budget, resume, failures."""

from __future__ import annotations

import json
import math

import pytest

from raysweep.methods import EpochEnd
from raysweep.sweep.space import parse_sweep, resolve_spec
from raysweep.sweep.trainable import TrialFailure, make_plan, objective_values, run_trial


def _plan(digits, **spec):  # noqa: ANN001, ANN202
    w, refs = digits
    s = resolve_spec(parse_sweep({"method": "finetune", "workload": "digits-class", **spec}))
    return make_plan(s, w, refs)


CFG = {"method": "finetune", "finetune": {"epochs": 3, "lr": 0.02}, "seed": 0}


def test_reports_every_epoch_with_the_running_best(digits) -> None:  # noqa: ANN001
    w, _ = digits
    plan = _plan(digits)
    reports = []
    last = run_trial(CFG, w, plan, report=lambda r, s, b: reports.append((r, s, b)))
    assert [r["epoch"] for r, _, _ in reports] == [1, 2, 3]
    for r, state, _ in reports:
        for key in ("forget/acc", "test/acc", "mia/lr_auc", "gap/oracle", "time/ratio", "objective",
                    "best/objective", "best_epoch", "rs/method_seconds", "train/loss"):
            assert key in r, key
        assert r["best/objective"] == min(x["objective"] for x, _, _ in reports[: r["epoch"]])
        assert state["epoch"] == r["epoch"] and len(state["fingerprints"]) == r["epoch"]
    assert reports[0][2] is not None  # the first epoch's weights are the first best
    assert last == reports[-1][0]
    # evaluation time is not charged to the method
    assert last["rs/method_seconds"] < last["rs/trial_seconds"]


def test_epoch_and_time_budgets_are_enforced_by_the_trainable(digits) -> None:  # noqa: ANN001
    w, _ = digits
    reports: list = []
    run_trial(CFG, w, _plan(digits, budget={"max_epochs": 1}),
              report=lambda r, s, b: reports.append(s))
    assert len(reports) == 1 and reports[0]["done"]
    reports.clear()
    run_trial(CFG, w, _plan(digits, budget={"max_seconds": 1e-6}),
              report=lambda r, s, b: reports.append((r, s)))
    (r, s), = reports  # stopped at the first epoch past the budget
    assert r["budget/over"] == 1.0 and s["done"] and r["best_epoch"] == 1


def test_resume_skips_finished_epochs(digits) -> None:  # noqa: ANN001
    w, _ = digits
    plan = _plan(digits)
    first: list = []
    run_trial(CFG, w, plan, report=lambda r, s, b: first.append((r, s)))
    state = json.loads(json.dumps(first[1][1]))  # as stored in the checkpoint after epoch 2
    second: list = []
    run_trial(CFG, w, plan, report=lambda r, s, b: second.append((r, s)), resume_state=state)
    assert [r["epoch"] for r, _ in second] == [3]  # epochs 1-2 replayed silently
    assert second[0][1]["replay_mismatch"] == []  # the replay reproduced the same weights
    assert second[0][0]["test/acc"] == pytest.approx(first[2][0]["test/acc"])
    done = {**first[-1][1], "done": True}
    assert run_trial(CFG, w, plan, report=lambda *a: pytest.fail("reported"),
                     resume_state=done) == first[-1][1]["result"]


def test_non_finite_loss_fails_the_trial(digits, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import raysweep.sweep.trainable as tr

    def diverging(name, model, data, cfg, ctx, *, max_epochs=None, on_epoch=None):  # noqa: ANN001, ANN202
        on_epoch(EpochEnd(1, {"loss": math.nan}), 0.1)

    monkeypatch.setattr(tr, "run_method", diverging)
    with pytest.raises(TrialFailure, match="non-finite training statistic"):
        run_trial(CFG, digits[0], _plan(digits), report=lambda *a: None)


def test_objectives_with_targets_and_goals(digits) -> None:  # noqa: ANN001
    plan = _plan(digits, objectives=[{"metric": "mia/auc/val", "target": 0.5},
                                     {"metric": "heldout/acc/val", "goal": "maximize"}])
    vals = objective_values({"mia/auc/val": 0.7, "heldout/acc/val": math.nan}, plan)
    assert vals["mia/auc/val_to_0.5"] == pytest.approx(0.2)
    assert vals["heldout/acc/val"] == -math.inf  # non-finite -> the worst value for its goal
