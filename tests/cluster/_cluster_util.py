"""Helpers shared by the cluster tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 180,
            cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``python -m raysweep ARGS`` in a fresh process (Ray keeps auth state per process)."""
    return subprocess.run([sys.executable, "-m", "raysweep", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def run_python(code: str, env: dict[str, str], timeout: float = 180,
               cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
