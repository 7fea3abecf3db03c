"""A suite killed mid-run (SIGKILL, a lost machine) does not stay RUNNING in MLflow, and a
suite's store is written through the retrying client."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from rs_counts import COUNTS

SMOKE = str(Path(__file__).resolve().parents[1] / "bench" / "suites" / "test-smoke.yaml")


@pytest.fixture()
def suite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_killed_suite_run_is_closed_by_the_next_run_of_that_suite(suite_store: str) -> None:
    from raysweep.bench import tracking
    from raysweep.bench.suite import load_suite

    suite = load_suite(SMOKE)
    killed = tracking.SuiteRecorder(suite)
    killed.start(git_sha="abc", baseline="none", run_name="killed", extra_tags={})
    here = socket.gethostname()
    # what a SIGKILLed process leaves: RUNNING, its pid gone
    killed.client.set_tag(killed.run_id, tracking.PID_TAG, f"{here}:{_dead_pid()}")
    live = tracking.SuiteRecorder(suite)
    live.start(git_sha="abc", baseline="none", run_name="live-elsewhere", extra_tags={})
    live.client.set_tag(live.run_id, tracking.PID_TAG, f"other-host:{_dead_pid()}")
    COUNTS["faults_injected"] += 1

    nxt = tracking.SuiteRecorder(suite)
    nxt.start(git_sha="abc", baseline="none", run_name="next", extra_tags={})
    c = nxt.client
    old = c.get_run(killed.run_id)
    assert old.info.status == "KILLED"
    assert old.data.tags[tracking.STATUS_TAG] == "failed"
    assert "died" in old.data.tags["raysweep.error"]
    assert c.get_run(live.run_id).info.status == "RUNNING"  # another host's: not ours to judge
    assert c.get_run(nxt.run_id).data.tags[tracking.PID_TAG] == f"{here}:{os.getpid()}"
    assert tracking.suite_runs(suite.name, statuses=("baseline", "passed")) == []  # no baseline
    COUNTS["faults_survived"] += 1


def test_suite_store_writes_retry_a_locked_database(suite_store: str) -> None:
    from raysweep.bench import tracking

    c = tracking.client()
    assert type(c).__name__ == "_RetryingClient"
    c.search_experiments(max_results=1)
