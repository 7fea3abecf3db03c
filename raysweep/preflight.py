"""Checks of the environment and output settings, run before anything is written.

A sweep creates its directory, an MLflow parent run and trains reference models; a suite trains
everything before it writes its report. A setting that cannot work (an unwritable
``RAYSWEEP_HOME``, an MLflow URI of an unknown scheme, ``RAY_ADDRESS=auto`` with no cluster, a
GPU request on a machine without one) must fail before any of that, with one
:class:`~raysweep.errors.UserError` line naming the setting, its value and the fix. Nothing here
creates a file or a directory: writability is judged on the nearest existing ancestor.

``raysweep run`` calls :func:`sweep_preflight`; ``raysweep validate`` and ``run --dry-run`` call
:func:`static_sweep_checks` (what does not depend on the machine); ``bench run`` calls
:func:`bench_preflight`.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import string
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

from raysweep._secrets import redact_uri
from raysweep.errors import ConfigError, UserError
from raysweep.sweep.local_ray import running_cluster_address

__all__ = ["check_device", "check_device_format", "check_num_cpus", "check_writable_dir",
           "check_env_dirs", "check_ray_auto", "check_tracking_store", "check_experiment",
           "check_local_resources", "check_out_template", "sweep_preflight", "static_sweep_checks",
           "bench_preflight", "OUT_PLACEHOLDERS"]

_DEVICE = re.compile(r"^(?:auto|cpu|mps|cuda(?::(\d{1,3}))?)$")
#: MLflow tracking URI schemes raysweep can use (plain paths are file stores).
_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file", "databricks")
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Placeholders a ``bench run --out`` template may use.
OUT_PLACEHOLDERS = ("suite", "timestamp")


def check_device_format(device: str, where: str = "--device") -> re.Match[str]:
    """``cpu``, ``auto``, ``mps`` or ``cuda[:N]`` (whether it exists is :func:`check_device`)."""
    m = _DEVICE.match(str(device))
    if not m:
        raise UserError(f"{where} {device!r}: not a device; use cpu, cuda, cuda:N, mps or auto")
    return m


def check_device(device: str | None, where: str = "--device") -> None:
    """``cpu``, ``auto``, ``mps`` or ``cuda[:N]``, and the device must exist on this machine."""
    if device is None or device == "auto":
        return
    m = check_device_format(device, where)
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(m.group(1) or 0)
        if count == 0:
            raise UserError(f"{where} {device!r}: this machine has no CUDA device; use cpu or "
                            f"auto")
        if index >= count:
            raise UserError(f"{where} {device!r}: there are {count} CUDA device(s), "
                            f"cuda:0..cuda:{count - 1}; pick one of them")
    if device == "mps":
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{where} 'mps': Apple's MPS backend is not available here; use cpu")


def check_num_cpus() -> int | None:
    """``RAYSWEEP_NUM_CPUS``: a positive integer (it caps the local Ray), or unset."""
    raw = os.environ.get("RAYSWEEP_NUM_CPUS")
    if raw is None or raw == "":
        return None
    try:
        n = int(raw.strip())
    except ValueError:
        n = 0
    if not 1 <= n <= 4096:
        raise UserError(f"RAYSWEEP_NUM_CPUS={raw!r}: expected a whole number of CPUs from 1 to "
                        f"4096; unset it to use every CPU")
    return n


def check_writable_dir(path: Path, what: str) -> None:
    """``path`` is a writable directory, or can be created as one (nothing is created)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise UserError(f"{what} {p}: exists but is not a directory; point it at a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise UserError(f"{what} {p}: directory is not writable; fix its permissions or "
                            f"choose another directory")
        return
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {p}: cannot be created because {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {p}: cannot be created, {parent} is not writable; choose a "
                        f"directory you can write")


def check_env_dirs(*, home: bool = True, cache: bool = True) -> None:
    """``RAYSWEEP_HOME`` (sweep directories) and ``RAYSWEEP_CACHE`` (workloads)."""
    if home:
        check_writable_dir(Path(os.environ.get("RAYSWEEP_HOME") or ".raysweep"), "RAYSWEEP_HOME")
    if cache:
        from raysweep.workload import cache_root

        check_writable_dir(cache_root(), "RAYSWEEP_CACHE")


def check_ray_auto(address: str | None) -> None:
    """``auto`` (``--address`` or ``RAY_ADDRESS``) needs a running cluster on this machine."""
    if address != "auto":
        return

    try:
        found = running_cluster_address()
    except LookupError:  # Ray's private lookup changed: let Ray decide
        return
    if not found:
        raise UserError("RAY_ADDRESS/--address 'auto': no running Ray cluster found on this "
                        "machine; start one with ray start --head, give HOST:PORT, or unset "
                        "RAY_ADDRESS for a private local Ray")
    from raysweep.sweep.runner import check_ray_address

    check_ray_address(found)


def check_tracking_store(uri: str) -> None:
    """The MLflow URI has a scheme raysweep can use, a local database path is a writable
    database (or can become one), and a server or database host answers: the one check of the
    tracking store, run before anything is prepared or written."""
    shown = _shown(uri)
    scheme = uri.split(":", 1)[0].lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", uri) else ""
    base = scheme.split("+", 1)[0]
    if scheme and base not in _SCHEMES:
        raise UserError(f"MLFLOW_TRACKING_URI {shown}: unknown scheme {scheme!r}; use "
                        f"sqlite:///PATH.db, http(s)://HOST:PORT or postgresql://...")
    if base == "sqlite":
        path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
        if path is None or not str(path) or str(path) == ":memory:":
            raise UserError(f"MLFLOW_TRACKING_URI {shown}: give a database file, "
                            f"sqlite:///PATH/mlflow.db")
        if path.is_dir():
            raise UserError(f"MLFLOW_TRACKING_URI {shown}: {path} is a directory, not a database "
                            f"file; use sqlite:///{path}/mlflow.db")
        if path.exists():
            try:
                with path.open("rb") as fh:
                    head = fh.read(len(_SQLITE_MAGIC))
            except OSError as exc:
                raise UserError(f"MLFLOW_TRACKING_URI {shown}: cannot read {path} "
                                f"({exc.strerror or exc})") from None
            if head and head != _SQLITE_MAGIC:
                raise UserError(f"MLFLOW_TRACKING_URI {shown}: {path} is not an SQLite database; "
                                f"point it at an MLflow database or a new file name")
            if not os.access(path, os.W_OK):
                raise UserError(f"MLFLOW_TRACKING_URI {shown}: {path} is read-only; fix its "
                                f"permissions or choose another database")
        elif not path.parent.is_dir():  # SQLite creates the file, never its directory
            raise UserError(f"MLFLOW_TRACKING_URI {shown}: directory {path.parent} does not "
                            f"exist; create it or choose another path")
        else:
            check_writable_dir(path.parent, f"MLFLOW_TRACKING_URI {shown}: directory")
    if base in _DB_PORTS:
        _check_db_reachable(uri, base)
    if base in ("http", "https"):
        check_server_reachable(uri, default_port=443 if base == "https" else 80,
                               server="MLflow server", example="http://127.0.0.1:5000",
                               fix="start the server or set MLFLOW_TRACKING_URI to a reachable "
                                   "store")
    if base == "file" or not scheme:
        raise UserError(f"MLFLOW_TRACKING_URI {shown}: a file store is not supported (MLflow 3 "
                        f"refuses it); use sqlite:///PATH/mlflow.db")


_DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def _shown(uri: str) -> str:
    """The URI as it may be printed: the project's one redaction (passwords and credential
    query parameters masked, the user name kept)."""
    return redact_uri(uri)


def _check_db_reachable(uri: str, base: str, timeout: float = 3.0) -> None:
    """A database server that does not answer: MLflow would retry for minutes, then fail."""
    check_server_reachable(uri, default_port=_DB_PORTS[base], server="database server",
                           example=f"{base}://USER@HOST/DB", timeout=timeout,
                           fix="start it or point MLFLOW_TRACKING_URI at a reachable store")


def check_server_reachable(uri: str, *, default_port: int, server: str, example: str, fix: str,
                           timeout: float = 3.0) -> None:
    """``uri``'s host accepts a TCP connection (an MLflow or database server), else one line
    naming the URI with its credentials masked."""
    shown = _shown(uri)
    parts = urlsplit(uri)
    try:
        port = parts.port or default_port
    except ValueError:
        raise UserError(f"MLFLOW_TRACKING_URI {shown}: bad port; {fix}") from None
    if not parts.hostname:
        raise UserError(f"MLFLOW_TRACKING_URI {shown}: no host; e.g. {example}")
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(f"MLFLOW_TRACKING_URI {shown}: {server} unreachable "
                        f"({exc.strerror or exc}); {fix}") from None


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_experiment(uri: str, name: str, where: str) -> None:
    """The experiment is not deleted in an existing local store, and its artifact root (the
    ``mlartifacts`` directory next to an SQLite database) can be written."""
    path = _sqlite_path(uri)
    if path is None:
        return
    check_writable_dir(path.parent / "mlartifacts", "MLflow artifact root")
    if not path.is_file() or path.stat().st_size == 0:
        return  # a new store: nothing to look up, and looking would create it

    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT lifecycle_stage, artifact_location FROM experiments "
                              "WHERE name = ?", (name,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return  # not an MLflow schema yet or locked: MLflow reports it with its own words
    if row is None:
        return
    stage, location = row
    if stage == "deleted":
        raise UserError(f"{where} {name!r}: this MLflow experiment is deleted in {_shown(uri)}; "
                        f"restore it (mlflow experiments restore --experiment-id ID) or choose "
                        f"another name")
    if isinstance(location, str) and location.startswith("file://"):
        check_writable_dir(Path(unquote(urlparse(location).path)),
                           f"MLflow artifact root of experiment {name!r}")


def check_local_resources(cpu: float, gpu: float, address: str | None, where: str,
                          num_cpus: int | None = None) -> None:
    """On a private local Ray, a trial must fit this machine or it waits forever."""
    if address:
        return  # a cluster: its resources are checked once Ray is joined
    import ray

    if ray.is_initialized():  # a Ray this process already runs is used as it is
        have = ray.cluster_resources()
        if cpu > have.get("CPU", 0.0) or gpu > have.get("GPU", 0.0):
            raise UserError(f"{where}: {cpu:g} CPU / {gpu:g} GPU per trial, but the running Ray "
                            f"has {have.get('CPU', 0.0):g} CPU / {have.get('GPU', 0.0):g} GPU; "
                            f"lower it")
        return
    cpus = num_cpus or check_num_cpus() or os.cpu_count() or 1
    if cpu > cpus:
        raise UserError(f"{where}.cpu: {cpu:g} CPUs per trial, but the local Ray has {cpus}; "
                        f"lower it, or run on a cluster with --address")
    if gpu > 0:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"{where}.gpu: {gpu:g} GPUs per trial, but this machine has no CUDA "
                            f"GPU; set {where}.gpu: 0 or run on a GPU cluster with --address")
        if gpu > n:
            raise UserError(f"{where}.gpu: {gpu:g} GPUs per trial, but this machine has {n}; "
                            f"lower it")


def check_out_template(template: str | None) -> None:
    """``bench run --out``: only known placeholders, and a directory that can be written."""
    if not template:
        return
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise UserError(f"--out {template!r}: {exc}; "
                        f"write {{{{ and }}}} for literal braces") from None
    for f in fields:
        if f not in OUT_PLACEHOLDERS:
            raise UserError(f"--out {template!r}: unknown placeholder {{{f}}}; use "
                            f"{', '.join('{' + p + '}' for p in OUT_PLACEHOLDERS)}")
    sample = Path(template.format(suite="suite", timestamp="00000000-000000"))
    check_writable_dir(sample, "--out")


def static_sweep_checks(spec: Any) -> None:
    """What ``validate`` and ``run --dry-run`` can check without this machine's resources: the
    workload exists and parses (a misspelled name fails here, not after the sweep started), and
    every method runs on its kind of model (a classifier method on a language model, or the
    reverse, would fail every one of its trials)."""
    from raysweep.methods import get_method
    from raysweep.methods._base import unsupported_task_message
    from raysweep.workload import load_workload_config, task_of

    task = task_of(load_workload_config(spec.workload))
    for name in spec.method_names():
        if task not in get_method(name).tasks:
            raise ConfigError(f"sweep {spec.name}: methods.{name}: "
                              f"{unsupported_task_message(name, task)} (workload "
                              f"{spec.workload!r}); drop {name} or choose another workload")


def sweep_preflight(spec: Any, address: str | None, uri: str, num_cpus: int | None = None) -> None:
    """Everything ``raysweep run`` can check before it writes or trains anything."""
    static_sweep_checks(spec)
    check_num_cpus()
    check_env_dirs()
    target = address or os.environ.get("RAY_ADDRESS") or None
    check_ray_auto(target)
    check_tracking_store(uri)
    check_experiment(uri, spec.tracking.experiment, "tracking.experiment")
    r = spec.resources_per_trial
    check_local_resources(r.cpu, r.gpu, target, "resources_per_trial", num_cpus)


def bench_preflight(suite: Any, *, device: str | None, out: str | None, address: str | None,
                    uri: str) -> None:
    """Everything ``raysweep bench run`` can check before MLflow and training."""
    where = "--device" if device else f"{suite.source}: device"
    if address:  # the runs execute on the cluster's nodes, whose devices are not ours to see
        check_device_format(device or suite.config.device, where)
    else:
        check_device(device or suite.config.device, where)
    if out:
        check_out_template(out)
    else:  # the default report directory, ./.raysweep/bench/<suite>/<timestamp>
        check_writable_dir(Path(".raysweep") / "bench", "the report directory (--out)")
    check_num_cpus()
    check_env_dirs(home=False)
    check_ray_auto(address)
    check_tracking_store(uri)
    check_experiment(uri, suite.experiment_name, "suite experiment")
    # A suite records its MLflow run before it prepares workloads: check what preparing would
    # reject (sizes, scenario, model) first, once per distinct workload.
    from raysweep.workload import check_workload, workload_key

    seen: set[str] = set()
    for entry in suite.entries:
        key = workload_key(entry.workload)
        if key not in seen:
            seen.add(key)
            check_workload(entry.workload)
