"""Exclusive locks: one driver per sweep, one MLflow schema migration per SQLite store.

Both are ``fcntl.flock`` locks on a file: the kernel drops them when the holder exits, however
it exits (SIGKILL included), so a crashed driver never leaves a sweep locked. A pid check
alone is not enough: two ``raysweep resume`` of one sweep both read the state before either
writes its pid, and both run.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from raysweep.errors import UserError

__all__ = ["SweepLock", "LOCK_FILE", "file_lock", "lock_holder"]

LOCK_FILE = ".driver.lock"


def lock_holder(sweep_dir: Path) -> int | None:
    """The pid that holds the sweep's lock, or ``None`` when nobody does (never blocks)."""
    path = Path(sweep_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd) or -1
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class SweepLock:
    """Held by the driver that runs or resumes a sweep, from before its first write to its end.

    >>> with SweepLock(sweep_dir, "a1b2c3d4"):  # doctest: +SKIP
    ...     ...  # a second driver gets a UserError naming this pid
    """

    def __init__(self, sweep_dir: Path, sweep_id: str) -> None:
        self.path = Path(sweep_dir) / LOCK_FILE
        self.sweep_id = sweep_id
        self._fd: int | None = None

    def acquire(self) -> SweepLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"pid {pid}" if pid else "another process"
            raise UserError(
                f"sweep {self.sweep_id} is already being run by {who} (lock {self.path}); wait "
                f"for it to end, or stop it first (kill -INT {pid or 'PID'}), then raysweep "
                f"resume {self.sweep_id}") from None
        # The pid is written after the lock is ours, so a reader never sees a stale writer.
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def file_lock(path: Path, timeout: float = 300.0) -> Iterator[bool]:
    """Block (up to ``timeout`` seconds) for an exclusive lock on ``path``; yields whether it
    was taken. A directory where the lock file cannot be created is not locked (a read-only
    store cannot be migrated by anyone either)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {timeout:g}s for the lock {path}") from None
                time.sleep(delay)
                delay = min(1.0, delay * 2)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
