"""Shared fixtures of the reliability tests and their summary lines.

Tests add to :data:`COUNTS` (``faults_injected`` / ``faults_survived`` / ``runs_lost``,
``bad_inputs_tried`` / ``bad_inputs_rejected``); the terminal summary prints one line per kind
that was exercised, e.g. ``faults injected 4 / survived 4, runs lost 0``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # rs_counts / rs_faulty_plugin: one module each, whoever imports
    sys.path.insert(0, str(HERE))

from rs_counts import COUNTS  # noqa: E402

PLUGIN = "rs_faulty_plugin"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    tr = terminalreporter
    if COUNTS["faults_injected"]:
        tr.write_line(f"faults injected {COUNTS['faults_injected']} / survived "
                      f"{COUNTS['faults_survived']}, runs lost {COUNTS['runs_lost']}")
    if COUNTS["bad_inputs_tried"]:
        tr.write_line(f"bad inputs tried {COUNTS['bad_inputs_tried']} / rejected cleanly "
                      f"{COUNTS['bad_inputs_rejected']}")


@pytest.fixture(scope="session")
def reliability_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rs-cache")


@pytest.fixture()
def private_env(tmp_path: Path, reliability_cache: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private sweep home, sqlite MLflow store (not created yet) and cache; the faulty plugin
    importable in the driver and in Ray workers (PYTHONPATH is inherited by Ray's processes)."""
    import os

    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RAYSWEEP_CACHE", str(reliability_cache))
    monkeypatch.setenv("RAYSWEEP_NUM_CPUS", "2")
    monkeypatch.setenv("RAYSWEEP_PLUGINS", PLUGIN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import ray

    if ray.is_initialized():
        ray.shutdown()
