"""Fixtures of the sweep tests: a private sweep home, MLflow store and workload cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sweep_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workload cache for the session: digits-class is prepared once."""
    return tmp_path_factory.mktemp("raysweep-cache")


def _private_env(mp: pytest.MonkeyPatch, root: Path, cache: Path) -> None:
    mp.setenv("RAYSWEEP_HOME", str(root / "home"))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.setenv("RAYSWEEP_CACHE", str(cache))
    mp.setenv("RAYSWEEP_NUM_CPUS", "2")
    mp.delenv("RAY_ADDRESS", raising=False)
    mp.chdir(root)


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture()
def sweep_env(tmp_path: Path, sweep_cache: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``RAYSWEEP_HOME``, ``MLFLOW_TRACKING_URI`` (sqlite) and cwd under tmp_path; Ray capped at
    2 CPUs."""
    _private_env(monkeypatch, tmp_path, sweep_cache)
    yield tmp_path
    _shutdown_ray()


@pytest.fixture(scope="module")
def module_sweep_env(tmp_path_factory: pytest.TempPathFactory,
                     sweep_cache: Path) -> Iterator[Path]:
    """:func:`sweep_env` shared by the tests of one module (one sweep, many assertions)."""
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        _private_env(mp, root, sweep_cache)
        yield root
        _shutdown_ray()


@pytest.fixture(scope="module")
def digits(sweep_cache: Path) -> tuple:
    """The prepared digits-class workload (from the session cache) and its reference metrics."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYSWEEP_CACHE", str(sweep_cache))
        from raysweep.workload import load_workload_config, prepare

        w = prepare(load_workload_config("digits-class"), quiet=True)
        return w, w.reference_metrics(catboost=False)
