"""A real multi-node Ray cluster on this machine, for tests: ``ray start`` head + workers.

Each node is its own ``ray start`` with its own ``--temp-dir`` and free ports, all sharing
one ``RAY_AUTH_MODE`` and, with token auth, one random token passed in the environment
(``~/.ray/auth_token`` is never read or written). The dashboard, when enabled for the Jobs
API, binds to 127.0.0.1.

Ray rewrites a loopback address given to ``ray start`` into the machine's routable IP, so the
nodes of a multi-node cluster register under that IP and their gRPC servers listen on all
interfaces; token auth is what protects them (``raysweep.sweep.local_ray`` explains the
single-node, loopback-only mode, which cannot host a second node).

Teardown never runs ``ray stop`` (it would stop every Ray on the machine): it signals the
process group of each ``ray start`` and then any process whose command line names one of
this cluster's temp dirs, by pid.

Example:
    >>> from raysweep.testing_cluster import local_cluster
    >>> with local_cluster(n_nodes=2, cpus_per_node=1) as cluster:  # doctest: +SKIP
    ...     subprocess.run([sys.executable, "driver.py"], env=cluster.env(), check=True)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ClusterStartError", "LocalCluster", "local_cluster", "free_port"]

_START_TIMEOUT_S = 120.0
_MARKER = "RAYSWEEP_TEST_CLUSTER"  # in every node's environment, to find its processes


class ClusterStartError(RuntimeError):
    """``ray start`` failed; the message carries the tail of its output."""


def free_port() -> int:
    """A TCP port that is free right now on all interfaces."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _ray_executable() -> str:
    found = shutil.which("ray", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                      os.environ.get("PATH", "")]))
    if found is None:
        raise ClusterStartError("the `ray` command is not on PATH; install ray[default]")
    return found


@dataclass
class _Node:
    name: str
    temp_dir: Path
    pgid: int
    log: Path


@dataclass
class LocalCluster:
    """A running local cluster; built by :func:`local_cluster`.

    Attributes:
        gcs_address: ``HOST:PORT`` of the head's GCS, for ``ray.init(address=...)``.
        dashboard_url: ``http://127.0.0.1:PORT`` (Jobs API), or ``None`` without a dashboard.
        auth_mode: ``"token"`` or ``"disabled"``.
        root: the directory holding every node's temp dir and log.
    """

    gcs_address: str
    dashboard_url: str | None
    auth_mode: str
    root: Path
    token: str | None = field(default=None, repr=False)
    nodes: list[_Node] = field(default_factory=list, repr=False)

    def env(self, base: dict[str, str] | None = None, *,
            with_address: bool = True) -> dict[str, str]:
        """Environment for a client process (driver, ``raysweep submit``): auth and address.

        ``with_address=False`` leaves out ``RAY_ADDRESS`` (for Jobs API clients, which take
        the dashboard URL instead).
        """
        env = dict(os.environ if base is None else base)
        # Drop inherited Ray settings: other auth, another address, and the single-machine
        # switch (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) that makes `ray start` refuse workers.
        for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS",
                    "RAY_API_SERVER_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", _MARKER):
            env.pop(key, None)
        env["RAY_AUTH_MODE"] = self.auth_mode
        if self.token is not None:
            env["RAY_AUTH_TOKEN"] = self.token
        env["RAY_DISABLE_USAGE_STATS"] = "1"
        if with_address:
            env["RAY_ADDRESS"] = self.gcs_address
        return env

    def logs(self, tail: int = 40) -> str:
        """The last lines of every ``ray start`` output, for failure messages."""
        parts = []
        for node in self.nodes:
            text = node.log.read_text(errors="replace") if node.log.exists() else ""
            parts.append(f"--- {node.name} ---\n" + "\n".join(text.splitlines()[-tail:]))
        return "\n".join(parts)

    def kill_node(self, index: int) -> int:
        """SIGKILL one node (its raylet, agents and workers), as a machine crash would.

        Returns how many processes were killed. Index 0 is the head; the others stay up and
        the GCS notices the loss after its health checks time out (about 15 s by default).
        """
        if not 0 <= index < len(self.nodes):
            raise IndexError(f"no node {index} (the cluster has {len(self.nodes)})")
        node = self.nodes[index]
        pids = set(_pids_naming(node.temp_dir, marker=False))
        # Workers rename themselves (ray::...), so find them by their raylet's pid instead.
        raylets = {f"RAY_RAYLET_PID={pid}".encode() for pid in pids}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if raylets & set((entry / "environ").read_bytes().split(b"\0")):
                        pids.add(int(entry.name))
        _signal_group(node.pgid, signal.SIGKILL)
        for pid in pids:
            _signal_pid(pid, signal.SIGKILL)
        return len(pids)

    def stop(self, grace_s: float = 2.0) -> None:
        """Stop every process of this cluster (and only those), then delete its temp dirs.

        SIGTERM, then SIGKILL after ``grace_s``: Ray's GCS and raylets take longer than that
        to shut down gracefully (``ray stop`` waits 16 s), and a test cluster keeps no state.
        """
        for node in reversed(self.nodes):
            _signal_group(node.pgid, signal.SIGTERM)
        stray = _pids_naming(self.root)
        for pid in stray:
            _signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            alive = [n for n in self.nodes if _group_alive(n.pgid)] or _pids_naming(self.root)
            if not alive:
                break
            time.sleep(0.2)
        for node in self.nodes:
            _signal_group(node.pgid, signal.SIGKILL)
        for pid in _pids_naming(self.root):
            _signal_pid(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _stat(entry: Path) -> tuple[str, int] | None:
    """(state, process group) of a /proc entry, or ``None`` if it is gone."""
    try:
        text = (entry / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields[0], int(fields[2])


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is still in the group."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(entry)
            if st is not None and st[1] == pgid and st[0] != "Z":
                return True
    return False


def _pids_naming(root: Path, *, marker: bool = True) -> list[int]:
    """Live pids (not ours) of this cluster: their command line names ``root``, or (with
    ``marker``) their environment carries this cluster's marker (Ray daemons, workers, job
    drivers, including any that left the ``ray start`` process group)."""
    needle = str(root).encode()
    env_marker = f"{_MARKER}={root}".encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            hit = needle in (entry / "cmdline").read_bytes()
            if not hit and marker:
                hit = env_marker in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        st = _stat(entry)
        if hit and st is not None and st[0] != "Z":
            found.append(int(entry.name))
    return found


def _ray_start(name: str, args: list[str], env: dict[str, str], root: Path) -> _Node:
    temp_dir = root / name
    log = root / f"{name}.log"
    cmd = [_ray_executable(), "start", *args, "--temp-dir", str(temp_dir),
           "--disable-usage-stats", "--log-style", "record", "--log-color", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL)
    node = _Node(name, temp_dir, proc.pid, log)
    try:
        rc = proc.wait(timeout=_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        rc = None
    if rc != 0:
        _signal_group(proc.pid, signal.SIGKILL)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise ClusterStartError(f"`ray start` for {name} "
                                f"{'timed out' if rc is None else f'exited {rc}'}:\n{tail}")
    return node


def _node_ports() -> list[str]:
    # Nodes on one host must not share the fixed default ports (agent 52365, metrics, ...).
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            "--metrics-export-port", str(free_port())]


@contextlib.contextmanager
def local_cluster(
    n_nodes: int = 2,
    cpus_per_node: int = 1,
    *,
    auth_mode: str = "token",
    dashboard: bool = False,
    object_store_mb: int = 100,
) -> Iterator[LocalCluster]:
    """Start a head and ``n_nodes - 1`` workers with ``ray start``; stop them all on exit.

    Args:
        n_nodes: nodes including the head (>= 1).
        cpus_per_node: ``--num-cpus`` of each node.
        auth_mode: ``"token"`` (a fresh random token shared through the environment) or
            ``"disabled"``; the same on every node and in :meth:`LocalCluster.env`.
        dashboard: start the head's dashboard on 127.0.0.1 (needed for the Jobs API).
        object_store_mb: object store size per node.

    Raises:
        ClusterStartError: a ``ray start`` failed (nothing is left running).
    """
    if n_nodes < 1:
        raise ValueError(f"n_nodes must be >= 1, got {n_nodes}")
    if auth_mode not in ("token", "disabled"):
        raise ValueError(f"auth_mode must be 'token' or 'disabled', got {auth_mode!r}")
    # Short root: Ray's unix socket paths under it must stay below 108 characters.
    root = Path(tempfile.mkdtemp(prefix="rsc-", dir="/tmp" if Path("/tmp").is_dir() else None))
    token = secrets.token_hex(32) if auth_mode == "token" else None
    port = free_port()
    dash_port = free_port() if dashboard else None
    cluster = LocalCluster(gcs_address=f"127.0.0.1:{port}",
                           dashboard_url=f"http://127.0.0.1:{dash_port}" if dashboard else None,
                           auth_mode=auth_mode, root=root, token=token)
    env = cluster.env(with_address=False)
    env[_MARKER] = str(root)
    object_store = str(object_store_mb * 1024 * 1024)
    try:
        head_args = ["--head", "--port", str(port), "--num-cpus", str(cpus_per_node),
                     "--num-gpus", "0", "--object-store-memory", object_store,
                     "--ray-client-server-port", str(free_port()),
                     "--include-dashboard", "true" if dashboard else "false",
                     "--dashboard-host", "127.0.0.1", *_node_ports()]
        if dash_port is not None:
            head_args += ["--dashboard-port", str(dash_port)]
        cluster.nodes.append(_ray_start("head", head_args, env, root))
        for i in range(1, n_nodes):
            worker_args = ["--address", cluster.gcs_address, "--num-cpus", str(cpus_per_node),
                           "--num-gpus", "0", "--object-store-memory", object_store,
                           *_node_ports()]
            cluster.nodes.append(_ray_start(f"worker{i}", worker_args, env, root))
        yield cluster
    finally:
        cluster.stop()
