"""Submit sweeps and other commands to a Ray cluster through the Ray Jobs API.

``raysweep submit SPACE.yaml --address http://HEAD:8265`` uploads the project (its git-tracked
files, or the raysweep package and the spec, never credentials: :mod:`raysweep.sweep.packaging`)
as the job's ``working_dir`` and runs ``python -m raysweep run SPACE.yaml`` on the head node,
where Ray sets ``RAY_ADDRESS`` so the sweep joins the cluster. ``raysweep jobs`` lists,
stops and shows the logs of jobs.

The Jobs API is remote code execution by design (ShadowRay, CVE-2023-48022): reach port
8265 through an SSH tunnel, ``kubectl port-forward`` or an authenticating proxy, with token
auth on, never over a public interface. With ``RAY_AUTH_MODE=token`` (set automatically
here when a token is configured) every request carries ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import re
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from raysweep._secrets import has_credentials, is_secret_name, redact_uri, strip_credentials
from raysweep.errors import ConfigError, UserError
from raysweep.sweep.local_ray import auth_mode, ensure_token_auth, token_source
from raysweep.sweep.packaging import EXCLUDED_PARTS, UploadPlan, stage

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

__all__ = [
    "DEFAULT_EXCLUDES",
    "JobSummary",
    "connect",
    "exit_code",
    "job_logs",
    "list_jobs",
    "normalize_address",
    "project_root",
    "runtime_env_for",
    "staged_upload",
    "stop_job",
    "submit",
    "sweep_entrypoint",
    "wait_for_job",
]

#: Never uploaded with the working dir: caches, VCS data, local tracking stores, results. The
#: upload is an allow-list already (packaging.plan_upload); Ray applies these once more.
DEFAULT_EXCLUDES: tuple[str, ...] = (*EXCLUDED_PARTS, "out")
_PROBE_TIMEOUT_S = 5.0
_LOCAL_TRACKING_PREFIXES = ("sqlite:", "file:", "./", "/")


@dataclass(frozen=True)
class JobSummary:
    """One job as ``raysweep jobs list --json`` prints it."""

    job_id: str
    status: str
    entrypoint: str
    message: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    driver_exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize_address(address: str | None) -> str:
    """The Jobs API URL from ``--address``, ``RAY_API_SERVER_ADDRESS`` or an http ``RAY_ADDRESS``.

    ``HEAD:8265`` becomes ``http://HEAD:8265``. Raises :class:`ConfigError` naming the value
    and the expected form.
    """
    source = "--address"
    if not address:
        address = os.environ.get("RAY_API_SERVER_ADDRESS")
        source = "RAY_API_SERVER_ADDRESS"
    if not address:
        env_addr = os.environ.get("RAY_ADDRESS", "")
        if env_addr.startswith(("http://", "https://")):
            address, source = env_addr, "RAY_ADDRESS"
    if not address:
        raise ConfigError("no Ray Jobs API address: pass --address http://HEAD:8265 or set "
                          "RAY_API_SERVER_ADDRESS")
    raw = address.strip()
    url = raw if "://" in raw else f"http://{raw}"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 \
            or parts.path not in ("", "/"):
        hint = (" (ray:// and GCS addresses such as HEAD:6379 are for `raysweep run --address`;"
                " jobs go to the dashboard port, 8265 by default)")
        raise ConfigError(f"{source}: invalid Ray Jobs API address {raw!r}; expected "
                          f"http://HOST:PORT or https://HOST:PORT{hint}")
    return url.rstrip("/")


def _probe(url: str) -> None:
    """Fail fast with one line when nothing listens at ``url`` (requests can hang for minutes)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            pass
    except socket.gaierror:
        raise UserError(f"--address {url}: unknown host {host!r}; check the head node's "
                        f"name or IP") from None
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"--address {url}: cannot reach the Ray Jobs API ({reason}); is the "
                        f"head running with the dashboard on port {port}, and is the port "
                        f"forwarded (ssh -L / kubectl port-forward)?") from None


@contextlib.contextmanager
def _translated(url: str, job_id: str | None = None) -> Iterator[None]:
    """Turn the Jobs SDK's exceptions into one-line user errors."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError:
        have = token_source()
        raise UserError(
            f"{url} rejected the request: token authentication failed "
            f"(RAY_AUTH_MODE={auth_mode() or 'unset'}, token from {have or 'nowhere'}); set "
            f"RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the cluster's "
            f"token") from None
    except ConnectionError as exc:
        raise UserError(f"--address {url}: {exc}") from None
    except RuntimeError as exc:
        text = str(exc)
        if job_id is not None and ("does not exist" in text or "404" in text):
            raise UserError(f"job {job_id!r} not found on {url}; see: raysweep jobs list "
                            f"--address {url}") from None
        raise


def connect(address: str | None) -> tuple[JobSubmissionClient, str]:
    """A ``JobSubmissionClient`` for ``address`` and the normalized URL.

    An explicit address wins over ``RAY_ADDRESS`` (the SDK would otherwise let the
    environment override it). Token auth is switched on when a token is configured.
    """
    url = normalize_address(address)
    _probe(url)
    if auth_mode() is None and token_source() is not None:
        ensure_token_auth(create=False)
    try:
        from ray.exceptions import AuthenticationError
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:  # pragma: no cover - ray[default] is a dependency
        raise UserError(f"the Ray Jobs API needs ray[default]: pip install 'ray[default]' "
                        f"({exc})") from None
    saved = {k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
             if k in os.environ}
    try:
        with _translated(url):
            try:
                client = JobSubmissionClient(url)
            except (UserError, ConnectionError, AuthenticationError):
                raise
            except Exception as exc:
                first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                raise UserError(f"--address {url}: no Ray Jobs API answers there ({first}); "
                                f"use the dashboard port of the head (8265 by default), not the "
                                f"GCS port (6379)") from None
    finally:
        os.environ.update(saved)
    return client, url


def project_root() -> Path:
    """The directory uploaded as ``working_dir``: the source checkout holding this package,
    else the current directory."""
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file() and (here / "raysweep").is_dir():
        return here
    return Path.cwd()


def relative_to_root(path: str | Path, root: Path, what: str = "SPACE") -> str:
    """``path`` as the job will see it: POSIX, relative to the uploaded ``root``."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, root / p]
    for cand in candidates:
        if cand.is_file():
            try:
                return cand.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                raise ConfigError(
                    f"{what} {path}: the file is outside the working dir {root} that is "
                    f"uploaded to the cluster; move it under {root} or pass --working-dir"
                ) from None
    raise ConfigError(f"{what} {path}: file not found")


def sweep_entrypoint(space: str, overrides: Sequence[str] = (),
                     run_args: Sequence[str] = ()) -> str:
    """The shell command a sweep job runs: ``python -m raysweep run SPACE [--set k=v]...``.

    ``python -m`` works whether or not the cluster image installed raysweep: the uploaded
    working dir is on the job's ``PYTHONPATH``.
    """
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"--set {item!r}: expected key=value")
    argv = ["python", "-m", "raysweep", "run", space]
    for item in overrides:
        argv += ["--set", item]
    argv += list(run_args)
    return shlex.join(argv)


def _parse_env(items: Sequence[str]) -> dict[str, str]:
    # A job's runtime_env is readable by anyone who can list the cluster's jobs: credentials
    # go to the nodes as secrets (cluster/README.md), never through --env.
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"--env {redact_uri(item)!r}: expected NAME=VALUE with a valid "
                              f"variable name")
        if is_secret_name(key) or has_credentials(value):
            raise ConfigError(
                f"--env {key}=...: looks like a credential, and a job's environment is readable "
                f"by anyone who can list the cluster's jobs; give it to the cluster's nodes as a "
                f"secret instead (cluster/README.md, 'Credentials')")
        env[key] = value
    return env


def runtime_env_for(working_dir: Path | None, env: Sequence[str] = (),
                    excludes: Sequence[str] = DEFAULT_EXCLUDES,
                    warn: bool = True) -> dict[str, Any]:
    """The job's runtime_env: working dir (with excludes) and environment variables.

    ``MLFLOW_TRACKING_URI`` is forwarded when it names a server, without the ``user:password@``
    part it may carry; a local sqlite/file store would be a fresh, lost file on the head, so
    it is left out with a warning. Credentials (``MLFLOW_TRACKING_PASSWORD``, tokens, a
    password in a URI, ``--env`` values that look like one) are never forwarded: runtime envs
    are readable by anyone who can list jobs; give them to the cluster's nodes as secrets.
    """
    env_vars = {"RAY_DISABLE_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1"}
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith(_LOCAL_TRACKING_PREFIXES) or "://" not in uri:
            if warn:
                print(f"raysweep: warning: MLFLOW_TRACKING_URI={redact_uri(uri)} is local to "
                      f"this machine; not forwarded (pass --env "
                      f"MLFLOW_TRACKING_URI=http://SERVER:5000)", file=sys.stderr)
        else:
            env_vars["MLFLOW_TRACKING_URI"] = strip_credentials(uri)
            if warn and has_credentials(uri):
                print(f"raysweep: warning: MLFLOW_TRACKING_URI={redact_uri(uri)} carries a "
                      f"password; the job gets it without one (give the nodes "
                      f"MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD as secrets)",
                      file=sys.stderr)
    env_vars.update(_parse_env(env))
    renv: dict[str, Any] = {"env_vars": env_vars}
    if working_dir is not None:
        if not working_dir.is_dir():
            raise ConfigError(f"--working-dir {working_dir}: not a directory")
        renv["working_dir"] = str(working_dir)
        renv["excludes"] = list(excludes)
    return renv


@contextlib.contextmanager
def staged_upload(runtime_env: dict[str, Any],
                  plan: UploadPlan | None) -> Iterator[dict[str, Any]]:
    """``runtime_env`` with its ``working_dir`` replaced by a private copy of ``plan``'s files
    (removed again on exit: Ray has uploaded it by the time ``submit_job`` returns)."""
    if plan is None or "working_dir" not in runtime_env:
        yield runtime_env
        return
    staged = stage(plan)
    try:
        yield {**runtime_env, "working_dir": str(staged)}
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def submit(client: JobSubmissionClient, url: str, entrypoint: str,
           runtime_env: dict[str, Any] | None = None, *,
           submission_id: str | None = None,
           metadata: dict[str, str] | None = None) -> str:
    """Submit ``entrypoint``; return the submission id (``raysubmit_...``)."""
    with _translated(url):
        return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                 submission_id=submission_id, metadata=metadata)


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def _summary(job_id: str, info: Any) -> JobSummary:
    status = getattr(info.status, "value", str(info.status))
    return JobSummary(job_id=job_id, status=str(status), entrypoint=info.entrypoint,
                      message=info.message, start_time=_iso(info.start_time),
                      end_time=_iso(info.end_time),
                      driver_exit_code=getattr(info, "driver_exit_code", None))


def job_info(client: JobSubmissionClient, url: str, job_id: str) -> JobSummary:
    with _translated(url, job_id):
        return _summary(job_id, client.get_job_info(job_id))


def list_jobs(client: JobSubmissionClient, url: str) -> list[JobSummary]:
    """Jobs submitted through the Jobs API, oldest first."""
    with _translated(url):
        details = client.list_jobs()
    rows = [_summary(d.submission_id or d.job_id or "?", d) for d in details
            if d.submission_id or d.job_id]
    return sorted(rows, key=lambda r: r.start_time or "")


def stop_job(client: JobSubmissionClient, url: str, job_id: str) -> bool:
    """Ask the job to stop; ``False`` if it had already finished."""
    with _translated(url, job_id):
        return bool(client.stop_job(job_id))


def job_logs(client: JobSubmissionClient, url: str, job_id: str) -> str:
    with _translated(url, job_id):
        return client.get_job_logs(job_id)


def exit_code(summary: JobSummary) -> int:
    """The CLI exit status for a finished job: the driver's own code when Ray recorded it,
    else 0 for SUCCEEDED, 130 for STOPPED and 1 otherwise."""
    if summary.status == "SUCCEEDED":
        return 0
    if summary.driver_exit_code not in (None, 0):
        return int(summary.driver_exit_code)  # type: ignore[arg-type]
    return 130 if summary.status == "STOPPED" else 1


_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def _follow_poll(client: JobSubmissionClient, url: str, job_id: str, out: IO[str],
                 poll_s: float, seen: int = 0) -> None:
    while True:
        info = job_info(client, url, job_id)
        text = job_logs(client, url, job_id)
        if len(text) > seen:
            out.write(text[seen:])
            out.flush()
            seen = len(text)
        if info.status in _TERMINAL:
            return
        time.sleep(poll_s)


def wait_for_job(client: JobSubmissionClient, url: str, job_id: str, *,
                 out: IO[str] | None = None, quiet: bool = False,
                 poll_s: float = 1.0) -> JobSummary:
    """Wait until the job finishes; stream its logs to ``out`` (default stderr) unless ``quiet``.

    Follows the log websocket; falls back to polling when a proxy blocks websockets.
    """
    if not quiet and out is None:
        out = sys.stderr
    if quiet or out is None:
        info = job_info(client, url, job_id)
        while info.status not in _TERMINAL:
            time.sleep(poll_s)
            info = job_info(client, url, job_id)
        return info

    written = 0

    async def _tail() -> None:
        nonlocal written
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            written += len(chunk)

    try:
        with _translated(url, job_id):
            asyncio.run(_tail())
    except UserError:
        raise
    except Exception:
        _follow_poll(client, url, job_id, out, poll_s, seen=written)
    # The websocket closes when the driver exits; the status can lag a moment behind.
    deadline = time.monotonic() + 30
    info = job_info(client, url, job_id)
    while info.status not in _TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        info = job_info(client, url, job_id)
    return info
