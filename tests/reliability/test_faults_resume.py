"""Faults injected into real sweeps and what ``raysweep resume`` makes of them.

* A crash before Ray Tune starts: the parent run ends FAILED with the reason, ``state.json``
  says so, ``status`` does not suggest a resume, and ``resume`` refuses in one line (default
  tier: Ray never starts).
* The driver SIGKILLed mid-sweep, then its newest Tune snapshot torn and a torn record left at
  the end of ``optuna.journal``: ``resume`` falls back to the last good snapshot, cuts the tail
  and completes the sweep with every trial recorded exactly once (MLflow child runs = Optuna
  trials = Tune trials, none left RUNNING, ``best/*`` logged once) (slow).
* "No space left on device" in the first attempt of every trial: infrastructure, so retried,
  never recorded as the method's failure (slow).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rs_counts import COUNTS

from raysweep.cli import main

SWEEP = """\
schema_version: 1
name: faults-resume
workload: digits-class
methods:
  faulty:
    parameters:
      mode: {{value: {mode}}}
      seconds: {{values: [{seconds}]}}
      epochs: {{value: 2}}
search: {{algorithm: grid, max_concurrent: 1, seed: 0, trial_retries: 2}}
budget: {{max_epochs: 2}}
seeds: [0]
resources_per_trial: {{cpu: 1}}
tracking: {{checkpoints: none}}
"""


@pytest.fixture()
def env(private_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAYSWEEP_KEY_FILE", str(private_env / "key" / "secret"))
    monkeypatch.setenv("RS_FAULT_DIR", str(private_env))
    importlib.import_module("rs_faulty_plugin")
    yield private_env
    from raysweep.methods._base import _METHODS

    _METHODS.pop("faulty", None)
    sys.modules.pop("rs_faulty_plugin", None)


def _write(root: Path, mode: str, seconds: str) -> str:
    p = root / "faults.yaml"
    p.write_text(SWEEP.format(mode=mode, seconds=seconds))
    return str(p)


def _mlflow(root: Path, sweep_id: str) -> tuple:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = c.get_experiment_by_name("raysweep")
    runs = c.search_runs([exp.experiment_id], f"tags.`raysweep.sweep_id` = '{sweep_id}'",
                         max_results=1000)
    return c, runs


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("raysweep:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.mark.timeout(300)
def test_crash_before_tune_starts_ends_the_parent_run_failed(
        env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import raysweep.sweep.runner as runner

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("injected: Ray failed to start (raylet died)")

    monkeypatch.setattr(runner, "ray_session", broken)
    path = _write(env, "ok", "1.0")
    capsys.readouterr()
    COUNTS["faults_injected"] += 1
    assert main(["run", path]) == 1
    (sweep_dir,) = (env / "home" / "sweeps").iterdir()
    state = json.loads((sweep_dir / "state.json").read_text())
    assert state["status"] == "failed" and "raylet died" in state["message"]
    assert "raysweep run" in state["message"]
    _, runs = _mlflow(env, sweep_dir.name)
    parent = [r for r in runs if r.data.tags.get("raysweep.kind") == "sweep"]
    assert len(parent) == 1 and parent[0].info.status == "FAILED"
    assert "raylet died" in parent[0].data.tags["raysweep.error"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # status does not send the user to a resume that refuses, and resume says why in one line.
    capsys.readouterr()
    assert main(["status", sweep_dir.name, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert "raysweep resume" not in json.dumps(status)
    assert main(["resume", sweep_dir.name]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "before Ray Tune started" in line and "raysweep run" in line
    COUNTS["faults_survived"] += 1


def _wait(predicate, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    return False


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_driver_torn_snapshot_and_journal_resume_records_each_trial_once(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = 4
    path = _write(env, "sleep", "1.0, 1.5, 2.0, 2.5")
    proc = subprocess.Popen([sys.executable, "-m", "raysweep", "run", path], cwd=env,
                            env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    home = env / "home" / "sweeps"
    try:
        ok = _wait(lambda: any(
            json.loads((d / "progress.json").read_text())["completed"] >= 1
            and (d / "ray" / "last-good").is_dir() for d in home.iterdir()), 300)
        if not ok:
            proc.kill()
            pytest.fail(f"no trial finished in time: {proc.communicate()[1][-3000:]}")
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, no clean-up
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    (sweep_dir,) = home.iterdir()
    sid = sweep_dir.name
    if json.loads((sweep_dir / "progress.json").read_text())["completed"] >= n:
        pytest.skip("the sweep finished before the kill")
    tune = sweep_dir / "ray" / "tune"
    newest = sorted(tune.glob("experiment_state-*.json"))[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # torn by the kill
    with open(sweep_dir / "optuna.journal", "ab") as f:
        f.write(b'{"op_code":5,"worker_id":"x","trial_id":1,"para')
    COUNTS["faults_injected"] += 3
    capsys.readouterr()
    # The signature was made before the tear: resume must neither fail on JSON nor on it.
    rc = main(["resume", sid, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-4000:]
    doc = json.loads(out)
    assert doc["status"] == "finished", err[-3000:]
    assert doc["counts"] == {"trials": n, "finished": n, "failed": 0, "unfinished": 0}

    c, runs = _mlflow(env, sid)
    trials = [r for r in runs if r.data.tags.get("raysweep.kind") == "trial"]
    ids = [r.data.tags["raysweep.trial_id"] for r in trials]
    COUNTS["runs_lost"] += max(0, n - len(set(ids)))
    COUNTS["runs_duplicated"] += len(ids) - len(set(ids))
    assert len(trials) == n and len(set(ids)) == n, ids
    assert all(r.info.status == "FINISHED" for r in trials)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for r in trials:  # best/* once per run, and every epoch once
        assert len(c.get_metric_history(r.info.run_id, "best/objective")) == 1
        assert [m.step for m in c.get_metric_history(r.info.run_id, "objective")] == [1, 2]
    import optuna

    from raysweep.sweep.runner import load_study

    study = load_study(sweep_dir)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == n
    assert optuna.trial.TrialState.RUNNING not in states
    tune_trials = json.loads(sorted(tune.glob("experiment_state-*.json"))[-1].read_text())
    assert len(tune_trials["trial_data"]) == n
    assert list(sweep_dir.glob("optuna.journal.torn-*"))  # the cut bytes were kept
    COUNTS["faults_survived"] += 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_full_disk_in_a_trial_is_retried_not_recorded_as_a_method_error(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(env, "oserror", "1.0, 2.0")
    capsys.readouterr()
    COUNTS["faults_injected"] += 2
    rc = main(["run", path, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-4000:]
    doc = json.loads(out)
    assert doc["counts"] == {"trials": 2, "finished": 2, "failed": 0, "unfinished": 0}
    assert sorted(p.name for p in env.glob("oserror-*")) == ["oserror-1", "oserror-2"]
    sweep_dir = env / "home" / "sweeps" / doc["sweep_id"]
    assert not list((sweep_dir / "failures").glob("*"))  # no do-not-retry marker
    _, runs = _mlflow(env, doc["sweep_id"])
    trials = [r for r in runs if r.data.tags.get("raysweep.kind") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    COUNTS["faults_survived"] += 2


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cluster_without_resources_stops_with_the_resume_hint_then_resumes(
        env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The only node lost (the driver sees no CPU in the cluster): one line, then resume."""
    import raysweep.sweep._watch as watch

    monkeypatch.setenv("RAYSWEEP_NO_RESOURCES_TIMEOUT_S", "1")
    real = watch._cluster_resources
    monkeypatch.setattr(watch, "_cluster_resources", lambda: {"memory": 1e9})
    path = _write(env, "sleep", "2.0, 2.5, 3.0")
    capsys.readouterr()
    COUNTS["faults_injected"] += 1
    rc = main(["run", path])
    err = capsys.readouterr().err
    assert rc == 1, err[-3000:]
    line = _one_error_line(err)
    (sweep_dir,) = (env / "home" / "sweeps").iterdir()
    sid = sweep_dir.name
    assert "no room for one trial" in line and f"raysweep resume {sid}" in line
    state = json.loads((sweep_dir / "state.json").read_text())
    assert state["status"] == "interrupted" and f"raysweep resume {sid}" in state["message"]
    _, runs = _mlflow(env, sid)
    parent = [r for r in runs if r.data.tags.get("raysweep.kind") == "sweep"]
    assert parent[0].info.status == "KILLED"
    monkeypatch.setattr(watch, "_cluster_resources", real)  # the node is back
    capsys.readouterr()
    rc = main(["resume", sid, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    assert json.loads(out)["counts"]["finished"] == 3
    _, runs = _mlflow(env, sid)
    trials = [r for r in runs if r.data.tags.get("raysweep.kind") == "trial"]
    assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)
    COUNTS["faults_survived"] += 1
