"""A real 2-node Ray cluster on this machine (two ``ray start``), used the way a user would.

Marked ``cluster``: ``pytest -m cluster tests/cluster`` runs them alone; they are part of the
default run too. One cluster serves the whole module (~30 s to start on two busy cores).
"""

from __future__ import annotations

import json
import textwrap

import pytest
from _cluster_util import REPO, run_cli, run_python

from raysweep.testing_cluster import LocalCluster, _pids_naming

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def _last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in: {stdout[-2000:]}")


def test_actors_land_on_both_nodes(ray_cluster: LocalCluster) -> None:
    # Two actors that each need the only CPU of a node must be placed on different nodes.
    code = textwrap.dedent("""
        import json, ray
        ray.init()
        @ray.remote(num_cpus=1)
        class Where:
            def node(self):
                return ray.get_runtime_context().get_node_id()
        actors = [Where.remote() for _ in range(2)]
        placed = ray.get([a.node.remote() for a in actors], timeout=120)
        @ray.remote(num_cpus=1)
        def task_node():
            return ray.get_runtime_context().get_node_id()
        for a in actors:
            ray.kill(a)
        tasks = ray.get([task_node.remote() for _ in range(4)], timeout=120)
        alive = [n for n in ray.nodes() if n["Alive"]]
        print(json.dumps({"nodes": sorted(n["NodeID"] for n in alive),
                          "cpus": [n["Resources"].get("CPU") for n in alive],
                          "actors": placed, "tasks": tasks}))
    """)
    proc = run_python(code, ray_cluster.env())
    assert proc.returncode == 0, proc.stderr[-3000:] + ray_cluster.logs()
    out = _last_json(proc.stdout)
    assert len(out["nodes"]) == 2, out
    assert out["cpus"] == [1.0, 1.0]
    assert sorted(out["actors"]) == out["nodes"]       # one actor per node
    assert set(out["tasks"]) <= set(out["nodes"])


def test_driver_without_token_is_refused(ray_cluster: LocalCluster) -> None:
    # A client with the wrong token cannot use the Jobs API (HTTP 403 -> one clear line).
    env = ray_cluster.env(with_address=False)
    env["RAY_AUTH_TOKEN"] = "0" * 64
    proc = run_cli(["jobs", "list", "--address", ray_cluster.dashboard_url], env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "token" in proc.stderr and "Traceback" not in proc.stderr


def test_job_api_runs_python_to_completion(ray_cluster: LocalCluster) -> None:
    # Through the Jobs API (`raysweep jobs submit`), a python -c job joins the cluster via the
    # RAY_ADDRESS Ray sets for it, sees both nodes, runs a task, and finishes SUCCEEDED.
    payload = ("import os, ray; ray.init(); "
               "print('JOBOUT', os.environ.get('RAY_ADDRESS'), len(ray.nodes()), "
               "ray.get(ray.remote(lambda: 6 * 7).remote()))")
    env = ray_cluster.env(with_address=False)
    url = ray_cluster.dashboard_url
    proc = run_cli(["jobs", "submit", "--address", url, "--no-working-dir", "--wait", "--json",
                    "--", "python", "-c", payload], env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["status"] == "SUCCEEDED" and result["exit_code"] == 0
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("JOBOUT")]
    assert marker, proc.stderr[-3000:]
    _, address, n_nodes, answer = marker[0].split()
    assert address and n_nodes == "2" and answer == "42"

    listed = run_cli(["jobs", "list", "--address", url, "--json"], env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["job_id"]: r for r in json.loads(listed.stdout)}
    assert rows[result["job_id"]]["status"] == "SUCCEEDED"

    logs = run_cli(["jobs", "logs", result["job_id"], "--address", url], env)
    assert logs.returncode == 0 and "JOBOUT" in logs.stdout


def test_submit_sweep_uploads_project_and_returns_job_status(ray_cluster: LocalCluster) -> None:
    # `raysweep submit` uploads the project as working_dir and runs `python -m raysweep run
    # SPACE` there. An option `run` does not have makes the remote CLI fail at once: that
    # proves the upload, the import on the cluster and the exit-status pass-through (the
    # same status as the same command run here) without running a sweep.
    spaces = sorted((REPO / "search_spaces").rglob("*.yaml"))
    assert spaces, "no YAML under search_spaces/"
    space = REPO / "search_spaces" / "sweeps" / "quickstart.yaml"
    rel = str((space if space.is_file() else spaces[0]).relative_to(REPO))
    local = run_cli(["run", rel, "--no-such-option-for-tests"], ray_cluster.env(), timeout=120)
    assert local.returncode != 0
    env = ray_cluster.env(with_address=False)
    proc = run_cli(["submit", rel, "--address", ray_cluster.dashboard_url, "--wait", "--json",
                    "--", "--no-such-option-for-tests"], env, timeout=240)
    assert proc.returncode == local.returncode, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["status"] == "FAILED"
    assert result["driver_exit_code"] in (None, local.returncode)
    assert result["entrypoint"] == f"python -m raysweep run {rel} --no-such-option-for-tests"
    assert "no-such-option-for-tests" in proc.stderr  # the job's own log, streamed back


def test_jobs_stop(ray_cluster: LocalCluster) -> None:
    env = ray_cluster.env(with_address=False)
    url = ray_cluster.dashboard_url
    sub = run_cli(["jobs", "submit", "--address", url, "--no-working-dir", "--",
                   "python", "-c", "import time; time.sleep(600)"], env)
    assert sub.returncode == 0, sub.stderr[-2000:]
    job_id = sub.stdout.strip().splitlines()[-1]
    assert job_id.startswith("raysubmit_")
    stop = run_cli(["jobs", "stop", job_id, "--address", url, "--wait", "--json"], env)
    assert stop.returncode == 0, stop.stderr[-2000:]
    assert json.loads(stop.stdout)["status"] == "STOPPED"


def test_teardown_leaves_nothing() -> None:
    # A separate 1-node cluster: after the context exits no process of it is left.
    from raysweep.testing_cluster import local_cluster

    with local_cluster(n_nodes=1, cpus_per_node=1) as cluster:
        root = cluster.root
        assert _pids_naming(root), "the head's processes should be found while it runs"
    assert _pids_naming(root) == []
    assert not root.exists()
