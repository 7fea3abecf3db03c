"""One run engine: a sweep trial, a suite run and ``raysweep unlearn`` give the same metrics for
the same method, config and seed (in-process on the digits workload, no Ray)."""

from __future__ import annotations

import json

import pytest
import torch

from raysweep.bench import run_one
from raysweep.engine import run_once
from raysweep.methods import EpochEnd, MethodConfig
from raysweep.sweep.space import parse_sweep, resolve_spec
from raysweep.sweep.trainable import make_plan, run_trial
from raysweep.testing import temporary_method

CONFIG = {"epochs": 2, "lr": 0.02}


def _comparable(metrics: dict[str, float]) -> dict[str, float]:
    """Everything but wall time (each run measures its own)."""
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "rs/"))}


def test_a_suite_run_and_unlearn_are_one_engine_run(
        digits, sweep_env, capsys) -> None:
    from raysweep.cli import main

    w, _ = digits
    seen: list[int] = []
    once = run_once(w, "finetune", CONFIG, 0, device=torch.device("cpu"),
                    progress=lambda event, seconds: seen.append(event.epoch))
    assert seen == [1, 2]                      # each epoch seen as the method yields it
    assert once.metrics["epochs"] == 2.0 and once.metrics["cost/ratio"] > 0
    assert "objective" in once.metrics and "objective/test" in once.metrics
    # the time ratio divides by a retrain time measured in the same process, before the run
    assert once.metrics["time/ratio"] == pytest.approx(
        once.metrics["time/seconds"] / once.metrics["time/retrain_seconds_here"])

    suite = run_one(w, "finetune", CONFIG, 0, "cpu")
    assert _comparable(suite) == _comparable(once.metrics)

    rc = main(["unlearn", "-w", "digits-class", "-m", "finetune", "--device", "cpu", "--seed", "0",
               "--no-catboost", "--set", "epochs=2", "--set", "lr=0.02", "--json"])
    assert rc == 0
    row = {r["method"]: r for r in json.loads(capsys.readouterr().out)["rows"]}["finetune"]
    for key, value in _comparable(once.metrics).items():
        assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_a_one_epoch_sweep_trial_reports_what_a_single_run_measures(
        digits) -> None:
    w, refs = digits
    spec = resolve_spec(parse_sweep({"method": "finetune", "workload": "digits-class",
                                     "budget": {"max_epochs": 1}}))
    plan = make_plan(spec, w, refs)
    result = run_trial({"method": "finetune", "finetune": CONFIG, "seed": 0}, w, plan,
                       report=lambda *a: None)
    once = run_once(w, "finetune", CONFIG, 0, device=torch.device("cpu"), max_epochs=1,
                    catboost=plan.catboost, objective_config=plan.objective_config)
    best = {k.removeprefix("best/"): v for k, v in result.items() if k.startswith("best/")}
    # One epoch: the trial's chosen epoch is the run's final weights, evaluated the same way.
    for key, value in _comparable(once.metrics).items():
        assert best[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


class _NoConfig(MethodConfig):
    pass


def _poison(model, data, cfg, ctx):
    """A method whose weights go non-finite (a diverged optimiser) with a finite loss."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    yield EpochEnd(1, {"loss": 1.0})


def test_a_diverged_run_fails_with_its_reason_not_with_nan_metrics(digits) -> None:
    from raysweep.engine import TrialFailure
    from raysweep.methods import MethodDivergedError

    w, _ = digits
    with (temporary_method("poison-test", _poison, config=_NoConfig, one_shot=True),
          pytest.raises((MethodDivergedError, TrialFailure), match="non-finite")):
        run_once(w, "poison-test", {}, 0, device=torch.device("cpu"))


def test_warm_workload_carries_the_oracle_references_to_every_trial_copy(digits) -> None:
    """The driver computes the oracle's per-seed references once; each trial's copy (a pickle,
    as Ray's object store makes it) has them, so no trial computes them again."""
    import copy
    import pickle

    workload = copy.copy(digits[0])  # a private shallow copy: the fixture stays as it was
    workload._oracle_raw, workload._oracle_lr, workload._selection_cache = {}, {}, {}
    workload.warm([0, 7], 64)
    trial_copy = pickle.loads(pickle.dumps(workload))
    assert set(trial_copy._oracle_raw) == {0, 7} and set(trial_copy._oracle_lr) == {0, 7}
    assert {(0, 64), (7, 64)} <= set(trial_copy._selection_cache)
    assert trial_copy.oracle_raw(7) == workload.oracle_raw(7)
