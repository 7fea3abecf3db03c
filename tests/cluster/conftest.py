"""Fixtures for the cluster tests: one real 2-node local Ray cluster for the whole session."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raysweep.testing_cluster import LocalCluster, local_cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    """Head + 1 worker (1 CPU each) via ``ray start``, token auth, dashboard on 127.0.0.1.

    Shared by every test that asks for it; always torn down (process groups killed).
    """
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which("ray", path=path) is None:
        pytest.skip("the `ray` command is not installed")
    with local_cluster(n_nodes=2, cpus_per_node=1, auth_mode="token", dashboard=True) as cluster:
        yield cluster
