"""Resume runs only what you wrote: ownership checks and HMAC signatures of sweep directories.

``Tuner.restore`` unpickles ``ray/tune/tuner.pkl``, the searcher's and the callbacks' state
pickles, and cloudpickled values inside ``experiment_state-*.json``: whoever can write those
files runs code as whoever resumes the sweep. So:

* every sweep directory is created 0700 and ``state.json`` is written 0600;
* at every save point (each ``state.json`` save and each Tune step that changed a snapshot
  file) :func:`sign_sweep_dir` copies the top-level files of ``ray/tune/`` that parse cleanly
  (pickles are walked opcode by opcode, never loaded) to content-addressed blobs under
  ``trusted/`` and writes ``trusted/manifest.json``: their SHA-256, the fields of
  ``state.json`` that decide where resume connects (MLflow store, Ray address, experiment,
  parent run), and an HMAC-SHA256 of all of it keyed by a per-user secret;
* before anything is unpickled, :func:`verify_sweep_dir` refuses a sweep directory, or a
  file in it, that is not owned by you or is group/world-writable; checks the HMAC; refuses
  a ``state.json`` whose signed fields changed; and puts the signed snapshot files back into
  ``ray/tune/`` (files that are not signed are moved to ``unverified-<time>/``).

The key lives in ``$RAYSWEEP_KEY_FILE``, else ``$XDG_CONFIG_HOME/raysweep/secret`` (default
``~/.config/raysweep/secret``): 32 random bytes, mode 0600, outside ``RAYSWEEP_HOME`` so that
someone who can write a shared sweep volume still cannot forge a signature.
``raysweep resume SWEEP --trust`` accepts a directory as it is (older sweeps, a sweep copied
from another machine) after printing what changed, and signs it with your key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback

from raysweep._console import info
from raysweep._secrets import redact_uri, write_private
from raysweep.errors import UserError
from raysweep.sweep._snapshot import check_file

__all__ = ["KEY_ENV", "SIGNED_FIELDS", "TRUSTED", "key_path", "ensure_key", "check_private",
           "public_state", "sign_sweep_dir", "check_sweep_dir", "verify_sweep_dir",
           "SnapshotSigner"]

KEY_ENV = "RAYSWEEP_KEY_FILE"
TRUSTED = "trusted"
#: state.json fields that decide where a resumed sweep connects and what it continues.
SIGNED_FIELDS = ("id", "tracking_uri", "address", "experiment", "experiment_id",
                 "parent_run_id", "workload_key")
_LABEL = {"tracking_uri": "MLflow store", "address": "Ray cluster",
          "experiment": "MLflow experiment", "experiment_id": "MLflow experiment",
          "parent_run_id": "MLflow parent run", "workload_key": "workload", "id": "sweep id"}
_VERSION = 1


# -- the key -----------------------------------------------------------------------------------

def key_path() -> Path:
    """Where the signing key is: ``$RAYSWEEP_KEY_FILE``, else the XDG config directory."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "raysweep" / "secret"


def _read_key(path: Path) -> bytes:
    check_private(path, "signing key", readable_by_others=False)
    data = path.read_bytes()
    if len(data) < 32:
        raise UserError(f"signing key {path}: {len(data)} bytes, expected 32 or more; delete it "
                        f"(sweeps signed with it then need raysweep resume --trust)")
    return data


def ensure_key() -> bytes:
    """The signing key, created (32 random bytes, 0600, its folder 0700) if missing.

    Called before a sweep writes anything, so a key that cannot be created or is readable by
    others stops the run with one line instead of leaving an unsigned sweep behind.
    """
    path = key_path()
    if path.exists() or path.is_symlink():
        return _read_key(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    except FileExistsError:  # created concurrently by another raysweep
        pass
    except OSError as exc:
        raise UserError(f"signing key {path}: cannot create it ({exc.strerror or exc}); set "
                        f"{KEY_ENV} to a file in a private, writable directory") from None
    return _read_key(path)


def _existing_key(sweep_id: str) -> bytes:
    path = key_path()
    if not path.exists():
        raise UserError(f"sweep {sweep_id} was signed with a key that is not here ({path} does "
                        f"not exist: another user or machine); check its files, then accept it "
                        f"with: raysweep resume {sweep_id} --trust")
    return _read_key(path)


# -- ownership and modes -----------------------------------------------------------------------

def check_private(path: Path, what: str = "sweep directory", *,
                  readable_by_others: bool = True) -> None:
    """Refuse (:class:`UserError`) a path that is a symlink, is not owned by this user, or is
    group/world-writable (or, with ``readable_by_others=False``, readable by them)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UserError(f"{what} {path}: does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise UserError(f"{what} {path}: is a symbolic link; raysweep reads sweep state only "
                        f"from real files and folders (replace the link by what it points to)")
    uid = os.getuid()
    if st.st_uid != uid:
        raise UserError(f"{what} {path}: owned by uid {st.st_uid}, not you (uid {uid}); resume "
                        f"would run code from files someone else wrote; copy the sweep "
                        f"directory if you trust it, then: raysweep resume DIR --trust")
    bad = 0o077 if not readable_by_others else 0o022
    if st.st_mode & bad:
        mode = stat.S_IMODE(st.st_mode)
        fix = (f"chmod 600 {path}" if not readable_by_others
               else f"check its contents, then chmod go-w {path}")
        kind = "readable or writable by others" if not readable_by_others else \
            "group- or world-writable"
        raise UserError(f"{what} {path}: {kind} (mode {mode:04o}); anyone with access could "
                        f"make resume run their code; {fix}")


# -- what is signed ----------------------------------------------------------------------------

def public_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` as written to ``state.json``: the driver's handles (``_``-keys) left out and
    credentials in the MLflow URI and the Ray address redacted."""
    out = {k: v for k, v in state.items() if not str(k).startswith("_")}
    for k in ("tracking_uri", "address"):
        if isinstance(out.get(k), str):
            out[k] = redact_uri(out[k])
    return out


def _signed_view(state: Mapping[str, Any]) -> dict[str, Any]:
    pub = public_state(state)
    return {k: pub.get(k) for k in SIGNED_FIELDS}


def _mac(key: bytes, payload: Mapping[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


def _snapshot_files(tune_dir: Path) -> list[Path]:
    # Tune reads back only the top level of its experiment folder (tuner.pkl, the experiment
    # state, the searcher's and callbacks' state); trial folders hold checkpoints, which are
    # loaded with torch.load(weights_only=True), and logs.
    if not tune_dir.is_dir():
        return []
    return sorted(p for p in tune_dir.iterdir() if p.is_file() and not p.is_symlink()
                  and not p.name.endswith(".tmp"))


def _readable(path: Path) -> bool:
    return check_file(path) is None


def _paths(sweep_dir: Path) -> tuple[Path, Path, Path]:
    trusted = sweep_dir / TRUSTED
    return trusted / "manifest.json", trusted / "blobs", sweep_dir / "ray" / "tune"


def _load_manifest(sweep_dir: Path, key: bytes) -> dict[str, Any] | None:
    """The manifest when its signature checks out with ``key``; ``None`` otherwise."""
    manifest, _, _ = _paths(sweep_dir)
    try:
        doc = json.loads(manifest.read_text())
        payload = {k: v for k, v in doc.items() if k != "mac"}
        if hmac.compare_digest(str(doc.get("mac", "")), _mac(key, payload)):
            return payload
    except (OSError, ValueError, AttributeError):
        pass
    return None


def sign_sweep_dir(sweep_dir: Path, state: Mapping[str, Any] | None = None, *,
                   staging: Path | None = None) -> None:
    """Sign the sweep's resume-relevant files and ``state``'s signed fields (see the module
    docstring). Without ``state`` the previously signed fields are kept. A snapshot file that
    does not parse (Tune is still copying it) keeps its last signed version.

    ``staging`` is Tune's driver-side copy of the experiment folder, which it writes in the
    driver's own thread and then uploads to ``ray/tune/`` in the background: its files are
    signed in preference, so the signature is never older than Tune's newest snapshot (after
    a crash mid-upload, resume puts that newest one back)."""
    sweep_dir = Path(sweep_dir)
    key = ensure_key()
    manifest, blobs, tune_dir = _paths(sweep_dir)
    blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(sweep_dir / TRUSTED, 0o700)
    previous = _load_manifest(sweep_dir, key) or {}
    files: dict[str, str] = {}
    prev_files = previous.get("files", {})
    sources = {p.name: p for p in _snapshot_files(tune_dir)}
    if staging is not None:
        sources.update({p.name: p for p in _snapshot_files(staging)})
    for path in sources.values():
        data = path.read_bytes()
        if path.suffix in (".json", ".pkl") and (not data or not _readable(path)):
            if path.name in prev_files and (blobs / prev_files[path.name]).is_file():
                files[path.name] = prev_files[path.name]
            continue
        digest = hashlib.sha256(data).hexdigest()
        if not (blobs / digest).is_file():
            write_private(blobs / digest, data)
        files[path.name] = digest
    payload = {"version": _VERSION, "sweep": sweep_dir.name, "signed": time.time(),
               "state": _signed_view(state) if state is not None else previous.get("state", {}),
               "files": files}
    write_private(manifest, json.dumps({**payload, "mac": _mac(key, payload)}, indent=1))
    for blob in blobs.iterdir():  # blobs of older snapshots: no longer referenced
        if blob.name not in files.values() and not blob.name.startswith("."):
            blob.unlink(missing_ok=True)


def _read_state_file(sweep_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((sweep_dir / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{sweep_dir / 'state.json'}: unreadable ({exc}); the sweep cannot be "
                        f"resumed; start it again with raysweep run") from None
    if not isinstance(doc, dict):
        raise UserError(f"{sweep_dir / 'state.json'}: not a JSON object; start the sweep again "
                        f"with raysweep run")
    return doc


def _check_tree(sweep_dir: Path) -> None:
    check_private(sweep_dir)
    check_private(sweep_dir / "state.json", "file")
    for sub in (sweep_dir / "ray", sweep_dir / "ray" / "tune", sweep_dir / TRUSTED,
                *_paths(sweep_dir)[:2]):
        if sub.exists() or sub.is_symlink():
            check_private(sub, "file" if sub.is_file() else "folder")


def check_sweep_dir(sweep_dir: Path, *, trust: bool = False) -> list[str]:
    """The read-only part of :func:`verify_sweep_dir`: ownership and modes, the signature and
    ``state.json``'s signed fields. Raises :class:`UserError` (one line); with ``trust`` it
    only refuses foreign or group/world-writable files and returns what it would accept."""
    return _check(Path(sweep_dir), trust)[2]


def _check(sweep_dir: Path, trust: bool) -> tuple[dict[str, Any] | None, dict[str, Any],
                                                   list[str]]:
    sid = sweep_dir.name
    _check_tree(sweep_dir)
    manifest_path = _paths(sweep_dir)[0]
    state = _read_state_file(sweep_dir)
    if not manifest_path.is_file():
        if not trust:
            raise UserError(f"sweep {sid}: {manifest_path} is missing: the directory was not "
                            f"signed by raysweep with your key (an older raysweep, or written by "
                            f"someone else); check who wrote it, then accept it with: raysweep "
                            f"resume {sid} --trust")
        return None, state, [f"--trust: signing sweep {sid} as it is now (it had no signature)"]
    key = ensure_key() if trust else _existing_key(sid)
    signed = _load_manifest(sweep_dir, key)
    notes: list[str] = []
    if signed is None or signed.get("sweep") != sid:
        if not trust:
            raise UserError(f"sweep {sid}: {manifest_path}: the signature does not match (the "
                            f"directory was changed outside raysweep, or signed with another "
                            f"key); check its files, then accept them with: raysweep resume "
                            f"{sid} --trust")
        return None, state, [f"--trust: sweep {sid} had a signature that does not match; "
                             f"re-signing it as it is now"]
    now = _signed_view(state)
    for field in SIGNED_FIELDS:
        before, after = signed.get("state", {}).get(field), now.get(field)
        if field in signed.get("state", {}) and before != after:
            if not trust:
                raise UserError(
                    f"{sweep_dir / 'state.json'}: field {field} is {after!r} but was {before!r} "
                    f"when raysweep last saved this sweep: resume would use another "
                    f"{_LABEL[field]}; restore the value, or accept the change with: raysweep "
                    f"resume {sid} --trust")
            notes.append(f"--trust: state.json {field} changed from {before!r} to {after!r}")
    return signed, state, notes


def verify_sweep_dir(sweep_dir: Path, *, trust: bool = False,
                     say: Any = None) -> list[str]:
    """Check a sweep directory before ``Tuner.restore`` unpickles anything from it.

    Refuses (:class:`UserError`, one line) foreign or group/world-writable files, a missing
    or broken signature and changed ``state.json`` fields; then puts the signed snapshot
    files back into ``ray/tune/``. With ``trust`` the directory is accepted as it is (after
    the ownership checks), the changes are reported, and it is signed with your key.
    Returns the notes printed through ``say`` (default: stderr).
    """
    say = say or info
    sweep_dir = Path(sweep_dir)
    signed, state, notes = _check(sweep_dir, trust)
    if trust:
        sign_sweep_dir(sweep_dir, state)
    else:
        assert signed is not None  # _check raised otherwise
        _, blobs, tune_dir = _paths(sweep_dir)
        notes += _restore_signed_files(sweep_dir, signed.get("files", {}), blobs, tune_dir)
    for n in notes:
        say(n)
    return notes


def _restore_signed_files(sweep_dir: Path, files: Mapping[str, str], blobs: Path,
                          tune_dir: Path) -> list[str]:
    """Make ``ray/tune``'s top level exactly the signed set; unsigned files are moved aside."""
    notes = []
    aside = sweep_dir / f"unverified-{time.strftime('%Y%m%d-%H%M%S')}"
    for name, digest in files.items():
        blob = blobs / digest
        try:
            data = blob.read_bytes()
        except OSError:
            data = b""
        if hashlib.sha256(data).hexdigest() != digest:
            raise UserError(f"sweep {sweep_dir.name}: the signed copy of {name} ({blob}) is "
                            f"missing or changed; check the directory, then accept it with: "
                            f"raysweep resume {sweep_dir.name} --trust")
        target = tune_dir / name
        current = target.read_bytes() if target.is_file() and not target.is_symlink() else None
        if current is not None and current != data:
            # Changed outside raysweep, or rewritten by Tune after the last save point (a
            # crash): never read it; keep it for inspection and resume from the signed copy.
            aside.mkdir(mode=0o700, exist_ok=True)
            target.rename(aside / name)
            notes.append(f"ray/tune/{name} differs from the copy raysweep signed (changed "
                         f"outside raysweep, or written after the last save point): resuming "
                         f"from the signed copy; the other one is in {aside}")
        if target.is_symlink():
            target.unlink()
        if current != data or stat.S_IMODE(os.lstat(target).st_mode) & 0o022:
            write_private(target, data)
    for path in (sorted(tune_dir.iterdir()) if tune_dir.is_dir() else []):
        if path.name in files or (path.is_dir() and not path.is_symlink()):
            continue
        aside.mkdir(mode=0o700, exist_ok=True)
        path.rename(aside / path.name)
        notes.append(f"{path.name}: not signed (written after the last save point, or by "
                     f"someone else); moved to {aside}")
    return notes


def _staging_dir(trials: list) -> Path | None:
    """Tune's driver-side staging copy of the experiment folder, from a trial's storage
    context (``None`` before the first trial, or if Tune's internals change)."""
    try:
        path = Path(trials[0].storage.experiment_driver_staging_path)
    except (IndexError, AttributeError, TypeError):
        return None
    return path if path.is_dir() else None


class SnapshotSigner(Callback):  # module level: Tune pickles it into tuner.pkl
    """Sign Tune's snapshot files whenever they change (checked with ``stat`` every step)."""

    def __init__(self, sweep_dir: str | Path) -> None:
        self.sweep_dir = str(sweep_dir)
        self._seen: tuple[tuple[str, int, int], ...] = ()

    def _maybe_sign(self, trials: list) -> None:
        dirs = [Path(self.sweep_dir) / "ray" / "tune"]
        staging = _staging_dir(trials)
        if staging is not None:
            dirs.append(staging)
        try:
            seen = tuple((str(p), (st := p.stat()).st_size, st.st_mtime_ns)
                         for d in dirs for p in _snapshot_files(d))
            if seen != self._seen:
                sign_sweep_dir(Path(self.sweep_dir), staging=staging)
                self._seen = seen
        except (OSError, UserError):  # a full disk: the previous signature stays valid
            pass

    # Tune saves its snapshot in the step just before on_step_end, in this same thread.
    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._maybe_sign(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._maybe_sign(trials)

    def __getstate__(self) -> dict[str, Any]:
        return {"sweep_dir": self.sweep_dir, "_seen": ()}
