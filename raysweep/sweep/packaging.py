"""What ``raysweep submit`` uploads: an allow-list, never secrets, never a home directory.

Ray's packager uploads a job's ``working_dir`` minus its excludes, so anything lying in the
directory (``.env``, ``~/.ssh``, cloud credentials) would reach the cluster, where anyone who
can list jobs can download it. Instead :func:`plan_upload` chooses the files:

* in a git checkout, the files git tracks under the root (plus the spec files named on the
  command line, tracked or not);
* elsewhere, the ``raysweep`` package and the spec files;

then drops every candidate that looks like a credential by its name (``.env``, ``.netrc``,
``.git-credentials``, ``.ssh/``, ``.aws/``, ``.docker/config.json``, private keys,
``*.pem`` ...) or by its content (a PEM private key block, a Google service-account JSON).
:func:`stage` copies the survivors to a private temporary directory, which is what Ray
uploads. A root that is, or contains, a home directory is refused.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import raysweep
from raysweep.errors import ConfigError

__all__ = ["UploadPlan", "check_root", "plan_upload", "stage", "secret_reason", "home_directories",
           "EXCLUDED_PARTS", "SECRET_NAMES"]

#: Never uploaded: caches, VCS data, local tracking stores, results.
EXCLUDED_PARTS: tuple[str, ...] = (
    ".git", "__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".ruff_cache",
    ".mypy_cache", ".benchmarks", ".venv", "venv", "node_modules", "build", "dist",
    "mlflow.db", "mlflow.db-journal", "mlruns", "mlartifacts", ".raysweep", "ray_results",
)
#: Directories whose whole content is credentials.
SECRET_DIRS: tuple[str, ...] = (".ssh", ".aws", ".gnupg", ".azure", ".kube", ".gcloud",
                                 ".config/gcloud", ".docker")
#: File names (globs, matched case-insensitively) that hold credentials.
SECRET_NAMES: tuple[str, ...] = (
    ".env", ".env.*", "*.env", ".envrc", ".netrc", "_netrc", ".git-credentials", ".pgpass",
    ".pypirc", ".npmrc", ".dockercfg", "config.json.docker", "id_rsa", "id_dsa", "id_ecdsa",
    "id_ed25519", "id_*_sk", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
    "*.ppk", "*.asc", "credentials", "credentials.json", "*service-account*.json",
    "*service_account*.json", "secrets.*", ".htpasswd", "auth_token",
)
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_SERVICE_ACCOUNT = re.compile(rb'"type"\s*:\s*"service_account"')
_AWS_KEY = re.compile(rb"aws_secret_access_key\s*=", re.IGNORECASE)
_SCAN_BYTES = 4 << 20  # a file is scanned up to here; larger files are data, not key files


@dataclass
class UploadPlan:
    """The files one job upload would contain (paths relative to ``root``) and what was
    left out as a secret, with the reason."""

    root: Path
    source: str                                   # "git" | "package"
    files: list[str] = field(default_factory=list)
    secrets: list[tuple[str, str]] = field(default_factory=list)
    total_bytes: int = 0
    #: where a file comes from when it is not ``root / rel`` (the installed package)
    sources: dict[str, Path] = field(default_factory=dict)

    def path_of(self, rel: str) -> Path:
        return self.sources.get(rel, self.root / rel)

    def describe(self) -> str:
        what = ("git-tracked files" if self.source == "git"
                else "the raysweep package and the spec files")
        left = ""
        if self.secrets:
            names = ", ".join(p for p, _ in self.secrets[:5])
            more = f" and {len(self.secrets) - 5} more" if len(self.secrets) > 5 else ""
            left = f"; left out as credentials: {names}{more}"
        return (f"uploading {len(self.files)} files, {_size(self.total_bytes)}, from {self.root} "
                f"({what}){left}")

    def to_dict(self) -> dict[str, object]:
        return {"root": str(self.root), "source": self.source, "files": len(self.files),
                "bytes": self.total_bytes, "left_out_as_credentials": [p for p, _ in self.secrets]}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def home_directories() -> set[Path]:
    """This user's home and every account's home directory on this machine."""
    homes = {Path.home().resolve()}
    try:
        for entry in pwd.getpwall():
            if entry.pw_dir and entry.pw_dir not in ("/", "/nonexistent") \
                    and Path(entry.pw_dir).is_dir():
                homes.add(Path(entry.pw_dir).resolve())
    except OSError:  # pragma: no cover - no passwd database
        pass
    return homes


def check_root(root: Path, flag: str = "--working-dir") -> None:
    """Refuse (:class:`ConfigError`) the file system root and anything that is or holds a home
    directory as an upload root."""
    root = Path(root).resolve()
    if root == Path(root.anchor):
        raise ConfigError(f"{flag} {root}: refusing to upload the file system root to the "
                          f"cluster; pass --working-dir PROJECT_DIR")
    for home in home_directories():
        if root == home or root in home.parents:
            raise ConfigError(
                f"{flag} {root}: refusing to upload a home directory to the cluster (it holds "
                f"credentials such as ~/.ssh and ~/.aws); run from the project checkout or "
                f"pass --working-dir PROJECT_DIR")


def secret_reason(rel: str, path: Path | None = None) -> str | None:
    """Why ``rel`` (a POSIX path relative to the upload root) must not be uploaded, or ``None``.
    With ``path``, the file's first bytes are scanned too."""
    parts = PurePosixPath(rel).parts
    low = [p.lower() for p in parts]
    joined = "/".join(low)
    for d in SECRET_DIRS:
        dparts = d.split("/")
        for i in range(len(low) - len(dparts)):
            if low[i:i + len(dparts)] == dparts:
                return f"inside {d}/"
    name = low[-1]
    if name.endswith(".pub"):
        return None
    for pattern in SECRET_NAMES:
        if fnmatch.fnmatchcase(name, pattern):
            return f"name matches {pattern}"
    if joined.endswith(".docker/config.json"):
        return "a docker login"
    if path is not None:
        try:
            with open(path, "rb") as f:
                head = f.read(_SCAN_BYTES)
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"
        if _PRIVATE_KEY.search(head):
            return "holds a private key"
        if _SERVICE_ACCOUNT.search(head):
            return "a service-account key"
        if _AWS_KEY.search(head):
            return "holds an AWS secret key"
    return None


def _excluded(rel: str) -> bool:
    return any(fnmatch.fnmatchcase(p, pat) for p in PurePosixPath(rel).parts
               for pat in EXCLUDED_PARTS)


def _git_files(root: Path) -> list[str] | None:
    """Tracked files under ``root`` (relative to it), or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--", "."],
                             capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [p for p in out.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def _package_files() -> dict[str, Path]:
    """The raysweep package's files as ``raysweep/...`` -> where they are (installed anywhere:
    the job finds it on its working dir's path)."""
    pkg = Path(raysweep.__file__).resolve().parent
    return {("raysweep" / p.relative_to(pkg)).as_posix(): p
            for p in pkg.rglob("*") if p.is_file()}


def plan_upload(root: Path, spec_files: Sequence[str] = (), *,
                flag: str = "--working-dir") -> UploadPlan:
    """The allow-listed files of ``root`` for a job upload (see the module docstring).

    ``spec_files`` are paths relative to ``root`` that the job needs (the sweep YAML); they
    are added even when git does not track them, and checked like everything else. Raises
    :class:`ConfigError` for a home directory or the file system root.
    """
    root = Path(root).resolve()
    check_root(root, flag)
    tracked = _git_files(root)
    plan = UploadPlan(root=root, source="git" if tracked is not None else "package")
    if tracked is None:
        plan.sources = _package_files()
    candidates: Iterable[str] = tracked if tracked is not None else plan.sources
    seen: set[str] = set()
    for rel in [*candidates, *spec_files]:
        if rel in seen or _excluded(rel):
            continue
        seen.add(rel)
        path = plan.path_of(rel)
        if path.is_symlink() or not path.is_file():
            continue  # deleted but still tracked, or a link that could point anywhere
        why = secret_reason(rel, path)
        if why:
            plan.secrets.append((rel, why))
            continue
        plan.files.append(rel)
        plan.total_bytes += path.stat().st_size
    plan.files.sort()
    return plan


def stage(plan: UploadPlan) -> Path:
    """Copy the plan's files to a new private temporary directory and return it (the caller
    removes it once the upload is done)."""
    dest = Path(tempfile.mkdtemp(prefix="raysweep-upload-"))
    try:
        for rel in plan.files:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(plan.path_of(rel), target)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    os.chmod(dest, 0o700)
    return dest
