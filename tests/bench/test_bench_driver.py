"""``raysweep bench driver``: the report's structure from a --quick run (timings not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysweep.cli import main


def test_quick_driver_bench_reports_every_sampler(bench_env: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = Path(bench_env / "mlflow.db")
    before = db.read_bytes()
    out = bench_env / "results" / "driver.md"
    rc = main(["bench", "driver", "--quick", "--samplers", "tpe,nsga2", "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(captured.out)
    assert [r["sampler"] for r in report["samplers"]] == ["tpe", "nsga2"]
    for r in report["samplers"]:
        assert r["completed"] == r["trials"] == 60 and r["errors"] == 0
        assert len(r["seconds_per_trial"]) == 60 and all(g >= 0 for g in r["seconds_per_trial"])
        assert r["window"] == 20
        hooks = r["hooks_per_trial"]
        assert set(hooks) == {"optuna", "mlflow", "progress", "snapshot", "keeper",
                              "searcher_state"}
        # every part was timed: trials went through the searcher, the MLflow callback, and
        # Tune snapshotted the experiment (the searcher's state with it)
        for part in hooks.values():
            assert part["total_seconds"] > 0 and part["first"] >= 0 and part["last"] >= 0
        assert hooks["searcher_state"]["total_seconds"] <= hooks["snapshot"]["total_seconds"]
        assert r["seconds_per_trial_first"] > 0 and r["seconds_per_trial_last"] > 0
        alone = r["sampler_alone"]
        assert alone["trials"] == 60 and alone["window"] == 20
        assert alone["seconds_per_trial_first"] > 0 and alone["seconds_per_trial_last"] > 0
    page = out.read_text()
    assert ("raysweep bench driver --samplers tpe,nsga2 --trials 60 --concurrency 2 --window 20 "
            "--sampler-trials 60 -o " in page)
    assert "| tpe | 60 |" in page and "| nsga2 | 60 |" in page
    assert out.with_suffix(".png").stat().st_size > 0
    assert json.loads(out.with_suffix(".json").read_text())["trials"] == 60
    # the sweep's MLflow runs went to a private store, not the user's
    assert db.read_bytes() == before
    assert sorted(p.name for p in bench_env.iterdir()) == ["mlflow.db", "results"]


@pytest.mark.parametrize("args, words", [
    (["--samplers", "tpe,cmaes"], ["--samplers", "'cmaes'", "tpe, random, nsga2"]),
    (["--samplers", ","], ["--samplers", "empty"]),
    (["--samplers", "tpe,tpe"], ["--samplers", "twice"]),
    (["-o", "driver.txt"], ["--output", "driver.txt", ".md"]),
    (["-o", "mlflow.db/driver.md"], ["--output", "not a writable directory"]),
    (["--tracking-uri", "http://127.0.0.1:9"], ["127.0.0.1:9"]),
    (["--trials", "0"], ["--trials", "0"]),
    (["--sampler-trials", "5"], ["--sampler-trials 5", "10 to 100,000"]),
])
def test_bad_options_exit_2_before_anything_runs(bench_env: Path, args: list[str],
                                                 words: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "driver", *args])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raysweep: error:"), err
    for w in words:
        assert w in lines[0], lines[0]
    assert sorted(p.name for p in bench_env.iterdir()) == ["mlflow.db"]


def test_overhead_breakdown_accounts_for_all_slot_time() -> None:
    """The overhead split (start-up, start/finish latency, gaps, tail) sums to the slot time
    outside the trials; driver-thread parts are summed from the timed events."""
    from types import SimpleNamespace

    from raysweep.bench.overhead import _breakdown, _Timeline
    from raysweep.sweep.driver_bench import _Clock

    # Two slots, fit from t=100 to t=130. Trials a, b start at once; c follows a.
    line = _Timeline()
    line.start = {"a": 100.5, "b": 100.6, "c": 111.0}
    line.first = {"a": (105.0, 2.0), "b": (106.0, 3.0), "c": (120.0, 8.0)}  # entries 103, 103, 112
    line.last = {"a": 110.0, "b": 125.0, "c": 127.0}
    line.end = {"a": 110.5, "b": 125.5, "c": 127.4}
    out = SimpleNamespace(trial_seconds=[7.0, 22.0, 15.0], fit_seconds=30.0, fit_started=100.0)
    clock = _Clock()
    clock.events = [(101.0, "optuna", 0.25), (111.0, "optuna", 0.25), (110.4, "mlflow", 1.0)]
    b = _breakdown(clock, line, out, conc=2)
    slots = {k.split(":")[0].split(" (")[0]: v["seconds"] for k, v in b["slots"].items()}
    assert slots["start-up"] == 6.0              # a and b start computing at 103
    assert slots["trial start latency"] == 1.0   # c: handed out at 111, computes from 112
    assert slots["tail"] == 2.6 + 4.5            # c ends 127.4, b ends 125.5; fit ends 130
    assert slots["trial finish latency"] == pytest.approx(0.5 + 0.5 + 0.4)
    assert sum(slots.values()) == pytest.approx(b["slot_seconds"] - b["trial_compute_seconds"])
    assert b["driver_thread"]["Optuna suggest + tell"]["seconds"] == 0.5
    assert b["driver_thread"]["MLflow logging"]["share_of_compute"] == round(1.0 / 44.0, 4)
