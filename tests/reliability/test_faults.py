"""Faults injected into real sweeps (local Ray, the digits workload, MLflow on sqlite).

The test-only method ``faulty`` (``rs_faulty_plugin``, loaded through ``RAYSWEEP_PLUGINS`` in
the driver and the Ray workers) raises, reports a NaN loss, or sleeps past the time budget.
Checked: the failed trials are FAILED runs carrying the reason (``raysweep.error``), the
over-budget one is stopped and says so (``raysweep.stopped``), the healthy ones finish with
every epoch's metrics although trials ran concurrently, and ``search.max_failed_trials`` turns
into exit code 1 once exceeded.

Covered elsewhere: the driver SIGKILLed mid-sweep and ``raysweep resume`` (no finished trial
re-run, no run duplicated or lost) is ``tests/sweep/test_sweep_e2e.py::test_driver_crash_resumes``
(slow) and, for Ctrl-C, the default ``test_resume_finishes_without_rerunning_or_duplicating``;
a worker node killed mid-sweep is ``test_faults_cluster.py`` (cluster).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
from rs_counts import COUNTS

from raysweep.cli import main

SWEEP = """\
schema_version: 1
name: faults
workload: digits-class
methods:
  faulty:
    parameters:
      mode: {{values: [{modes}]}}
      seconds: {{value: 1.5}}
      epochs: {{value: 2}}
search: {{algorithm: grid, max_concurrent: {conc}, seed: 0, max_failed_trials: {max_failed}}}
budget: {{max_epochs: 2, max_seconds: 1.0}}
seeds: [0]
resources_per_trial: {{cpu: 1}}
tracking: {{checkpoints: none}}
"""


@pytest.fixture()
def faulty_env(private_env: Path):
    importlib.import_module("rs_faulty_plugin")  # the driver's registry (workers: env var)
    yield private_env
    from raysweep.methods._base import _METHODS

    _METHODS.pop("faulty", None)  # leave the registry as other test modules expect it
    sys.modules.pop("rs_faulty_plugin", None)


def _trial_runs(root: Path, sweep_id: str) -> tuple:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = c.get_experiment_by_name("raysweep")
    runs = c.search_runs([exp.experiment_id], f"tags.`raysweep.sweep_id` = '{sweep_id}'",
                         max_results=1000)
    return c, [r for r in runs if r.data.tags.get("raysweep.kind") == "trial"], runs


def _write(root: Path, **kw: object) -> str:
    p = root / "faults.yaml"
    p.write_text(SWEEP.format(**kw))
    return str(p)


@pytest.mark.timeout(400)
def test_failures_are_recorded_and_the_sweep_continues(faulty_env: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = faulty_env
    path = _write(root, modes="ok, raise, nan, sleep", conc=2, max_failed=2)
    capsys.readouterr()
    rc = main(["run", path, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-4000:]
    doc = json.loads(out)
    COUNTS["faults_injected"] += 3  # raise, nan, sleep
    assert doc["status"] == "finished"
    assert doc["counts"] == {"trials": 4, "finished": 2, "failed": 2, "unfinished": 0}
    c, trials, runs = _trial_runs(root, doc["sweep_id"])
    COUNTS["runs_lost"] += max(0, 4 - len({r.data.tags["raysweep.trial_id"] for r in trials}))
    by_mode = {r.data.params["mode"]: r for r in trials}
    assert sorted(by_mode) == ["nan", "ok", "raise", "sleep"] and len(trials) == 4
    assert sum(r.data.tags["raysweep.kind"] == "sweep" for r in runs) == 1

    raised, nan = by_mode["raise"], by_mode["nan"]
    assert raised.info.status == "FAILED"
    assert "InjectedFault" in raised.data.tags["raysweep.error"]
    assert "injected fault at epoch 1" in raised.data.tags["raysweep.error"]
    assert nan.info.status == "FAILED"
    assert "diverged" in nan.data.tags["raysweep.error"]
    assert "loss=nan" in nan.data.tags["raysweep.error"]
    COUNTS["faults_survived"] += 2

    slow = by_mode["sleep"]
    assert slow.info.status == "FINISHED"
    assert slow.data.metrics["budget/over"] == 1.0
    assert "time budget exceeded" in slow.data.tags["raysweep.stopped"]
    assert [m.step for m in c.get_metric_history(slow.info.run_id, "objective")] == [1]
    COUNTS["faults_survived"] += 1

    ok = by_mode["ok"]  # ran concurrently with the others: every epoch's metrics are there
    assert ok.info.status == "FINISHED" and "raysweep.stopped" not in ok.data.tags
    for key in ("objective", "forget/acc", "dist/mia_auc/val", "train/loss"):
        assert [m.step for m in c.get_metric_history(ok.info.run_id, key)] == [1, 2], key
    # the chosen epoch, evaluated in full once: every metric, test and D_r included
    assert {"best/objective", "best/retain/acc", "best/mia/lr_auc", "best/objective/test",
            "rs/trial_seconds", "rs/eval_seconds"} <= set(ok.data.metrics)
    assert len({r.data.tags["raysweep.trial_id"] for r in trials}) == 4  # none lost or doubled
    assert "failed" in err and "InjectedFault" in err


@pytest.mark.timeout(400)
def test_max_failed_trials_exceeded_exits_1(faulty_env: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = faulty_env
    path = _write(root, modes="raise, nan, ok", conc=1, max_failed=0)
    capsys.readouterr()
    rc = main(["run", path, "--json"])
    out, err = capsys.readouterr()
    COUNTS["faults_injected"] += 1
    assert rc == 1, err[-4000:]
    doc = json.loads(out)
    assert doc["status"] == "failed" and doc["counts"]["failed"] >= 1
    assert "search.max_failed_trials" in err
    _c, trials, runs = _trial_runs(root, doc["sweep_id"])
    parent = [r for r in runs if r.data.tags["raysweep.kind"] == "sweep"]
    assert len(parent) == 1 and parent[0].info.status == "FAILED"
    failed = [r for r in trials if r.info.status == "FAILED"]
    assert failed and all(r.data.tags.get("raysweep.error") for r in failed)
    COUNTS["faults_survived"] += 1  # the sweep stopped cleanly, as configured
