"""Security defaults of :func:`raysweep.sweep.local_ray.init_local_ray`."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest
from _cluster_util import run_python

from raysweep.sweep import local_ray


@pytest.fixture
def auth_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No Ray auth settings, a private HOME, and no Ray cache refresh in this process."""
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(local_ray, "_refresh_ray_auth_cache", lambda: None)
    return tmp_path


def test_token_auth_defaults_to_an_ephemeral_token(auth_env: Path) -> None:
    assert local_ray.ensure_token_auth() == "token"
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert re.fullmatch(r"[0-9a-f]{64}", os.environ["RAY_AUTH_TOKEN"])
    assert not (auth_env / ".ray" / "auth_token").exists()  # nothing written to ~/.ray


def test_explicit_disabled_mode_is_respected(auth_env: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert local_ray.ensure_token_auth() == "disabled"
    assert "RAY_AUTH_TOKEN" not in os.environ


def test_existing_token_is_kept(auth_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = auth_env / "tok"
    token_file.write_text("a" * 64)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert local_ray.token_source() == f"RAY_AUTH_TOKEN_PATH={token_file}"
    local_ray.ensure_token_auth()
    assert "RAY_AUTH_TOKEN" not in os.environ
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    (auth_env / ".ray").mkdir()
    (auth_env / ".ray" / "auth_token").write_text("b" * 64)
    assert local_ray.token_source() == str(auth_env / ".ray" / "auth_token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "c" * 64)
    assert local_ray.token_source() == "RAY_AUTH_TOKEN"  # Ray's precedence


def test_loopback_switch_is_restored() -> None:
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    with local_ray._loopback_only():
        assert ray_constants.ENABLE_RAY_CLUSTER is False
    assert before == ray_constants.ENABLE_RAY_CLUSTER


@pytest.mark.timeout(180)
def test_local_ray_binds_loopback_without_dashboard(tmp_path: Path) -> None:
    # A fresh process (Ray state is per process) with a private HOME: start Ray the raysweep
    # way, then look at what it really did.
    code = textwrap.dedent("""
        import json, os, socket, ray
        from raysweep.sweep.local_ray import init_local_ray
        from ray._common.network_utils import node_ip_address_from_perspective
        ctx = init_local_ray(num_cpus=1)
        info = ctx.address_info
        gcs_port = int(info["gcs_address"].rsplit(":", 1)[1])
        @ray.remote
        def task_ip():
            return ray.util.get_node_ip_address()
        routable = node_ip_address_from_perspective(None)
        reach = {}
        for host in {"127.0.0.1", routable}:
            try:
                socket.create_connection((host, gcs_port), timeout=2).close()
                reach[host] = True
            except OSError:
                reach[host] = False
        print(json.dumps({
            "node_ip": info["node_ip_address"], "gcs": info["gcs_address"],
            "nodes": [n["NodeManagerAddress"] for n in ray.nodes()],
            "task_ip": ray.get(task_ip.remote()), "webui": info.get("webui_url"),
            "dashboard_url": ctx.dashboard_url, "mode": os.environ.get("RAY_AUTH_MODE"),
            "token": bool(os.environ.get("RAY_AUTH_TOKEN")), "routable": routable,
            "reach": reach,
        }))
        ray.shutdown()
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    env["HOME"] = str(tmp_path)
    proc = run_python(code, env, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["node_ip"] == "127.0.0.1"
    assert out["gcs"].startswith("127.0.0.1:")
    assert out["nodes"] == ["127.0.0.1"] and out["task_ip"] == "127.0.0.1"
    assert not out["webui"] and not out["dashboard_url"]        # no dashboard, no Jobs API
    assert out["mode"] == "token" and out["token"]
    assert out["reach"]["127.0.0.1"] is True
    if out["routable"] != "127.0.0.1":                          # a machine with a network
        assert out["reach"][out["routable"]] is False, "GCS reachable from the network"
    assert not (tmp_path / ".ray" / "auth_token").exists()
