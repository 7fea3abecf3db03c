"""Bring ``cluster/ray-cluster-local.yaml`` up for real on this machine, over SSH to 127.0.0.1.

The cluster runs as its own unprivileged user (``raysweep-ci``), reached through a private
``sshd`` bound to 127.0.0.1 and authorised for that user and one generated key only. Running
as another user is what makes this safe on a shared machine: ``ray up`` and ``ray down`` run
``ray stop`` on the node, which kills every Ray process its user may signal; as ``raysweep-ci``
that is only this cluster's, never another test's or engineer's Ray.

The test config is the shipped one with only what a machine without Docker and with other
Ray instances on it needs changed (:func:`runnable_variant`): no ``docker`` section, the head at
127.0.0.1 with no workers, this user and key, and this machine's free ports and temporary
paths in place of the fixed ones (6379, 8265, /mnt/shared, /etc/raysweep/cluster.env).
"""

from __future__ import annotations

import contextlib
import copy
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raysweep.testing_cluster import free_port

USER = "raysweep-ci"
ENV_FILE = "/etc/raysweep/cluster.env"
SHARED = "/mnt/shared"
SSHD = "/usr/sbin/sshd"


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def host_problem() -> str | None:
    """Why the host cannot run the test (a skip reason), after installing what is missing."""
    if os.geteuid() != 0:
        return "needs root: creates a user and runs a private sshd on 127.0.0.1:22"
    missing = [pkg for pkg, exe in (("openssh-server", SSHD), ("rsync", "/usr/bin/rsync"),
                                    ("openssh-client", "/usr/bin/ssh"),
                                    ("acl", "/usr/bin/setfacl")) if not Path(exe).exists()]
    if missing:
        if shutil.which("apt-get") is None:
            return f"cannot install {missing}: no apt-get"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        if proc.returncode != 0:  # the package lists may be missing on a fresh machine
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600,
                           env=env)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        if proc.returncode != 0:
            return f"could not install {missing}: {proc.stderr.strip()[-300:]}"
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 22)) == 0:
            return "127.0.0.1:22 is taken (another sshd); Ray's SSH runner has no port option"
    return None


def ensure_user() -> pwd.struct_passwd:
    """The cluster's user, able to run this interpreter (and so ``ray``) from its login shell."""
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        proc = _run(["useradd", "--create-home", "--shell", "/bin/bash", USER])
        assert proc.returncode == 0, proc.stderr
        entry = pwd.getpwnam(USER)
    # useradd leaves the password locked ("!"), and sshd without PAM refuses locked accounts
    # even for key logins; "*" means no password, yet not locked.
    proc = _run(["usermod", "-p", "*", USER])
    assert proc.returncode == 0, proc.stderr
    # The interpreter may live under a private home (/root/.pyenv): let the user traverse the
    # directories above it, by ACL for this user only, without listing or reading anything else.
    bindir = Path(sys.executable).parent
    for parent in [*reversed(bindir.parents), bindir]:
        if parent.stat().st_mode & 0o001 == 0:
            proc = _run(["setfacl", "-m", f"u:{USER}:x", str(parent)])
            assert proc.returncode == 0, proc.stderr
    home = Path(entry.pw_dir)
    # Ray's SSH runner starts `bash --login -i` and sources ~/.bashrc: put Ray on its PATH,
    # as a host provisioned with Ray would have it.
    (home / ".bashrc").write_text(f'export PATH="{bindir}:$PATH"\n')
    os.chown(home / ".bashrc", entry.pw_uid, entry.pw_gid)
    return entry


@dataclass
class SshServer:
    proc: subprocess.Popen[bytes]
    key: Path


@contextlib.contextmanager
def ssh_server(root: Path, user: pwd.struct_passwd) -> Iterator[SshServer]:
    """A private sshd on 127.0.0.1:22 admitting ``user`` with a fresh ed25519 key only."""
    keys = root / "sshd"
    keys.mkdir(mode=0o700)
    host_key = keys / "host_ed25519"
    client_key = root / "id_ed25519"
    for path in (host_key, client_key):
        proc = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)])
        assert proc.returncode == 0, proc.stderr
    ssh_dir = Path(user.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    for path in (ssh_dir, authorized):
        os.chown(path, user.pw_uid, user.pw_gid)
    authorized.chmod(0o600)
    config = keys / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", "Port 22", f"HostKey {host_key}", f"AllowUsers {user.pw_name}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin no",
        "UsePAM no", f"PidFile {keys / 'sshd.pid'}", "MaxStartups 50", "MaxSessions 50", "",
    ]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=(root / "sshd.log").open("wb"), start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", 22)) == 0:
                    break
            assert proc.poll() is None, (root / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen within 30 s"
            time.sleep(0.2)
        yield SshServer(proc, client_key)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


@dataclass
class Deployment:
    """The test cluster's paths and ports."""

    root: Path          # owned by the cluster user: shared storage, env file, Ray temp dir
    shared: Path
    env_file: Path
    token_dir: Path     # the launcher's side of the token file mount
    gcs_port: int
    dashboard_port: int

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


def runnable_variant(config: dict[str, Any], dep: Deployment, key: Path,
                 cluster_name: str) -> dict[str, Any]:
    """The shipped local config, runnable here (see the module docstring for what changes)."""
    out = copy.deepcopy(config)
    out.pop("docker")
    out["cluster_name"] = cluster_name
    out["provider"] = {**out["provider"], "head_ip": "127.0.0.1", "worker_ips": []}
    out["max_workers"] = 0
    out["auth"] = {"ssh_user": USER, "ssh_private_key": str(key)}
    (remote, _), = out["file_mounts"].items()
    out["file_mounts"] = {remote: str(dep.token_dir)}
    extra = ["--temp-dir", str(dep.root / "ray-tmp"), "--num-cpus", "2", "--num-gpus", "0",
             "--object-store-memory", str(200 * 1024 * 1024),
             "--ray-client-server-port", str(free_port()),
             "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
             "--dashboard-agent-listen-port", str(free_port()),
             "--dashboard-agent-grpc-port", str(free_port()),
             "--runtime-env-agent-port", str(free_port()),
             "--metrics-export-port", str(free_port())]

    def local(cmd: str) -> str:
        cmd = cmd.replace(ENV_FILE, str(dep.env_file)).replace(SHARED, str(dep.shared))
        if "ray start --head" in cmd:
            assert "--port=6379" in cmd and "--dashboard-port=8265" in cmd, cmd
            cmd = cmd.replace("--port=6379", f"--port={dep.gcs_port}")
            cmd = cmd.replace("--dashboard-port=8265", f"--dashboard-port={dep.dashboard_port}")
            cmd += " " + " ".join(extra)
        return cmd

    out["head_start_ray_commands"] = [local(c) for c in out["head_start_ray_commands"]]
    out["worker_start_ray_commands"] = [local(c) for c in out["worker_start_ray_commands"]]
    return out
