"""Which code produced a result: the one ``git_sha`` that sweeps, suites, ``raysweep unlearn``
and the benchmark reports record (no Ray, MLflow or torch)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

__all__ = ["git_sha", "commit_of", "machine", "load_average"]

#: The checkout raysweep runs from (the package's parent directory).
_ROOT = Path(__file__).resolve().parent.parent


def git_sha() -> str:
    """The commit of the raysweep checkout that is running, ``+dirty`` when its tracked files
    have local changes (a result is then not reproducible from the commit alone).

    Without a checkout (an installed wheel, a job's uploaded working directory) it is
    ``$RAYSWEEP_GIT_SHA`` (set at build or deploy time), else ``unknown``.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True,
                              text=True, timeout=5)
        if head.returncode == 0 and head.stdout.strip():
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=_ROOT, capture_output=True, text=True, timeout=5)
            return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("RAYSWEEP_GIT_SHA") or "unknown"


def commit_of(sha: str | None) -> str | None:
    """The bare commit for MLflow's ``mlflow.source.git.commit`` tag (which links to it):
    ``None`` when unknown, the ``+dirty`` mark dropped."""
    if not sha or sha == "unknown":
        return None
    return sha.removesuffix("+dirty")


def machine(*extra: str) -> str:
    """The machine a benchmark ran on, for its report: host, cores, architecture, OS, Python,
    then ``extra`` (library versions, the device)."""
    parts = [f"{os.cpu_count()} CPU cores", platform.machine(), platform.system(),
             f"Python {platform.python_version()}", *extra]
    return f"{platform.node()}: " + ", ".join(parts)


def load_average() -> float | None:
    """The 1-minute load average (other jobs on a shared machine slow every timing), or
    ``None`` where the system does not report one."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
