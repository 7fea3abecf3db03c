"""Read-only queries over finished and running sweeps, without Ray or torch.

``leaderboard``, ``status``, ``sweeps``, ``compare`` and the Python API read sweeps through this
module so they answer in about a second: it reads ``state.json`` / ``progress.json`` /
``spec.json`` as plain JSON and MLflow through its client, and never imports Ray, Optuna or
torch (the runner, which does, writes those files).

Which MLflow store a command reads (one rule for every command):

1. a command about one sweep (``status``, ``leaderboard --sweep``, ``export``, ``compare``,
   ``resume``) reads the store the sweep wrote to, recorded in its ``state.json``;
   when that differs from the environment's (``MLFLOW_TRACKING_URI``, else
   ``sqlite:///./mlflow.db``) it says so on stderr, so a copied project never silently reads the
   old database;
2. every other command (``leaderboard`` over all sweeps, ``show``, ``sweeps``' best values)
   reads the environment's store.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.markup import escape

from raysweep._console import console
from raysweep._quoting import read_tags, tag_equals
from raysweep._secrets import redact_uri, restore_credentials
from raysweep.errors import UserError, did_you_mean
from raysweep.sweep._state import SweepState
from raysweep.sweep._storage import load_sweep_study, spec_storage, storage_label

__all__ = [
    "DEFAULT_URI",
    "tracking_uri",
    "sweeps_home",
    "find_sweep",
    "read_sweep",
    "list_sweeps",
    "pid_alive",
    "store_for",
    "store_note",
    "fetch_runs",
    "sweep_ids_in_store",
    "study_summary",
    "resolve_store",
    "leaderboard_rows",
]

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(uri: str | None = None) -> str:
    """The MLflow store every command uses: ``uri`` (``run --tracking-uri``), else
    ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``; sqlite paths made absolute
    (a relative one would follow each process's working directory)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def sweeps_home() -> Path:
    """Where sweep directories live: ``$RAYSWEEP_HOME/sweeps`` (default ``./.raysweep``)."""
    # Set but empty (``RAYSWEEP_HOME= raysweep ...``) means unset, never the current directory.
    return Path(os.environ.get("RAYSWEEP_HOME") or ".raysweep").resolve() / "sweeps"


def _dirs() -> list[Path]:
    home = sweeps_home()
    if not home.is_dir():
        return []
    return sorted(d for d in home.glob("*") if (d / "state.json").is_file())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_sweep(ref: str) -> Path:
    """A sweep directory from an id, a unique id prefix, ``latest`` or a path; an unknown id is a
    :class:`UserError` that lists the known ones."""
    if not ref or not ref.strip():  # an empty prefix would match every sweep
        raise UserError("sweep id is empty; give an id, a unique prefix of one, 'latest' or a "
                        "sweep directory (raysweep sweeps lists them)")
    p = Path(ref)
    if (p / "state.json").is_file():
        if sweeps_home() not in p.resolve().parents:  # a path elsewhere: yours and private
            from raysweep.sweep._trust import check_private

            check_private(p.resolve())
        return p.resolve()
    dirs = _dirs()
    if ref == "latest":
        if not dirs:
            raise UserError(f"no sweeps under {sweeps_home()} (set RAYSWEEP_HOME to where they "
                            f"are)")
        return _newest(dirs)
    matches = [d for d in dirs if d.name == ref] or [d for d in dirs if d.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"sweep id prefix {ref!r} is ambiguous: "
                        f"{', '.join(d.name for d in matches)}")
    known = ", ".join(d.name for d in sorted(dirs, key=lambda d: d.stat().st_mtime)[-8:]) or "none"
    raise UserError(f"no sweep {ref!r} under {sweeps_home()} (known: {known}; raysweep sweeps "
                    f"lists them; RAYSWEEP_HOME selects another place)")


def _newest(dirs: list[Path]) -> Path:
    """The most recently created sweep; one with an unreadable state.json is skipped with a
    warning, so one corrupt sweep does not hide all the others."""
    created: list[tuple[float, Path]] = []
    for d in dirs:
        try:
            created.append((SweepState.read(d).created or 0.0, d))
        except UserError as exc:
            console.print(f"[yellow]warning:[/] skipping sweep {d.name}: {exc}", markup=True,
                          highlight=False)
    if not created:
        raise UserError(f"no readable sweeps under {sweeps_home()} (set RAYSWEEP_HOME to where "
                        f"they are)")
    return max(created, key=lambda t: t[0])[1]


def read_state(sweep_dir: Path) -> SweepState | None:
    """The sweep's state, or ``None`` when its state.json is unreadable (listings show such a
    sweep as ``unknown``; commands about that one sweep call :meth:`SweepState.read`)."""
    try:
        return SweepState.read(sweep_dir)
    except UserError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a sweep's or a suite's driver)."""
    try:
        os.kill(pid, 0)
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    """One sweep's summary from its files: id, name, state (``crashed`` when its driver is
    gone), workload, methods, trial counts, budget stops, best, dates and its MLflow store."""
    state = read_state(sweep_dir) or SweepState(id=sweep_dir.name)
    spec = _read_json(sweep_dir / "spec.json")
    progress = _read_json(sweep_dir / "progress.json")
    status: str = state.status or "unknown"
    driver_alive = bool(state.pid) and pid_alive(int(state.pid or 0))
    if status in ("running", "preparing") and not driver_alive:
        status = "crashed"
    methods = [spec["method"]] if spec.get("method") else list(spec.get("methods") or {})
    running = int(progress.get("running", 0)) if status == "running" else 0
    counts = state.counts or {}
    return {
        "sweep_id": state.id, "name": state.name,
        "status": status, "workload": state.workload or spec.get("workload"),
        "methods": methods, "description": spec.get("description", ""),
        "algorithm": (spec.get("search") or {}).get("algorithm"),
        "trials": {"total": state.trials,
                   "completed": int(progress.get("completed", counts.get("finished", 0))),
                   "failed": int(progress.get("failed", counts.get("failed", 0))),
                   "running": running,
                   "budget_stopped": int(progress.get("budget_stopped", 0))},
        "best": progress.get("best"),
        "objective": (spec.get("objectives") or [{}])[0].get("metric", "composite"),
        "created": state.created, "updated": state.updated,
        "created_iso": (time.strftime("%Y-%m-%d %H:%M", time.localtime(state.created))
                        if state.created else None),
        "mlflow_tracking_uri": state.tracking_uri, "experiment": state.experiment,
        "mlflow_experiment_id": state.experiment_id,
        "mlflow_parent_run_id": state.parent_run_id, "sweep_dir": str(sweep_dir),
        "message": state.message or "",
    }


def list_sweeps() -> list[dict[str, Any]]:
    """Every sweep under :func:`sweeps_home`, newest first."""
    out = [read_sweep(d) for d in _dirs()]
    return sorted(out, key=lambda s: s.get("created") or 0, reverse=True)


def store_for(sweep_dir: Path) -> tuple[str, str, str]:
    """``(tracking uri, experiment, sweep id)`` of one sweep (rule 1 of the module docstring)."""
    state = read_state(sweep_dir) or SweepState(id=sweep_dir.name)
    # state.json holds the URI with its password redacted; the environment supplies it.
    uri = restore_credentials(state.tracking_uri) if state.tracking_uri else tracking_uri()
    return uri, state.experiment or "raysweep", state.id


def store_note(stored: str | None, sweep_id: str) -> str:
    """The stderr line shown when a sweep's recorded store is not the environment's ('' when
    they are the same)."""
    # Compared and shown without passwords (state.json keeps the URI redacted).
    stored, env = redact_uri(stored), redact_uri(tracking_uri())
    if not stored or stored == env:
        return ""
    return (f"note: sweep {sweep_id} logged to MLflow store {stored}, which is what this command "
            f"reads; MLFLOW_TRACKING_URI here is {env}")


def fetch_runs(uri: str, experiment: str = "raysweep", *, sweep_id: str | None = None,
               kinds: Iterable[str] = ("trial", "reference")) -> list[dict[str, Any]]:
    """Runs of the experiment (optionally one sweep) as plain records (``run_id``, ``status``,
    ``start``, ``tags``, ``params``, ``metrics``), paged through ``search_runs``."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise UserError(f"no MLflow store at {uri}: run a sweep first, or set "
                        f"MLFLOW_TRACKING_URI to the store that has your sweeps")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"MLflow experiment {experiment!r} not found in {uri} (set "
                        f"RAYSWEEP_EXPERIMENT or the sweep's tracking.experiment)")
    flt = tag_equals("raysweep.sweep_id", sweep_id, "sweep id") if sweep_id else ""
    wanted = set(kinds)
    out: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string=flt, max_results=1000,
                                  page_token=token)
        for r in page:
            tags = read_tags(r.data.tags)  # no control characters from a shared store
            if tags.get("raysweep.kind") in wanted:
                out.append({"run_id": r.info.run_id, "status": r.info.status,
                            "start": r.info.start_time, "experiment_id": exp.experiment_id,
                            "tags": tags, "params": dict(r.data.params),
                            "metrics": dict(r.data.metrics)})
        token = page.token
        if not token:
            return out


def sweep_ids_in_store(uri: str, experiment: str) -> list[str]:
    """The sweep ids that have runs in a store (for error messages that list valid choices)."""
    try:
        runs = fetch_runs(uri, experiment)
    except UserError:
        return []
    return sorted({r["tags"].get("raysweep.sweep_id", "") for r in runs} - {""})


def study_summary(sweep_dir: Path) -> dict[str, Any]:
    """Optuna's view of a sweep (configurations by state, the best or the Pareto front); empty
    when the study was not created yet. Reads the journal with Optuna only (no Ray)."""
    path = storage_label(sweep_dir, spec_storage(sweep_dir))  # the journal, or search.storage
    try:
        study = load_sweep_study(sweep_dir)
    except UserError as exc:  # not created yet (a kill during Ray's start-up), DB unreachable
        return {} if "no Optuna study yet" in str(exc) else {"optuna": {"error": str(exc)}}
    except KeyError:  # an empty journal
        return {}
    except ValueError as exc:  # a damaged record: resume repairs a torn tail
        return {"optuna": {"error": f"{path}: unreadable ({exc})"}}
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    out: dict[str, Any] = {"optuna": {"configurations": len(study.trials), "states": states}}
    if not states.get("COMPLETE"):
        return out
    spec = _read_json(sweep_dir / "spec.json")
    objectives = spec.get("objectives") or [{}]
    if len(study.directions) > 1:
        out["pareto"] = [{"number": t.number, "values": t.values, "params": t.params}
                         for t in study.best_trials]
    else:
        bt = study.best_trial
        metric = objectives[0].get("metric", "composite")
        out["best"] = {"number": bt.number, "value": bt.value, "params": bt.params,
                       "metric": "best/objective" if metric == "composite" else f"best/{metric}"}
    return out


def resolve_store(sweep: str | None) -> tuple[str, str, str | None]:
    """(tracking uri, experiment, sweep id) for queries, by the one store rule of this module:
    a sweep's own recorded store (said on stderr when it is not the environment's), else the
    environment's. An unknown sweep is an error listing the known."""
    experiment = os.environ.get("RAYSWEEP_EXPERIMENT", "raysweep")
    if not sweep:
        return tracking_uri(), experiment, None
    try:
        uri, exp, sweep_id = store_for(find_sweep(sweep))
    except UserError as local_error:
        # Not on this machine: a sweep tracked in the environment's store (e.g. run elsewhere).
        uri = tracking_uri()
        known = sweep_ids_in_store(uri, experiment)
        matches = [k for k in known if k == sweep] or [k for k in known if k.startswith(sweep)]
        if len(matches) == 1:
            return uri, experiment, matches[0]
        raise UserError(f"--sweep {sweep!r}: no such sweep here or in MLflow store {uri}"
                        f"{did_you_mean(sweep, known)}; known in that store: "
                        f"{', '.join(known) or 'none'}; raysweep sweeps lists the local ones"
                        ) from local_error
    note = store_note(uri, sweep_id)
    if note:
        console.print(escape(note), soft_wrap=True)
    return uri, exp, sweep_id


def leaderboard_rows(sweep: str | None, **kw: Any) -> tuple[list[dict[str, Any]], str | None]:
    """``(rows, sweep id)``: :func:`raysweep.sweep.leaderboard.leaderboard` (``kw``: its
    filters and sort) over the runs of ``sweep`` (``None``: every sweep in the environment's
    store), found by :func:`resolve_store`."""
    from raysweep.sweep.leaderboard import leaderboard

    uri, experiment, sweep_id = resolve_store(sweep)
    return leaderboard(fetch_runs(uri, experiment, sweep_id=sweep_id), **kw), sweep_id
