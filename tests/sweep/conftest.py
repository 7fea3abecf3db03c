"""Fixtures of the sweep tests: a private sweep home, MLflow store and workload cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sweep_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workload cache for the session: digits-class is prepared once."""
    return tmp_path_factory.mktemp("raysweep-cache")


@pytest.fixture()
def sweep_env(tmp_path: Path, sweep_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``RAYSWEEP_HOME``, ``MLFLOW_TRACKING_URI`` (sqlite) and cwd under tmp_path; Ray capped at 2 CPUs."""
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RAYSWEEP_CACHE", str(sweep_cache))
    monkeypatch.setenv("RAYSWEEP_NUM_CPUS", "2")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import ray

    if ray.is_initialized():
        ray.shutdown()
