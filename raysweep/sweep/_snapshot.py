"""A validated last-good copy of Ray Tune's snapshot, and the fallback to it on resume.

Tune rewrites its snapshot files in place under ``<sweep>/ray/tune/`` (the experiment state
JSON; the search generator's, the searcher's and the callbacks' pickles; the newest of each
by name is what ``Tuner.restore`` reads). A driver killed or a disk filled mid-copy leaves one
of them empty or torn, and every resume would then fail with a bare ``JSONDecodeError``.

:class:`SnapshotKeeper` (a Tune callback) copies the set to ``<sweep>/ray/last-good/`` whenever
every file of it checks out; :func:`restore_point` runs before ``Tuner.restore`` and puts the
last-good set back when the current one does not (the torn files are moved aside, not deleted).
The pickles are checked by walking their opcodes (:mod:`pickletools`), which executes nothing.
"""

from __future__ import annotations

import json
import os
import pickletools
import re
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any, TypeGuard

from ray.tune import Callback

from raysweep.errors import UserError

__all__ = ["SNAPSHOT_PATTERNS", "LAST_GOOD", "snapshot_problems", "keep_last_good",
           "restore_point", "snapshot_trial_ids", "SnapshotKeeper", "check_file"]

# The files Tune reads back on restore; tuner.pkl is written once, when the sweep starts.
SNAPSHOT_PATTERNS = ("experiment_state-*.json", "search_gen_state-*.json",
                     "searcher-state-*.pkl", "callback-states-*.pkl")
REQUIRED = ("experiment_state-*.json", "tuner.pkl")
LAST_GOOD = "last-good"


def check_file(path: Path) -> str | None:
    """Why ``path`` cannot be read back (``None`` when it can): empty, torn JSON, torn pickle."""
    return _check(path)[0]


def _check(path: Path) -> tuple[str | None, dict[str, Any] | None]:
    """:func:`check_file`, and the parsed document of an experiment state that checks out."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"{path.name} unreadable ({exc.strerror or exc})", None
    if not data:
        return f"{path.name} is empty", None
    # search_gen_state-*.json is a pickle despite its name: the format decides, not the suffix.
    if path.name.startswith("experiment_state-"):
        try:
            doc = json.loads(data)
        except ValueError as exc:
            return f"{path.name} is torn ({exc})", None
        if not (isinstance(doc, dict) and "trial_data" in doc):
            return f"{path.name} has no trial_data", None
        return None, doc
    return _check_pickle(path.name, data), None


def _check_pickle(name: str, data: bytes) -> str | None:
    try:  # walk every opcode (nothing is executed), keep the last
        tail = deque(pickletools.genops(data), maxlen=1)
    except Exception as exc:
        return f"{name} is torn ({type(exc).__name__}: {exc})"
    if not tail or tail[0][0].name != "STOP":
        return f"{name} is torn (no STOP opcode)"
    return None


def _newest(directory: Path) -> dict[str, Path]:
    out = {}
    for pattern in (*SNAPSHOT_PATTERNS, "tuner.pkl"):
        found = sorted(p for p in directory.glob(pattern) if p.is_file())
        if found:
            out[pattern] = found[-1]
    return out


def snapshot_problems(experiment_path: Path) -> list[str]:
    """What makes the snapshot Tune would restore from unusable (empty list: it is usable)."""
    newest = _newest(experiment_path)
    problems = [f"no {p}" for p in REQUIRED if p not in newest]
    problems += [why for p in newest.values() if (why := check_file(p))]
    return problems


def keep_last_good(experiment_path: Path) -> bool:
    """Copy a usable snapshot to ``<sweep>/ray/last-good`` (atomically: a new directory renamed
    over the old); returns whether it was usable. Never fails the sweep."""
    return _keep(Path(experiment_path)) is not None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _keep(experiment_path: Path,
          newest: dict[str, Path] | None = None) -> dict[str, Any] | None:
    """:func:`keep_last_good`; the kept experiment state's parsed document, ``None`` when
    nothing was kept. The copy is what is checked (each file parsed once: the experiment state
    grows with the trial count), and a file rewritten while it was copied spoils the copy.
    ``newest``: the snapshot's files when the caller has listed them already (the directory
    holds every trial's, a scan per pattern)."""
    if newest is None:
        newest = _newest(experiment_path)
    if any(p not in newest for p in REQUIRED):
        return None
    dest = experiment_path.parent / LAST_GOOD
    tmp = experiment_path.parent / f".{LAST_GOOD}-{os.getpid()}"
    old = experiment_path.parent / f".{LAST_GOOD}-old-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        before = {src: _stamp(src) for src in newest.values()}
        for src in newest.values():
            shutil.copy2(src, tmp / src.name)
        doc = None
        problems = [src.name for src in newest.values() if _stamp(src) != before[src]]
        for src in newest.values():
            why, parsed = _check(tmp / src.name)
            if why:
                problems.append(why)
            doc = parsed or doc
        if problems or doc is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
        return doc
    except OSError:  # a full or read-only disk: keep the previous copy, try again later
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not dest.exists():
            old.rename(dest)
        return None


def restore_point(experiment_path: Path, sweep_id: str) -> list[str]:
    """Make the snapshot restorable before ``Tuner.restore``; returns what was repaired.

    A torn set is moved to ``ray/torn-<time>/`` and the last-good set copied in. Without a
    usable last-good copy this raises a :class:`UserError` that says so (the sweep cannot be
    resumed; its finished runs stay in MLflow).
    """
    experiment_path = Path(experiment_path)
    problems = snapshot_problems(experiment_path)
    if not problems:
        return []
    last_good = experiment_path.parent / LAST_GOOD
    if not last_good.is_dir() or snapshot_problems(last_good):
        raise UserError(
            f"sweep {sweep_id} cannot be resumed: Ray Tune's snapshot in {experiment_path} is "
            f"unusable ({'; '.join(problems)}) and there is no last-good copy in {last_good}; "
            f"its finished trials stay in MLflow (raysweep leaderboard --sweep {sweep_id}); "
            f"start it again with raysweep run")
    aside = experiment_path.parent / f"torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    aside.mkdir(parents=True, exist_ok=True)
    for pattern in SNAPSHOT_PATTERNS:
        for p in experiment_path.glob(pattern):
            p.rename(aside / p.name)
    if check_file(experiment_path / "tuner.pkl") and (experiment_path / "tuner.pkl").exists():
        (experiment_path / "tuner.pkl").rename(aside / "tuner.pkl")
    for src in last_good.iterdir():
        if src.is_file() and not (experiment_path / src.name).exists():
            shutil.copy2(src, experiment_path / src.name)
    return problems


def snapshot_trial_ids(experiment_path: Path) -> set[str] | None:
    """Trial ids in the newest experiment snapshot; ``None`` when it cannot be read (then
    nothing may be judged an orphan against it)."""
    states = sorted(Path(experiment_path).glob("experiment_state-*.json"))
    if not states or check_file(states[-1]):
        return None
    data = json.loads(states[-1].read_text())
    ids = set()
    for entry in data.get("trial_data", []):
        blob = entry[0] if isinstance(entry, list) else entry
        try:
            trial = json.loads(blob) if isinstance(blob, str) else blob
        except ValueError:
            return None
        if isinstance(trial, dict) and trial.get("trial_id"):
            ids.add(trial["trial_id"])
    return ids


_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")


def _plain_name(name: object) -> TypeGuard[str]:
    """A single directory name (never a path out of the experiment directory)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name \
        and "\\" not in name


def prune_finished_checkpoints(experiment_path: Path, done: set[str],
                               state: dict[str, Any] | None = None) -> int:
    """Delete all but the newest checkpoint of every trial the newest snapshot says finished.

    The sweep keeps every checkpoint a trial writes (``CheckpointConfig(num_to_keep=None)``),
    because with ``num_to_keep`` set Tune snapshots its whole experiment after every trial
    checkpoint so that the snapshot never names a deleted one, and that snapshot grows with the
    trial count (``raysweep bench driver``). Pruning here, after a snapshot was checked and
    copied to last-good, keeps the same promise: a finished trial's newest checkpoint is the one
    every later snapshot names, and a running trial's checkpoints are never touched. ``done``
    holds the trials already pruned and is updated; ``state``, the parsed snapshot when the
    caller has it (else the newest one is read); returns how many directories were removed.
    """
    if state is None:
        states = sorted(Path(experiment_path).glob("experiment_state-*.json"))
        if not states:
            return 0
        state = _check(states[-1])[1]
        if state is None:
            return 0
    entries = state.get("trial_data", [])
    removed = 0
    for entry in entries:
        blob = entry[0] if isinstance(entry, list) and entry else entry
        try:
            trial = json.loads(blob) if isinstance(blob, str) else blob
        except ValueError:
            continue
        if not isinstance(trial, dict) or trial.get("status") != "TERMINATED":
            continue
        tid, logdir = trial.get("trial_id"), trial.get("relative_logdir")
        if not tid or tid in done or not _plain_name(logdir):
            continue
        trial_dir = Path(experiment_path) / logdir
        try:
            found = sorted(
                (int(m.group(1)), p)
                for p in trial_dir.iterdir()
                if p.is_dir() and (m := _CHECKPOINT_DIR.match(p.name))
            )
        except OSError:
            continue
        for _, old in found[:-1]:
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
        done.add(tid)
    return removed


class SnapshotKeeper(Callback):  # module level: Tune pickles it into tuner.pkl
    """Refresh the last-good copy at most every ``period`` seconds and when the sweep ends,
    then prune the finished trials' older checkpoints (:func:`prune_finished_checkpoints`).

    The copy's cost grows with the snapshot (the trial count): the wait stretches to 19 times
    the last copy's duration, as Tune's own automatic snapshot period does, so the driver
    spends at most about 5 % of its time on it.
    """

    def __init__(self, experiment_path: str | Path, period: float = 5.0) -> None:
        self.experiment_path = str(experiment_path)
        self.period = period
        self._last = 0.0
        self._pruned: set[str] = set()

    def _maybe_keep(self, force: bool = False) -> None:
        now = time.monotonic()
        wait = max(self.period, 19.0 * self.__dict__.get("_took", 0.0))
        if not force and now - self._last < wait:
            return
        self._last = now
        try:
            self._keep_and_prune()
        finally:
            self._took = time.monotonic() - now

    def _keep_and_prune(self) -> None:
        path = Path(self.experiment_path)
        newest = _newest(path)
        # Unchanged since the last copy: nothing to do (the files can be megabytes).
        seen = sorted((p.name, _stamp(p)) for p in newest.values())
        if seen and seen == getattr(self, "_kept", None):
            return
        state = _keep(path, newest)
        if state is not None:
            self._kept = seen
            # Both the snapshot and its last-good copy now name each finished trial's newest
            # checkpoint; the older ones are no longer needed by any restore.
            # (A keeper unpickled from an older sweep's tuner.pkl has no _pruned yet.)
            prune_finished_checkpoints(path, self.__dict__.setdefault("_pruned", set()), state)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._maybe_keep()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._maybe_keep(force=True)
