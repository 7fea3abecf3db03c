"""Faults in a sweep's stored state, injected without Ray (each test takes seconds).

Torn Tune snapshot files (kill or full disk mid-write) and the last-good fallback; a torn last
record of ``optuna.journal``; two drivers of one sweep; error classification and atomic failure
markers; a cluster with no room for a trial; an MLflow store that is locked, or created by two
processes at once; ``drop_orphans`` against an unreadable snapshot; where a dead worker ran.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rs_counts import COUNTS

from raysweep.errors import UserError

# -- Tune snapshot -----------------------------------------------------------------------------

def _fake_snapshot(d: Path, session: str, trial_ids: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    trials = [[json.dumps({"trial_id": t}), "{}"] for t in trial_ids]
    (d / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": trials}))
    for name in (f"search_gen_state-{session}.json", f"searcher-state-{session}.pkl",
                 f"callback-states-{session}.pkl"):
        (d / name).write_bytes(pickle.dumps({"session": session, "pad": list(range(50))}))
    (d / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))


@pytest.mark.parametrize("victim", ["experiment_state", "search_gen_state", "searcher-state",
                                    "callback-states", "tuner"])
@pytest.mark.parametrize("damage", ["empty", "torn"])
def test_torn_snapshot_falls_back_to_last_good(tmp_path: Path, victim: str, damage: str) -> None:
    from raysweep.sweep._snapshot import (
        keep_last_good,
        restore_point,
        snapshot_problems,
        snapshot_trial_ids,
    )

    tune = tmp_path / "ray" / "tune"
    _fake_snapshot(tune, "2026-01-01_00-00-00", ["a"])
    assert keep_last_good(tune)
    # A later snapshot (a new trial) is written, and one of its files is torn by a kill.
    _fake_snapshot(tune, "2026-01-01_00-05-00", ["a", "b"])
    path = next(p for p in tune.iterdir() if p.name.startswith(victim)
                and ("00-05-00" in p.name or victim == "tuner"))
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    COUNTS["faults_injected"] += 1
    assert snapshot_problems(tune)
    assert not keep_last_good(tune)  # a torn set never replaces the last good one
    repaired = restore_point(tune, "s1")
    assert repaired and path.name in repaired[0]
    assert snapshot_problems(tune) == []
    assert snapshot_trial_ids(tune) == {"a"}  # what Tune will restore: the last good set
    aside = list((tmp_path / "ray").glob("torn-*/*"))
    assert path.name in {p.name for p in aside}  # kept for inspection, not deleted
    COUNTS["faults_survived"] += 1


def test_torn_snapshot_without_last_good_is_one_clear_line(tmp_path: Path) -> None:
    from raysweep.sweep._snapshot import restore_point, snapshot_trial_ids

    tune = tmp_path / "ray" / "tune"
    _fake_snapshot(tune, "2026-01-01_00-00-00", ["a"])
    state = tune / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text('{"trial_data": [["{\\"trial_id')
    assert snapshot_trial_ids(tune) is None  # unreadable: no trial may be judged an orphan
    with pytest.raises(UserError) as err:
        restore_point(tune, "s1")
    msg = str(err.value)
    assert "\n" not in msg and "s1" in msg and state.name in msg and "raysweep run" in msg


def test_drop_orphans_spares_finished_runs_and_unreadable_snapshots(tmp_path: Path) -> None:
    from raysweep.sweep.tracking import Tracker

    t = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "raysweep", "s1")
    exp = t.ensure_experiment()
    ids = {}
    for tid, status in (("known", "RUNNING"), ("late_running", "RUNNING"),
                        ("late_finished", "FINISHED")):
        run = t.client.create_run(exp, tags={"raysweep.sweep_id": "s1", "raysweep.kind": "trial",
                                             "raysweep.trial_id": tid})
        if status == "FINISHED":
            t.client.set_terminated(run.info.run_id, status="FINISHED")
        ids[tid] = run.info.run_id
    assert t.drop_orphans(None) == []  # unreadable snapshot: nothing dropped
    assert t.drop_orphans({"known"}) == ["late_running"]
    kept = t.client.get_run(ids["late_finished"])
    assert kept.info.lifecycle_stage == "active" and "raysweep.orphan" in kept.data.tags
    assert t.client.get_run(ids["late_running"]).info.lifecycle_stage == "deleted"
    assert t.client.get_run(ids["known"]).info.lifecycle_stage == "active"


# -- optuna.journal ----------------------------------------------------------------------------

def _study(path: Path):
    import optuna

    from raysweep.sweep.search import STUDY_NAME, study_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=STUDY_NAME, storage=study_storage(path),
                               load_if_exists=True)


@pytest.mark.parametrize("tear", ["no-newline", "broken-json-line"])
def test_torn_journal_tail_is_cut_before_appending(tmp_path: Path, tear: str) -> None:
    import optuna

    from raysweep.sweep.search import STUDY_NAME, repair_journal, study_storage

    path = tmp_path / "optuna.journal"
    study = _study(path)
    for i in range(3):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), i)
    good = path.read_bytes()
    torn = (b'{"op_code":4,"worker_id":"w","trial_id":3,"par'
            + (b"" if tear == "no-newline" else b"\n"))
    with open(path, "ab") as f:
        f.write(torn)
    COUNTS["faults_injected"] += 1
    # Unrepaired, the next append glues onto the torn record and every reader fails after it.
    poisoned = tmp_path / "poisoned.journal"
    poisoned.write_bytes(path.read_bytes())
    with pytest.raises(ValueError):  # a JSONDecodeError or "Invalid log format."
        s = _study(poisoned)
        s.tell(s.ask(), 9.0)
        _ = optuna.load_study(study_name=STUDY_NAME, storage=study_storage(poisoned)).trials
    assert repair_journal(path) == len(torn)
    assert path.read_bytes() == good
    assert [p.read_bytes() for p in tmp_path.glob("optuna.journal.torn-*")] == [torn]
    study = _study(path)
    study.tell(study.ask(), 5.0)
    loaded = optuna.load_study(study_name=STUDY_NAME, storage=study_storage(path))
    assert [t.value for t in loaded.trials] == [0, 1, 2, 5.0]
    assert repair_journal(path) == 0  # a clean journal is left alone
    COUNTS["faults_survived"] += 1


# -- one driver per sweep ----------------------------------------------------------------------

def test_second_driver_of_a_sweep_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    from raysweep.sweep._lock import SweepLock, lock_holder

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from raysweep.sweep._lock import SweepLock; "
         f"SweepLock(Path({str(tmp_path)!r}), 's1').acquire(); print('held', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert lock_holder(tmp_path) == holder.pid
        with pytest.raises(UserError) as err:
            SweepLock(tmp_path, "s1").acquire()
        msg = str(err.value)
        assert f"pid {holder.pid}" in msg and "raysweep resume s1" in msg and "\n" not in msg
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock: no stale lock after a SIGKILL.
    assert lock_holder(tmp_path) is None
    with SweepLock(tmp_path, "s1"):
        assert lock_holder(tmp_path) is not None


def test_resume_while_another_driver_holds_the_sweep_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock is taken before anything of the sweep is read or written."""
    from raysweep.sweep._lock import SweepLock
    from raysweep.sweep.runner import resume_sweep

    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path))
    sweep = tmp_path / "sweeps" / "abcd1234"
    sweep.mkdir(parents=True)
    (sweep / "state.json").write_text(json.dumps({"id": "abcd1234", "status": "running",
                                                  "pid": os.getpid(), "created": 1}))
    COUNTS["faults_injected"] += 1
    with SweepLock(sweep, "abcd1234"):
        before = sorted((p.name, p.stat().st_mtime_ns) for p in sweep.iterdir())
        with pytest.raises(UserError) as err:
            resume_sweep("abcd1234")
    msg = str(err.value)
    assert f"pid {os.getpid()}" in msg and "abcd1234" in msg and "\n" not in msg
    assert sorted((p.name, p.stat().st_mtime_ns) for p in sweep.iterdir()) == before
    COUNTS["faults_survived"] += 1


# -- method errors vs infrastructure errors ----------------------------------------------------

def test_only_the_methods_own_exceptions_are_method_errors() -> None:
    import errno

    import torch

    from raysweep.sweep.trainable import InfrastructureError, TrialFailure, is_method_error

    assert is_method_error(ValueError("bad lr"))
    assert is_method_error(TrialFailure("diverged"))
    assert not is_method_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_method_error(PermissionError("read-only file system"))
    assert not is_method_error(InfrastructureError("checkpoint"))
    assert not is_method_error(MemoryError())
    if hasattr(torch, "OutOfMemoryError"):
        assert not is_method_error(torch.OutOfMemoryError("CUDA out of memory"))
    from ray.exceptions import RayActorError

    assert not is_method_error(RayActorError())


def test_failure_markers_are_atomic_and_never_empty(tmp_path: Path) -> None:
    from raysweep.sweep.trainable import read_marker, write_marker

    marker = tmp_path / "failures" / "trial_1"
    assert write_marker(marker, "   ")  # an exception without a message still says something
    assert read_marker(marker) and "no message" in read_marker(marker)
    assert write_marker(marker, "ValueError: bad lr")
    assert read_marker(marker) == "ValueError: bad lr"
    assert [p.name for p in marker.parent.iterdir()] == ["trial_1"]  # no temporary left
    # An empty marker (a disk that filled mid-write, an older version) is no evidence.
    marker.write_text("")
    COUNTS["faults_injected"] += 1
    assert read_marker(marker) is None and not marker.exists()
    # A marker that cannot be written leaves nothing behind: the restart runs the method.
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    assert not write_marker(blocked / "trial_2", "ValueError: x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failures", "file-not-dir"]
    COUNTS["faults_survived"] += 1


# -- a cluster with no room --------------------------------------------------------------------

def test_cluster_without_resources_stops_after_the_timeout() -> None:
    from raysweep.sweep._watch import ClusterLost, ClusterWatch

    now = [0.0]
    res = [{"CPU": 2.0}]
    watch = ClusterWatch(cpu=1, gpu=0, timeout=30, period=5, resources=lambda: res[0],
                         clock=lambda: now[0])
    for _ in range(20):  # healthy: never raises
        now[0] += 5
        watch.check()
    res[0] = {}  # the only node is lost
    COUNTS["faults_injected"] += 1
    now[0] += 5
    watch.check()
    now[0] += 20
    watch.check()  # within the timeout: keep waiting
    res[0] = {"CPU": 1.0}  # the node comes back: the clock restarts
    now[0] += 5
    watch.check()
    res[0] = {"CPU": 0.0, "memory": 1e9}
    with pytest.raises(ClusterLost) as err:
        for _ in range(10):
            now[0] += 5
            watch.check()
    assert "no room for one trial (1 CPU)" in str(err.value) and "\n" not in str(err.value)
    assert now[0] - 130 >= 30
    COUNTS["faults_survived"] += 1


def test_dead_worker_reason_names_node_host_and_pid(tmp_path: Path) -> None:
    from raysweep.sweep.tracking import error_reason

    err = tmp_path / "error.txt"
    err.write_text("Failure # 1 (occurred at 2026-01-01)\nray.exceptions.ActorDiedError: The "
                   "actor died unexpectedly before finishing this task.\n\tclass_name: "
                   "ImplicitFunc\n\tip: 127.0.0.1\n")
    trial = SimpleNamespace(error_file=str(err), last_result={
        "rs/node": "8f1c0e2d9a7b6c5d4e3f", "hostname": "worker-3", "pid": 4242})
    reason = error_reason(trial)
    assert "ActorDiedError" in reason and "node 8f1c0e2d9a7b" in reason
    assert "host worker-3" in reason and "worker pid 4242" in reason
    trial.last_result = {}
    assert "before its first report" in error_reason(trial)


# -- MLflow store: locked, and created twice at once -------------------------------------------

def test_locked_mlflow_store_is_retried_then_reported_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from raysweep.sweep.tracking import StoreUnavailable, _RetryingClient

    class Locked:  # what MLflow raises once SQLite's own 20 s busy wait has run out
        def __init__(self, failures: int) -> None:
            self.failures, self.calls = failures, 0

        def log_param(self, run_id: str, key: str, value: str) -> str:
            self.calls += 1
            if self.calls <= self.failures:
                raise RuntimeError("(sqlite3.OperationalError) database is locked")
            return "ok"

        def get_run(self, run_id: str) -> str:
            raise ValueError("run 'x' not found")  # not a lock: never retried

    monkeypatch.setattr(time, "sleep", lambda s: None)
    COUNTS["faults_injected"] += 2
    inner = Locked(failures=3)
    assert _RetryingClient(inner, "sqlite:///x.db").log_param("r", "a", "1") == "ok"
    assert inner.calls == 4
    COUNTS["faults_survived"] += 1
    never = Locked(failures=10**9)
    monkeypatch.setenv("RAYSWEEP_MLFLOW_RETRY_S", "0")
    with pytest.raises(StoreUnavailable) as err:
        _RetryingClient(never, "sqlite:///x.db").log_param("r", "a", "1")
    msg = str(err.value)
    assert "stayed locked" in msg and "RAYSWEEP_MLFLOW_RETRY_S" in msg and "\n" not in msg
    COUNTS["faults_survived"] += 1
    with pytest.raises(ValueError):
        _RetryingClient(never, "sqlite:///x.db").get_run("x")


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_really_locked_sqlite_store_is_waited_out(tmp_path: Path) -> None:
    """A writer holds the SQLite database longer than MLflow's 20 s busy timeout."""
    from raysweep.sweep.tracking import Tracker

    db = tmp_path / "mlflow.db"
    t = Tracker(f"sqlite:///{db}", "raysweep", "s1")
    run_id = t.client.create_run(t.ensure_experiment()).info.run_id
    ready = threading.Event()

    def hold() -> None:
        con = sqlite3.connect(db, timeout=0, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        ready.set()
        time.sleep(25)
        con.execute("COMMIT")
        con.close()

    th = threading.Thread(target=hold)
    th.start()
    ready.wait()
    COUNTS["faults_injected"] += 1
    t.client.log_param(run_id, "a", "1")
    th.join()
    assert t.client.get_run(run_id).data.params == {"a": "1"}
    COUNTS["faults_survived"] += 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_creating_a_fresh_mlflow_store_both_succeed(tmp_path: Path) -> None:
    """Without the lock one of them fails in MLflow's schema migration (reproduced here)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = ("import sys; from raysweep.sweep.tracking import Tracker; "
            f"t = Tracker({uri!r}, 'raysweep', sys.argv[1]); t.ensure_experiment(); "
            "print(t.client.create_run(t.experiment_id).info.run_id)")
    procs = [subprocess.Popen([sys.executable, "-c", code, f"s{i}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    COUNTS["faults_injected"] += 1
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(uri).get_experiment_by_name("raysweep")
    assert len(MlflowClient(uri).search_runs([exp.experiment_id])) == 2
    COUNTS["faults_survived"] += 1


# -- status after a kill during Ray's start-up -------------------------------------------------

def test_status_after_a_kill_during_ray_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Empty journal, no Tune snapshot, a dead driver: status works and does not send the user
    to a ``resume`` that refuses."""
    from raysweep.cli import main

    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sweep = tmp_path / "sweeps" / "dead0001"
    sweep.mkdir(parents=True, mode=0o700)
    (sweep / "state.json").write_text(json.dumps({"id": "dead0001", "status": "running",
                                                  "pid": dead.pid, "created": 1, "trials": 4}))
    (sweep / "state.json").chmod(0o600)
    (sweep / "spec.json").write_text("{}")
    (sweep / "optuna.journal").write_bytes(b"")
    COUNTS["faults_injected"] += 1
    capsys.readouterr()
    assert main(["status", "dead0001", "--json"]) == 0, capsys.readouterr().err
    st = json.loads(capsys.readouterr().out)
    assert st["status"] == "crashed"
    assert "raysweep resume" not in st["message"] and "raysweep run" in st["message"]
    COUNTS["faults_survived"] += 1


def test_snapshot_keeper_copies_only_a_changed_usable_snapshot(tmp_path: Path) -> None:
    from raysweep.sweep._snapshot import LAST_GOOD, SnapshotKeeper

    tune = tmp_path / "ray" / "tune"
    _fake_snapshot(tune, "2026-01-01_00-00-00", ["a"])
    keeper = SnapshotKeeper(tune, period=0)
    keeper.on_step_end(1, [])
    kept = tmp_path / "ray" / LAST_GOOD / "experiment_state-2026-01-01_00-00-00.json"
    assert json.loads(kept.read_text())["trial_data"]
    first = kept.stat().st_ino
    keeper.on_step_end(2, [])
    assert kept.stat().st_ino == first  # unchanged snapshot: not copied again
    _fake_snapshot(tune, "2026-01-01_00-00-00", ["a", "b"])
    (tune / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(b"\x80\x04\x95")  # torn
    keeper.on_step_end(3, [])
    assert len(json.loads(kept.read_text())["trial_data"]) == 1  # the torn set is not kept
    _fake_snapshot(tune, "2026-01-01_00-00-00", ["a", "b"])
    keeper.on_experiment_end([])
    assert len(json.loads(kept.read_text())["trial_data"]) == 2


def test_mlflow_store_that_is_not_a_writable_file_is_refused_up_front(tmp_path: Path) -> None:
    from raysweep.preflight import check_tracking_store

    (tmp_path / "mlflow.db").mkdir()
    with pytest.raises(UserError) as err:
        check_tracking_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "is a directory, not a database file" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_methods_own_error_gets_no_worker_location(tmp_path: Path) -> None:
    from raysweep.sweep.tracking import error_reason

    err = tmp_path / "error.txt"
    err.write_text("Failure # 1\n"
                   "ray.exceptions.RayTaskError(ValueError): ray::ImplicitFunc.train()"
                   " (pid=42, ip=127.0.0.1, actor_id=abc)\n  File \"m.py\", line 3, in step\n"
                   "    raise ValueError('bad lr')  # a comment: if the worker died here\n"
                   "ValueError: bad lr\n")
    trial = SimpleNamespace(error_file=str(err), last_result={"hostname": "h", "pid": 42})
    reason = error_reason(trial)
    assert reason.startswith("ValueError: bad lr")
    assert "last report" not in reason
