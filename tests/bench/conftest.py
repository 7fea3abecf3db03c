from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workload cache for the whole session: digits-class is prepared once."""
    return tmp_path_factory.mktemp("raysweep-cache")


@pytest.fixture()
def bench_env(tmp_path: Path, bench_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MLflow store (sqlite under tmp_path), shared workload cache, tmp cwd."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RAYSWEEP_CACHE", str(bench_cache))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) lands here
    return tmp_path
