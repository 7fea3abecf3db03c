"""Slow end-to-end checks: the shipped embedded suite, and a suite run through Ray tasks.

Run with ``python -m pytest -m slow tests/bench``. The embedded suite trains two workloads the
first time (a few minutes on 2 CPU cores) and runs 20 unlearning runs per suite run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysweep.cli import main

#: The tests' copy of the smoke suite on the tiny digits workload (the shipped one memorises).
SMOKE = str(Path(__file__).parent / "suites" / "test-smoke.yaml")

pytestmark = pytest.mark.slow


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["bench", "run", *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_embedded_suite_fresh_baseline_then_injected_regression(
        bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, first = _run(capsys, "embedded", "--out", str(bench_env / "r1"))
    assert rc == 0 and first["status"] == "baseline", first["errors"]
    rc, second = _run(capsys, "embedded", "--out", str(bench_env / "r2"))
    assert rc == 0 and second["status"] == "passed", second["regressions"]
    rc, third = _run(capsys, "embedded", "--out", str(bench_env / "r3"),
                     "--set", "entries.ssd.config.selection_weighting=1000")
    assert rc == 3 and third["status"] == "regressed"
    bad = {(r["entry"], r["metric"]) for r in third["regressions"]}
    assert (("digits-class/ssd", "forget/acc") in bad
            and ("fmnist-class-small/ssd", "forget/acc") in bad)
    assert {e for e, _ in bad} == {"digits-class/ssd", "fmnist-class-small/ssd"}
    assert "data:image/png;base64," in (bench_env / "r3" / "report.html").read_text()


def test_smoke_suite_on_ray_tasks(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ray = pytest.importorskip("ray")
    try:
        rc, doc = _run(capsys, SMOKE, "--address", "local", "--set", "seeds=[0]",
                       "--out", str(bench_env / "ray"))
    finally:
        ray.shutdown()
    assert rc == 0 and doc["status"] == "baseline", doc["errors"]
    assert len(doc["entries"]) == 3
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    kids = client.search_runs([doc["experiment_id"]], "tags.`raysweep.kind` = 'bench-entry'")
    assert len(kids) == 3 and all(k.data.tags.get("raysweep.node") for k in kids)
    parent = client.get_run(doc["run_id"])
    assert parent.data.tags["raysweep.address"] == "local"
