"""Leaderboard aggregation: best per workload x method, references, mean ± std, Pareto."""

from __future__ import annotations

import pytest

from raysweep.errors import UserError
from raysweep.report import render
from raysweep.sweep.leaderboard import leaderboard, leaderboard_columns, pareto_front, parse_sort


def _run(method: str, seed: int, objective: float, *, config: str = "c1", kind: str = "trial",
         status: str = "FINISHED", acc: float = 0.9, workload: str = "w", start: int = 0) -> dict:
    return {"run_id": f"{method}-{config}-{seed}-{kind}", "status": status, "start": start,
            "tags": {"raysweep.kind": kind, "raysweep.method": method,
                     "raysweep.workload": workload, "raysweep.sweep_id": "s1",
                     "raysweep.seed": str(seed),
                     "raysweep.config_hash": f"{method}-{config}", "raysweep.trial_id": f"t{seed}",
                     "raysweep.params_json": '{"lr": 0.1}'},
            "params": {}, "metrics": {"best/objective": objective, "best/test/acc": acc,
                                      "objective": 99.0}}


RUNS = [
    _run("original", 0, 1.2, kind="reference"), _run("retrain", 0, 0.2, kind="reference"),
    _run("ssd", 0, 0.10, config="a"), _run("ssd", 1, 0.30, config="a"),  # mean 0.2
    _run("ssd", 0, 0.15, config="b"),                                     # best ssd config
    _run("scrub", 0, 0.50, acc=0.95), _run("scrub", 1, 0.05, config="x", status="FAILED"),
]


def test_best_config_per_method_with_references_first() -> None:
    rows = leaderboard(RUNS)
    assert [r["method"] for r in rows] == ["original", "retrain", "ssd", "scrub"]
    ssd = rows[2]
    assert ssd["objective"] == pytest.approx(0.15) and ssd["n_seeds"] == 1
    assert ssd["rank"] == 1 and rows[3]["rank"] == 2
    assert "objective" in rows[0] and rows[0]["kind"] == "reference"


def test_mean_and_std_over_seeds() -> None:
    rows = leaderboard(RUNS, all_configs=True)
    a = next(r for r in rows if r["method"] == "ssd" and r["n_seeds"] == 2)
    assert a["objective"] == pytest.approx(0.2)
    assert a["objective:std"] == pytest.approx(0.1414, abs=1e-3)
    assert a["seeds"] == [0, 1] and len(a["run_ids"]) == 2
    assert a["params"] == {"lr": 0.1}
    cols = leaderboard_columns(rows)
    assert "±" in render(rows, cols, "md")


def test_failed_runs_never_rank() -> None:
    rows = leaderboard(RUNS, all_configs=True)
    assert all(r["run_id"] != "scrub-x-1-trial" for r in rows)


def test_sort_filter_top() -> None:
    rows = leaderboard(RUNS, sort="test/acc")
    assert [r["method"] for r in rows if r["kind"] == "trial"] == ["scrub", "ssd"]
    assert leaderboard(RUNS, sort="test/acc:asc")[2]["method"] == "ssd"
    only = leaderboard(RUNS, method="ssd", top=1, all_configs=True)
    assert [r["method"] for r in only] == ["original", "retrain", "ssd"]
    with pytest.raises(UserError, match="no such metric"):
        leaderboard(RUNS, sort="test/acccc")
    assert parse_sort("zrf") == ("zrf", "max")
    assert parse_sort("gap/oracle:desc") == ("gap/oracle", "max")


def test_pareto_front() -> None:
    rows = [{"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 2.0}, {"a": 2.0, "b": 2.0}, {"a": 1.0, "b": 0.5}]
    front = pareto_front(rows, [("a", "min"), ("b", "min")])
    assert {(r["a"], r["b"]) for r in front} == {(0.5, 2.0), (1.0, 0.5)}
    lb = leaderboard(RUNS, pareto=["objective", "test/acc:max"])
    assert {r["method"] for r in lb if r["kind"] == "trial"} == {"ssd", "scrub"}
