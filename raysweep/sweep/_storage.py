"""Where a sweep's Optuna study lives: the sweep directory's journal file, or an RDB.

``search.storage`` unset (the default) keeps the study in ``<sweep dir>/optuna.journal``
(Optuna's JournalStorage: one writer, no server, safe for ``optuna-dashboard`` to read). An
SQLAlchemy URL (``sqlite:////abs/path/studies.db``; a relative ``sqlite:///studies.db`` is
made absolute against the directory the sweep starts in; ``postgresql://user@host/db``,
``mysql+pymysql://user@host/db``) puts it in that database through Optuna's RDBStorage, where
several sweeps share one database: each sweep's study is then named ``raysweep-<sweep id>``.

Passwords are refused in the URL: the URL is stored in ``spec.json`` and logged to MLflow.
libpq (``PGPASSWORD``, ``~/.pgpass``) and the MySQL client (``~/.my.cnf``) supply them.

This module imports neither Ray nor torch (the read-only commands use it); SQLAlchemy and
Optuna are imported only when a URL is checked or a study opened.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from raysweep._secrets import redact_uri
from raysweep.errors import ConfigError, UserError

__all__ = ["JOURNAL", "DIALECTS", "check_storage_url", "check_storage_reachable",
           "study_name", "open_storage", "storage_label", "spec_storage", "load_sweep_study"]

JOURNAL = "optuna.journal"
#: SQLAlchemy dialects Optuna's RDBStorage supports, with the driver package each needs.
DIALECTS = {"sqlite": "sqlite3 (part of Python)", "postgresql": "psycopg2-binary",
            "mysql": "pymysql", "mariadb": "pymysql"}
_FIX = ("use an SQLAlchemy URL such as sqlite:////abs/path/optuna.db or "
        "postgresql://user@host/db, or leave search.storage out for the sweep's journal file")


def check_storage_url(url: str) -> str:
    """``url`` if it names a database Optuna's RDBStorage can use (a relative SQLite path made
    absolute), else ``ValueError`` with the fix (the schema's check: syntax only, nothing is
    connected or created)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = url.strip()
    shown = redact_uri(text)  # a refused URL may still carry a password: never echo it
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError):
        raise ValueError(f"{shown!r} is not a database URL; {_FIX}") from None
    dialect = parsed.get_backend_name()
    if dialect not in DIALECTS:
        near = difflib.get_close_matches(dialect, list(DIALECTS), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}://? " if near else ""
        raise ValueError(f"{shown!r}: database {dialect!r} is not one Optuna stores studies in "
                         f"(choose {', '.join(sorted(DIALECTS))}); {hint}{_FIX}")
    if parsed.password is not None:
        raise ValueError(f"{parsed.render_as_string(hide_password=True)!r} carries a password, "
                         f"which would be written to spec.json and MLflow; leave it out of the "
                         f"URL and give it through PGPASSWORD or ~/.pgpass (PostgreSQL) or "
                         f"~/.my.cnf (MySQL)")
    if dialect == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or db.startswith("file::memory:"):
            raise ValueError(f"{url!r} is an in-memory database, which is lost when the driver "
                             f"ends (resume, status and plots read the study); give a file: "
                             f"sqlite:////abs/path/optuna.db")
        if not Path(db).is_absolute():
            # Relative to where the sweep is started (as MLflow's default sqlite:///mlflow.db),
            # stored absolute so that resume and status find it from any directory.
            absolute = parsed.set(database=str(Path(db).expanduser().resolve()))
            return absolute.render_as_string(hide_password=False)
    elif not parsed.host:
        raise ValueError(f"{shown!r} names no host; write {dialect}://user@host/db")
    return text


def check_storage_reachable(url: str | None, *, timeout: float = 5.0) -> None:
    """Before a sweep writes anything: the driver package is installed, and the database
    answers (a server) or its directory is writable (SQLite, not created here)."""
    if url is None:
        return

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    where = "search.storage"
    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError:
        raise ConfigError(f"{where}: {dialect} needs the {DIALECTS[dialect]} package: "
                          f"pip install {DIALECTS[dialect]}") from None
    if dialect == "sqlite":
        folder = Path(parsed.database or "").parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: {url!r}: the directory {str(folder)!r} does not exist "
                              f"or is not writable; create it or choose another path")
        return
    engine = create_engine(url, connect_args={"connect_timeout": max(1, int(timeout))})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:160]
        raise UserError(f"{where}: cannot connect to "
                        f"{parsed.render_as_string(hide_password=True)!r} ({reason}); start the "
                        f"database or fix the URL") from None
    finally:
        engine.dispose()


def study_name(sweep_dir: Path, url: str | None) -> str:
    """The study's name: ``raysweep`` in the sweep's own journal, ``raysweep-<id>`` in a
    database that other sweeps share."""
    return "raysweep" if url is None else f"raysweep-{Path(sweep_dir).name}"


def open_storage(sweep_dir: Path, url: str | None) -> Any:
    """The Optuna storage object of a sweep (the journal file when ``url`` is ``None``)."""
    if url is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(Path(sweep_dir) / JOURNAL)))
    from optuna.storages import RDBStorage

    return RDBStorage(url)


def storage_label(sweep_dir: Path, url: str | None) -> str:
    """What ``status``/``run --json`` print as ``optuna_storage`` (and optuna-dashboard takes)."""
    return str(Path(sweep_dir) / JOURNAL) if url is None else url


def spec_storage(sweep_dir: Path) -> str | None:
    """``search.storage`` of the sweep's ``spec.json`` (read as plain JSON, for the readers
    that load neither pydantic models nor Ray); ``None`` = the journal file."""
    try:
        spec = json.loads((Path(sweep_dir) / "spec.json").read_text())
        url = spec["search"].get("storage")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def load_sweep_study(sweep_dir: Path) -> Any:
    """The sweep's Optuna study, wherever it lives; a :class:`UserError` when there is none
    yet (a sweep killed before Ray Tune started) or its database cannot be read."""
    import optuna

    sweep_dir = Path(sweep_dir)
    url = spec_storage(sweep_dir)
    if url is None and not (sweep_dir / JOURNAL).exists():
        raise UserError(f"sweep {sweep_dir.name} has no Optuna study yet ({sweep_dir / JOURNAL})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(sweep_dir, url)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(sweep_dir, url))
    except KeyError:
        raise UserError(f"sweep {sweep_dir.name} has no Optuna study yet (no study {name!r} "
                        f"in {storage_label(sweep_dir, url)})") from None
    except Exception as exc:
        if url is None:
            raise
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"sweep {sweep_dir.name}: its Optuna study in {redact_uri(url)!r} "
                        f"cannot be read ({reason})") from None
