from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workload cache for the whole session: digits-class is prepared once."""
    return tmp_path_factory.mktemp("raysweep-cache")


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its schema created once (the migrations take seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture()
def bench_env(tmp_path: Path, bench_cache: Path, empty_mlflow_db: Path,
              monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MLflow store (sqlite under tmp_path), shared workload cache, tmp cwd."""
    db = tmp_path / "mlflow.db"
    shutil.copy(empty_mlflow_db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("RAYSWEEP_CACHE", str(bench_cache))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) lands here
    return tmp_path
