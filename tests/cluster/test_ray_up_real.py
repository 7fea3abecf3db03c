"""`ray up` → `raysweep submit` → `ray down` for real, with cluster/ray-cluster-local.yaml.

The local provider reaches 127.0.0.1 over SSH (a private sshd, a generated key, its own user:
see ``_ray_up``), runs the config's own start commands (the host's environment file, the token
file mount, token auth, shared storage for RAYSWEEP_HOME/RAYSWEEP_CACHE), and the tiny digits
smoke sweep is submitted through the Jobs API with the token. The checks: the trials ran under
the cluster's Ray (the sweep's files belong to the cluster's user, under the config's shared
storage), MLflow (the URI from the host's environment file) holds one finished run per trial
with the git sha from that file, a client without the token is refused, and `ray down` leaves
no process of the cluster behind.

Marked ``cluster`` and ``slow``: on two busy cores it took 103 s (``ray up`` 19 s, the
submitted sweep 51 s: preparing digits-class and two trials, ``ray down`` 23 s), more than the
default run can spare. Run it with ``python3 -m pytest -m slow tests/cluster/test_ray_up_real.py``
(the timings are printed with ``-s``). Skipped, with the
reason, where the host cannot run an sshd (not root, no apt-get, port 22 taken).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from _cluster_util import REPO, run_cli
from _ray_up import Deployment, ensure_user, host_problem, runnable_variant, ssh_server

from raysweep.testing_cluster import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

CONFIG = REPO / "cluster" / "ray-cluster-local.yaml"
SPACE = "search_spaces/sweeps/smoke.yaml"
N_TRIALS = 2
GIT_SHA = "0123456789abcdef0123456789abcdef01234567"


def _ray(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYSWEEP_"))}
    ray = str(Path(sys.executable).with_name("ray"))
    return subprocess.run([ray, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _user_pids(uid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-U", str(uid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _runs(db: Path) -> list[dict[str, str]]:
    """Every MLflow run in the store with its status and raysweep tags (read-only sqlite)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT run_uuid, status FROM runs").fetchall()
        out = []
        for run_id, status in rows:
            tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?",
                                    (run_id,)).fetchall())
            out.append({"status": status, **tags})
        return out
    finally:
        con.close()


def test_ray_up_submit_ray_down() -> None:
    problem = host_problem()
    if problem:
        pytest.skip(problem)
    user = ensure_user()
    for pid in _user_pids(user.pw_uid):  # left by an earlier run of this test that was killed
        os.kill(pid, signal.SIGKILL)
    root = Path(tempfile.mkdtemp(prefix="raysweep-rayup-", dir="/tmp"))
    token_dir = Path(tempfile.mkdtemp(prefix="raysweep-token-", dir="/tmp"))
    sshd_dir = Path(tempfile.mkdtemp(prefix="raysweep-sshd-", dir="/tmp"))
    dep = Deployment(root=root, shared=root / "shared", env_file=root / "cluster.env",
                     token_dir=token_dir, gcs_port=free_port(), dashboard_port=free_port())
    token = secrets.token_hex(32)
    (token_dir / "auth_token").write_text(token)
    (token_dir / "auth_token").chmod(0o600)
    dep.shared.mkdir()
    db = dep.shared / "mlflow.db"
    # The host's environment file, as cluster/README.md describes it (mode 600, the cluster's
    # user): the MLflow store and the deployed code's sha.
    dep.env_file.write_text(f"MLFLOW_TRACKING_URI=sqlite:///{db}\nRAYSWEEP_GIT_SHA={GIT_SHA}\n")
    dep.env_file.chmod(0o600)
    for path in (root, dep.shared, dep.env_file):
        os.chown(path, user.pw_uid, user.pw_gid)
    root.chmod(0o700)
    name = f"raysweep-test-{secrets.token_hex(4)}"
    cfg = root.parent / f"{name}.yaml"
    timings: dict[str, float] = {}
    try:
        with ssh_server(sshd_dir, user) as sshd:
            config = runnable_variant(yaml.safe_load(CONFIG.read_text()), dep, sshd.key, name)
            cfg.write_text(yaml.safe_dump(config, sort_keys=False))
            t0 = time.monotonic()
            up = _ray(["up", "-y", "--no-config-cache", str(cfg)], timeout=300)
            timings["ray up"] = time.monotonic() - t0
            assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
            try:
                _check_cluster(dep, token, db, user.pw_uid, timings)
            finally:
                t0 = time.monotonic()
                down = _ray(["down", "-y", str(cfg)], timeout=180)
                timings["ray down"] = time.monotonic() - t0
            assert down.returncode == 0, (down.stdout + down.stderr)[-3000:]
            # Ray's processes go within seconds of `ray stop`; anything left is a leak.
            deadline = time.monotonic() + 30
            while _user_pids(user.pw_uid) and time.monotonic() < deadline:
                time.sleep(0.5)
            left = _user_pids(user.pw_uid)
            assert not left, f"`ray down` left processes of {user.pw_name}: {left}"
    finally:
        for pid in _user_pids(user.pw_uid):  # only the cluster user's, started by this test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(token_dir, ignore_errors=True)
        shutil.rmtree(sshd_dir, ignore_errors=True)
        cfg.unlink(missing_ok=True)
        for suffix in (".state", ".lock"):  # the local provider's bookkeeping for this name
            Path(f"/tmp/cluster-{name}{suffix}").unlink(missing_ok=True)
        print("ray-up timings (s): " + json.dumps({k: round(v, 1) for k, v in timings.items()}))


def _check_cluster(dep: Deployment, token: str, db: Path, uid: int,
                   timings: dict[str, float]) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "MLFLOW_", "RAYSWEEP_"))}
    # Without the token the Jobs API refuses the client (exit 2, one line).
    refused = run_cli(["jobs", "list", "--address", dep.dashboard_url],
                      {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "token" in refused.stderr and "Traceback" not in refused.stderr

    t0 = time.monotonic()
    proc = run_cli(["submit", SPACE, "--address", dep.dashboard_url, "--wait", "--json",
                    "--set", f"search.num_samples={N_TRIALS}"],
                   {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, timeout=600)
    timings["submit --wait"] = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]
    result = json.loads(proc.stdout)
    assert result["status"] == "SUCCEEDED", result

    # The sweep ran under the cluster's Ray: its directory is under the config's shared
    # RAYSWEEP_HOME and belongs to the cluster's user; the workload cache is there too.
    sweeps = sorted((dep.shared / "raysweep" / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    assert sweeps[0].stat().st_uid == uid
    assert any((dep.shared / "cache").iterdir()), "RAYSWEEP_CACHE was not the shared path"
    trials = [p for p in (sweeps[0] / "ray").rglob("result.json") if p.stat().st_size > 0]
    assert len(trials) == N_TRIALS, trials

    # MLflow, from the host's environment file: the parent (with the original and retrain
    # reference runs under it) and one finished run per trial, tagged with this sweep and the
    # deployed code's sha.
    runs = [r for r in _runs(db) if r.get("raysweep.sweep_id") == sweeps[0].name]
    trial_runs = [r for r in runs if "raysweep.trial_id" in r]
    assert len(trial_runs) == N_TRIALS, runs
    assert len({r["raysweep.trial_id"] for r in trial_runs}) == N_TRIALS
    assert all(r["status"] == "FINISHED" for r in runs), runs
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r]
    assert parent.get("raysweep.git_sha") == GIT_SHA, parent
