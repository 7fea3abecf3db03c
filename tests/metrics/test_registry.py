"""The metric registry: every key declared once, every declared key produced, every consumer
(objective spec, leaderboard directions, report labels, suite tolerances, the CLI) reading it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from raysweep.metrics import TERMS
from raysweep.metrics.oracle import HELDOUT_SPLITS
from raysweep.metrics.registry import (
    METRICS,
    UNITS,
    UnknownMetricError,
    maximize_keys,
    metric_info,
    objective_keys,
    per_epoch_keys,
    register_metric,
)

# Result keys a run reports beside the metrics: bookkeeping, not metrics (never declared).
_BOOKKEEPING_PREFIXES = ("rs/", "train/", "budget/")
_BOOKKEEPING = {"epoch", "best_epoch"}


def _metric_keys(result: dict[str, Any]) -> set[str]:
    return {k for k in result if k not in _BOOKKEEPING and not k.startswith(_BOOKKEEPING_PREFIXES)}


# -- the registry itself --------------------------------------------------------------------

def test_unknown_key_names_the_closest_declared_one():
    with pytest.raises(UnknownMetricError, match=r"'test/accc'; did you mean 'test/acc'\?"):
        metric_info("test/accc")
    # a lookup error (KeyError) and a validation error (ValueError) at once
    assert issubclass(UnknownMetricError, KeyError) and issubclass(UnknownMetricError, ValueError)


def test_a_pattern_declares_one_key_per_heldout_split_with_the_split_s_role():
    assert HELDOUT_SPLITS == ("val", "test")
    val, test = metric_info("dist/mia_auc/val"), metric_info("dist/mia_auc/test")
    assert (val.role, test.role) == ("selection", "report")
    assert val.per_epoch and not test.per_epoch  # test is never evaluated per epoch
    assert val.pattern == test.pattern == "dist/mia_auc/{split}"
    assert metric_info("mia/auc/test").distance == "dist/mia_auc/test"
    assert metric_info("mia/auc/test").label == "AUC (test)"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"direction": "up"}, "direction must be one of"),
    ({"unit": "furlongs"}, "unit must be one of"),
    ({"role": "training"}, "role must be one of"),
    ({"source": "magic"}, "source must be one of"),
])
def test_register_metric_rejects_bad_declarations_and_adds_nothing(kwargs, fragment):
    before = dict(METRICS)
    args: dict[str, Any] = {"direction": "max", "unit": "fraction", "role": "report",
                            "computed_by": "tests", **kwargs}
    with pytest.raises(ValueError, match=fragment):
        register_metric("test/new_metric", "a metric of this test", **args)
    assert before == METRICS


def test_register_metric_rejects_a_second_declaration_and_a_role_on_a_pattern():
    before = dict(METRICS)
    with pytest.raises(ValueError, match="'zrf' is already declared"):
        register_metric("zrf", "again", direction="max", unit="score", role="selection",
                        computed_by="tests")
    with pytest.raises(ValueError, match="already declared"):  # one split clashes: none added
        register_metric("probe/{split}", "again", direction="oracle", unit="probability",
                        computed_by="tests")
    with pytest.raises(ValueError, match="role follows the split"):
        register_metric("new/{split}", "x", direction="max", unit="score", role="report",
                        computed_by="tests")
    assert before == METRICS


def test_every_declaration_is_complete_and_its_distance_is_a_declared_lower_is_better_key():
    for key, m in METRICS.items():
        assert m.meaning and m.unit in UNITS and m.computed_by.startswith("raysweep."), key
        if m.distance is not None:
            assert METRICS[m.distance].direction == "min", key
        if m.per_epoch:  # only selection may run every epoch: per-epoch keys never read test
            assert m.role == "selection", key


def test_the_objective_terms_raw_and_distance_keys_are_declared_and_linked():
    for term in TERMS:
        for split in HELDOUT_SPLITS:
            raw, dist = term.raw_key(split), term.dist_key(split)
            assert metric_info(raw).distance == dist, (raw, dist)
            assert metric_info(dist).direction == "min"


# -- the consumers -------------------------------------------------------------------------

def test_leaderboard_and_claims_directions_come_from_the_registry():
    from raysweep.sweep.leaderboard import MAXIMIZE, direction

    assert maximize_keys() == MAXIMIZE
    for key, m in METRICS.items():
        assert direction(key) == ("max" if m.direction == "max" else "min"), key


def test_report_columns_are_the_registry_s_labelled_keys():
    from raysweep.report import METRICS as COLUMNS
    from raysweep.report import metric_column

    labelled = {k for k, m in METRICS.items() if m.label}
    assert labelled <= set(COLUMNS)
    assert set(COLUMNS) - labelled == {"n_seeds", "budget_stopped"}  # bookkeeping, not metrics
    for key in labelled:
        col, m = COLUMNS[key], METRICS[key]
        assert (col.label, col.unit, col.scale, col.meaning) == (
            m.label, m.display_unit, m.scale, m.meaning), key
    # relative accuracies are stored x100 already: shown as they are, not x100 again
    assert metric_column("rel/retain_acc").cell({"rel/retain_acc": 98.5}) == "98.50"
    assert metric_column("retain/acc").cell({"retain/acc": 0.985}) == "98.50"
    assert metric_column("time/seconds").header == "Time (s)"


def test_objective_spec_accepts_declared_selection_keys_and_rejects_the_rest():
    from pydantic import ValidationError

    from raysweep.sweep.space import KNOWN_METRICS, ObjectiveSpec

    assert ("composite", *objective_keys()) == KNOWN_METRICS
    for key in objective_keys():
        goal = "maximize" if METRICS[key].direction == "max" else "minimize"
        assert ObjectiveSpec(metric=key, goal=goal).metric == key
    cases = {
        "dist/mia_auc/tset": "did you mean 'dist/mia_auc/val'",    # a typo: the val twin
        "bogus/metric": "unknown metric 'bogus/metric'",           # a made-up family
        "dist/probe/test": "use its selection twin 'dist/probe/val'",
        "mia/catboost": "reads the test split",
        "objective": "not recorded by a sweep trial before its objective",
        "relearn/epochs": "not recorded by a sweep trial",          # suites measure it
    }
    for metric, fragment in cases.items():
        with pytest.raises(ValidationError, match=fragment.replace("(", r"\(")):
            ObjectiveSpec(metric=metric)


def test_suite_tolerance_directions_are_checked_against_the_declared_direction():
    from raysweep.bench.suite import Tolerance, _check_direction, _check_metric
    from raysweep.errors import ConfigError

    for key, m in METRICS.items():
        for direction, wrong in (("lower_is_better", "max"), ("higher_is_better", "min")):
            tol = Tolerance(direction=direction, abs=0.1)
            if m.direction == wrong:
                with pytest.raises(ConfigError, match=f"tolerances.{key}.direction"):
                    _check_direction(key, tol, f"s.yaml: tolerances.{key}")
            else:  # oracle-referenced keys (forget/acc) may be gated either way
                _check_direction(key, tol, f"s.yaml: tolerances.{key}")
        _check_metric(key, "s.yaml: tolerances")
    with pytest.raises(ConfigError, match="did you mean 'mia/lr_auc'"):
        _check_metric("mia/lr_acu", "s.yaml: tolerances")


def test_cli_lists_the_registry_and_an_unknown_key_is_one_usage_error_line(capsys):
    from raysweep.cli import main

    assert main(["metrics", "--all", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["key"] for m in doc["metrics"]] == list(METRICS)
    assert main(["metrics", "list", "--json"]) == 0   # like `raysweep methods list`
    assert json.loads(capsys.readouterr().out) == doc
    assert main(["metrics", "dist/js", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"][0]["direction"] == "min"
    assert main(["metrics", "dist/jss"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("raysweep: error:")
    assert "'dist/jss'" in err[0] and "did you mean 'dist/js'" in err[0]


# -- every key a real evaluation or run produces is declared, and vice versa -----------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from raysweep.workload import load_workload_config, prepare

    mp = pytest.MonkeyPatch()
    mp.setenv("RAYSWEEP_CACHE", str(tmp_path_factory.mktemp("registry-cache")))
    try:
        yield prepare(load_workload_config("digits-class"), quiet=True)
    finally:
        mp.undo()


def test_evaluate_returns_exactly_the_declared_evaluate_keys(digits):
    got = digits.evaluate(digits.original_outputs, seconds=1.0, retrain_seconds=2.0,
                          catboost=True, seed=0)
    undeclared = sorted(set(got) - set(METRICS))
    assert not undeclared, f"declare these in raysweep/metrics/registry.py: {undeclared}"
    declared = {k for k, m in METRICS.items() if m.source == "evaluate" and "classify" in m.tasks}
    assert sorted(declared - set(got)) == []  # declared, but evaluate never produces it
    assert {k: METRICS[k].source for k in got} == dict.fromkeys(got, "evaluate")


@pytest.fixture(scope="module")
def trial_reports(digits):
    """Every report of a two-epoch fine-tuning run, as a sweep trial runs it."""
    import torch

    from raysweep.engine import TrialPlan, run_trial
    from raysweep.metrics import ObjectiveConfig
    from raysweep.sweep.space import ObjectiveSpec

    plan = TrialPlan(objectives=[ObjectiveSpec()], objective_config=ObjectiveConfig(),
                     reference=digits.reference_metrics(catboost=False), max_epochs=2,
                     catboost=True)
    reports: list[dict[str, Any]] = []
    run_trial({"method": "finetune", "finetune": {"epochs": 2}, "seed": 0}, digits, plan,
              report=lambda result, *_: reports.append(dict(result)),
              device=torch.device("cpu"))
    return reports


def test_a_trial_records_declared_keys_only_and_every_declared_run_key(trial_reports):
    epochs = [r for r in trial_reports if not r.get("rs/final")]
    final = trial_reports[-1]
    assert epochs and final.get("rs/final")
    for r in epochs:  # per epoch: exactly the per-epoch keys (selection evaluation, cost, time)
        now = {k for k in _metric_keys(r) if not k.startswith("best/")}
        assert now - {"objective"} == set(per_epoch_keys("classify"))
    best = {k[len("best/"):] for k in final if k.startswith("best/")}
    assert sorted(best - set(METRICS)) == []
    run_keys = {k for k, m in METRICS.items()
                if m.source in ("evaluate", "run") and "classify" in m.tasks}
    assert sorted(run_keys - best) == []  # every declared key reaches a leaderboard row


@pytest.mark.parametrize("module", ["raysweep.metrics._evaluate", "raysweep.metrics.oracle"])
def test_keys_named_in_the_evaluation_docs_are_declared(module):
    import importlib
    import re

    doc = importlib.import_module(module).__doc__ or ""
    named = set(re.findall(r"``([a-z_]+(?:/[a-z_<>]+)+)``", doc))
    assert len(named) > 5
    keys = {k.replace("<split>", s) for k in named for s in HELDOUT_SPLITS}
    keys |= {k.replace("<name>", "forget_acc") for k in keys if "<name>" in k}
    undeclared = sorted(k for k in keys if "<" not in k and k not in METRICS)
    assert undeclared == [], f"{module} documents undeclared keys: {undeclared}"


def test_paper_rankings_read_each_metric_s_goal_from_the_registry():
    from raysweep.bench.paper import METRIC_GOALS

    assert METRIC_GOALS["mia/lr_auc"] == 0.5          # a target: closer to it is better
    assert METRIC_GOALS["relearn/epochs"] == "higher"  # paper 003: longer relearn = forgotten
    assert METRIC_GOALS["forget/acc"] == "oracle"
    assert "js/original" not in METRIC_GOALS           # read both ways: never ranked
    with pytest.raises(ValueError, match="target is the ideal value"):
        register_metric("test/new_metric", "x", direction="max", unit="score", role="report",
                        computed_by="tests", target=1.0)


def test_keys_declared_for_class_forgetting_only_are_absent_under_random_forgetting():
    from _metrics_synth import outputs_with_acc

    from raysweep.metrics import evaluate

    acc = {"forget": 0.5, "retain": 0.8, "val": 0.7, "test": 0.7}
    got = evaluate(outputs_with_acc(acc, seed=1), original=outputs_with_acc(acc, seed=2),
                   retrain=outputs_with_acc(acc, seed=3), seconds=1.0, retrain_seconds=2.0,
                   catboost=False)
    assert sorted(set(got) - set(METRICS)) == []
    class_only = {k for k, m in METRICS.items() if m.scenarios == ("class",)}
    assert class_only and not class_only & set(got)


def test_an_objective_goal_against_the_declared_direction_is_rejected():
    from pydantic import ValidationError

    from raysweep.sweep.space import ObjectiveSpec

    for key in objective_keys():
        direction = METRICS[key].direction
        for goal in ("minimize", "maximize"):
            against = (direction, goal) in {("max", "minimize"), ("min", "maximize")}
            if against:
                with pytest.raises(ValidationError, match=f"goal: {goal}, but"):
                    ObjectiveSpec(metric=key, goal=goal)
            else:
                assert ObjectiveSpec(metric=key, goal=goal).goal == goal
    # the default goal (minimize) on a higher-is-better key says it was the default
    with pytest.raises(ValidationError, match=r"goal: minimize \(the default\), but higher"):
        ObjectiveSpec(metric="val/acc")
    # aiming at a value is always allowed (|metric - target| is minimised)
    assert ObjectiveSpec(metric="val/acc", target=0.9).target == 0.9
