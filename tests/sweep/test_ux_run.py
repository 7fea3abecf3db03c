"""The Python API end to end, as a notebook uses it: run a sweep, read its leaderboard as a
DataFrame, export the best configuration and run it again with ``raysweep unlearn --config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysweep.cli import main
from raysweep.sweep.space import SEARCH_SPACES

pytestmark = pytest.mark.slow


def test_run_leaderboard_export_unlearn(sweep_env: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import raysweep

    outcome = raysweep.run(SEARCH_SPACES / "sweeps" / "smoke.yaml",
                           overrides=["search.num_samples=2", "budget.max_epochs=1"])
    assert outcome.status == "finished"
    df = raysweep.leaderboard(sweep=outcome.sweep_id)
    assert list(df["method"][:2]) == ["original", "retrain"]
    trials = df[df["kind"] == "trial"]
    assert len(trials) >= 1 and trials["objective"].notna().all()
    assert raysweep.load_sweep(outcome.sweep_id).status["status"] == "finished"

    method = trials.iloc[0]["method"]
    best = sweep_env / "best.yaml"
    capsys.readouterr()
    assert main(["export", outcome.sweep_id, "--method", method, "-o", str(best)]) == 0
    assert capsys.readouterr().out.strip() == str(best)
    assert main(["unlearn", "--config", str(best), "--no-catboost", "--device", "cpu",
                 "--json", "--mlflow"]) == 0
    doc = json.loads(capsys.readouterr().out)
    row = next(r for r in doc["rows"] if r["method"] == method)
    assert doc["workload"] == "digits-class" and row.get("run_id")

    from mlflow.tracking import MlflowClient

    from raysweep.sweep.tracking import tracking_uri

    logged = MlflowClient(tracking_uri=tracking_uri()).get_run(row["run_id"])
    assert logged.data.tags["raysweep.kind"] == "unlearn" and logged.info.status == "FINISHED"
    assert logged.data.params["method"] == method
