"""The package and the tests pass ruff and the package passes mypy (pydantic plugin on), with
the settings in pyproject.toml: a finding fails the default test run, as CI runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    exe = shutil.which("ruff")
    assert exe, "ruff is not installed: ./install.sh installs it (the test extra)"
    proc = _run([exe, "check", "--no-cache", "raysweep", "tests"])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_mypy_finds_nothing(tmp_path: Path) -> None:
    proc = _run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy")])
    assert "No module named mypy" not in proc.stderr, \
        "mypy is not installed: ./install.sh installs it (the test extra)"
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
