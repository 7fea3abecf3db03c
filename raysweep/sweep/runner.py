"""Run, resume and inspect sweeps: the driver side of raysweep.

A sweep lives in ``$RAYSWEEP_HOME/sweeps/<id>/`` (``RAYSWEEP_HOME`` defaults to ``./.raysweep``):

=====================  ==========================================================================
``state.json``         id, status, workload key, MLflow URI / experiment / parent run, timings
``spec.json``          the resolved sweep spec (self-contained: bundled spaces filled in)
``references.json``    the original and retrain metrics every trial is compared with
``progress.json``      trial counts and the current best, rewritten as trials finish
``optuna.journal``     the Optuna study (JournalStorage): Pareto sets, plots, optuna-dashboard
``ray/tune/``          Ray Tune's experiment state and trial checkpoints (``Tuner.restore``)
``ray/last-good/``     the newest snapshot of ``ray/tune/`` whose every file parsed (resume's
                       fallback when a kill or a full disk tore the current one)
``.driver.lock``       flock held by the one driver that runs or resumes the sweep (its pid)
=====================  ==========================================================================

:func:`run_sweep` prepares the workload once in the driver, logs the reference runs, starts
Ray (locally bound to 127.0.0.1 with the dashboard off, unless ``--address``/``RAY_ADDRESS``
names a cluster), and runs ``Tuner.fit`` with the trainable of :mod:`raysweep.sweep.trainable`,
the search of :mod:`raysweep.sweep.search` and the callbacks of :mod:`raysweep.sweep.tracking`.
:func:`resume_sweep` restores it with ``Tuner.restore(path, trainable, resume_unfinished=True)``:
finished trials are not re-run, interrupted ones continue from their checkpoints, and MLflow runs
are re-attached. Failed trials stay failed unless ``errored`` asks to resume (from their last
checkpoint: a node lost, an OOM kill) or restart them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from pydantic import ValidationError
from ray import cloudpickle, tune
from ray.tune import Callback, Stopper
from rich.console import Console
from rich.markup import escape

from raysweep._provenance import commit_of, git_sha
from raysweep._secrets import redact_uri, restore_credentials, write_private
from raysweep._signals import sigterm_as_sigint
from raysweep.errors import ConfigError, UserError, format_validation_error
from raysweep.methods._lm import restore_weights
from raysweep.metrics.oracle import terms_for
from raysweep.preflight import check_tracking_store, sweep_preflight
from raysweep.sweep._lock import SweepLock
from raysweep.sweep._result import full_result
from raysweep.sweep._snapshot import (
    LAST_GOOD,
    SnapshotKeeper,
    keep_last_good,
    restore_point,
    snapshot_problems,
    snapshot_trial_ids,
)
from raysweep.sweep._state import SweepState
from raysweep.sweep._storage import check_storage_reachable, load_sweep_study, storage_label
from raysweep.sweep._trust import (
    SnapshotSigner,
    ensure_key,
    public_state,
    sign_sweep_dir,
    verify_sweep_dir,
)
from raysweep.sweep._watch import ClusterLost, ClusterWatch
from raysweep.sweep.catalog import find_sweep, pid_alive, sweeps_home
from raysweep.sweep.leaderboard import leaderboard
from raysweep.sweep.local_ray import init_local_ray
from raysweep.sweep.search import (
    DefineByRun,
    default_points,
    make_scheduler,
    make_search,
    repair_journal,
    trial_params,
)
from raysweep.sweep.space import MAX_CONFIGS, SweepSpec, grid_points, grid_size
from raysweep.sweep.tracking import (
    MlflowTrialCallback,
    StoreUnavailable,
    Tracker,
    error_reason,
    fetch_runs,
    tracking_uri,
)
from raysweep.sweep.trainable import load_best, make_plan, objective_values, unlearning_trial
from raysweep.workload import load_workload_config

__all__ = [
    "check_ray_address",
    "sweeps_home",
    "find_sweep",
    "load_state",
    "run_sweep",
    "resume_sweep",
    "SweepOutcome",
    "sweep_status",
    "load_study",
    "dry_run_plan",
    "SweepFailed",
    "SweepInterrupted",
    "SweepStopped",
    "resume_blocker",
    "set_tune_environment",
    "trial_checkpoint_config",
]


class SweepFailed(RuntimeError):
    """The sweep ran but failed (more failed trials than allowed, or no trial succeeded)."""


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was interrupted (Ctrl-C / SIGTERM); ``raysweep resume`` continues it."""


class SweepStopped(RuntimeError):
    """The driver stopped the sweep because its environment failed for longer than it waits
    (no cluster resources, a locked MLflow store); ``raysweep resume`` continues it."""


def err_console() -> Any:
    """stderr console; wide enough for the leaderboard when stderr is not a terminal."""
    global _ERR
    if _ERR is None:
        _ERR = Console(stderr=True, highlight=False,
                       width=None if sys.stderr.isatty() else 160)
    return _ERR


_ERR: Any = None


def new_sweep_id() -> str:
    return secrets.token_hex(4)


def load_state(sweep_dir: Path) -> SweepState:
    """The sweep's ``state.json``; a truncated, foreign or newer file is one :class:`UserError`
    line (see :meth:`SweepState.read`)."""
    return SweepState.read(sweep_dir)


def _save_state(sweep_dir: Path, state: SweepState) -> None:
    state.updated = time.time()
    # The driver's handles (the tracker) are private attributes, never dumped; credentials
    # are redacted and the file is 0600 (public_state, write_private). Signed for resume.
    data = state.to_json()
    write_private(sweep_dir / "state.json", json.dumps(public_state(data), indent=2, default=str))
    sign_sweep_dir(sweep_dir, data)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"[:1000]


def _cause(exc: BaseException, *types: type[BaseException]) -> BaseException | None:
    """The first exception of ``types`` in ``exc``'s chain (Tune wraps a callback's error)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, types):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _record_failure(sweep_dir: Path, state: SweepState, exc: BaseException) -> None:
    """Say in ``state.json`` and on the MLflow parent run why the driver stopped.

    Before Ray Tune has written its snapshot the sweep cannot be resumed: it is ``failed``, and
    the parent run FAILED with the reason (``raysweep.error``). After that it is
    ``interrupted`` (``raysweep resume`` continues it) and the parent run KILLED. Best effort:
    the store itself may be what failed.
    """
    if state.status in ("finished", "failed", "interrupted") and state.finished:
        return  # _fit recorded the outcome already
    blocker = resume_blocker(sweep_dir) if (sweep_dir / "state.json").exists() else "no state"
    interrupted = blocker is None
    reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else _one_line(exc)
    if interrupted:
        status, mlflow_status = "interrupted", "KILLED"
        message = f"{reason}; continue with: raysweep resume {state.id}"
    else:
        status, mlflow_status = "failed", "FAILED"
        message = f"{reason} (it cannot be resumed: {blocker})"
    if (sweep_dir / "state.json").exists() or state.name:
        state.update(status=status, finished=time.time(), message=message)
        with contextlib.suppress(OSError):
            _save_state(sweep_dir, state)
    tracker, parent = state._tracker, state.parent_run_id
    if tracker is not None and parent:
        with contextlib.suppress(Exception):
            tracker.finish_parent(parent, mlflow_status,
                                  tags={"raysweep.status": status, "raysweep.error": message})


def load_spec(sweep_dir: Path) -> SweepSpec:
    """The sweep's resolved spec; a spec written before the oracle-referenced objective fails
    with one line (its MLflow runs and leaderboard stay readable)."""
    path = sweep_dir / "spec.json"
    try:
        return SweepSpec.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc}); the sweep cannot be "
                        f"resumed or inspected without it") from None
    except ValidationError as exc:
        if exc.errors()[0]["type"] in ("json_invalid", "json_type"):
            raise UserError(f"{path}: corrupt (not JSON); the sweep cannot be resumed or "
                            f"inspected: start it again with raysweep run") from None
        if "belongs to the old objective" in str(exc):
            raise UserError(
                f"sweep {sweep_dir.name} was run with the old objective (w_gap/w_time, selection "
                f"on test) and cannot be resumed or re-scored; its runs stay readable (raysweep "
                f"leaderboard --sweep {sweep_dir.name}, raysweep show RUN_ID); start it again "
                f"with raysweep run and an objective of w_forget/w_heldout/w_mia/w_js/w_probe"
            ) from None
        # Another schema (a newer raysweep, a foreign file): one line, not pydantic's dump.
        raise UserError(
            f"{format_validation_error(exc, str(path))}; this spec was not written by this "
            f"version of raysweep: inspect it with the version that ran it, or "
            f"start the sweep again with raysweep run"
        ) from None


def _storage_label(sweep_dir: Path, spec: SweepSpec) -> str:
    return storage_label(sweep_dir, spec.search.storage)


def load_study(sweep_dir: Path) -> Any:
    """The sweep's Optuna study (its journal file, or the database of ``search.storage``)."""
    return load_sweep_study(sweep_dir)


# -- Ray ---------------------------------------------------------------------------------------

def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """Fail fast (:class:`UserError`) on a Ray address that is malformed or unreachable.

    ``None``/``local``/``auto`` are left to Ray; ``HOST:PORT`` and ``ray://HOST:PORT`` must
    accept a TCP connection. Called before anything is prepared or written to MLflow.
    """
    if not address or address in ("local", "auto"):
        return
    fix = "give HOST:PORT of the head node (ray start --head prints it) or ray://HOST:10001"
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    if "://" in rest:
        raise UserError(f"--address {address!r}: unsupported scheme; {fix}")
    host, sep, port_s = rest.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise UserError(f"--address {address!r}: expected HOST:PORT; {fix}")
    try:
        with socket.create_connection((host, int(port_s)), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(
            f"--address {address!r}: no Ray cluster reachable there "
            f"({exc.strerror or exc}); {fix}, or leave it out for a local Ray"
        ) from None


def set_tune_environment() -> None:
    """Ray Tune's settings for a sweep (``raysweep bench driver`` measures under the same)."""
    # Tune snapshots its experiment (every trial's state and result history: it grows with the
    # trial count) at most every 5 s. The checkpoints do not force extra snapshots, see
    # trial_checkpoint_config; the warning about frequent snapshots is Tune's, not the user's.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune files every checkpoint with its epoch's metrics, and keeps them all in the snapshot
    # (trial_checkpoint_config keeps every checkpoint): store only the paths, the newest
    # result is kept whole anyway (raysweep.sweep._result).
    os.environ.setdefault("TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def trial_checkpoint_config() -> Any:
    """Keep every checkpoint a trial writes; finished trials are pruned to their newest.

    With ``num_to_keep=1`` Tune deletes a trial's previous checkpoint and therefore forces an
    experiment snapshot after every checkpoint, so that no snapshot names a deleted one: at
    1,000 trials that snapshot alone took 0.22-0.24 s per trial (docs/results/driver.md).
    Here Tune deletes nothing; :class:`raysweep.sweep._snapshot.SnapshotKeeper` removes a
    finished trial's older checkpoints once a checked snapshot (and its last-good copy) says the
    trial finished, so a resume still finds every checkpoint a snapshot names.
    """
    return tune.CheckpointConfig(num_to_keep=None)


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Join ``address`` (or ``RAY_ADDRESS``), or start a private local Ray; shut it down after.

    The local Ray comes from :func:`raysweep.sweep.local_ray.init_local_ray`: every process
    bound to 127.0.0.1, no dashboard, token auth. A Ray already initialised in this process
    (tests, notebooks) is used as is and left running. ``RAYSWEEP_NUM_CPUS`` caps a local Ray.
    """
    started = not ray.is_initialized()
    target = address or os.environ.get("RAY_ADDRESS") or None
    if started:
        env_cpus = os.environ.get("RAYSWEEP_NUM_CPUS")
        init_local_ray(num_cpus=num_cpus or (int(env_cpus) if env_cpus else None),
                       address=target, logging_level="WARNING",
                       log_to_driver=bool(os.environ.get("RAYSWEEP_DEBUG")))
    try:
        yield {"resources": ray.cluster_resources(), "started": started,
               "address": target or "local (127.0.0.1)"}
    finally:
        if started:
            ray.shutdown()


# -- callbacks ---------------------------------------------------------------------------------

class Progress(Callback, Stopper):  # module level: Tune pickles it into tuner.pkl
    """One stderr line per finished trial, progress.json, and the failed-trial limit."""

    def __init__(self, sweep_dir: Path, total: int, max_failed: int | None,
                 objective_key: str, objective_mode: str) -> None:
        self.sweep_dir = str(sweep_dir)
        self.total = total
        self.max_failed = max_failed
        self.key, self.mode = objective_key, objective_mode
        self.done: dict[str, str] = {}
        self.best: dict[str, Any] | None = None
        self.running: dict[str, str] = {}
        self.last_beat = time.time()
        self.started = time.time()  # for the ETA of the progress lines (reset on resume)

    # Stopper
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.max_failed is not None and self.failed > self.max_failed

    @property
    def failed(self) -> int:
        return sum(1 for s in self.done.values() if s == "failed")

    def setup(self, stop: Any = None, num_samples: Any = None, total_num_samples: Any = None,
              **info: Any) -> None:
        # Tune passes the trial count it will run, after a restore too: a sweep extended by
        # ``raysweep resume --num-samples +N`` counts up to its new total.
        if isinstance(total_num_samples, int) and total_num_samples > 0:
            self.total = total_num_samples

    def get_state(self) -> dict:
        return {"done": dict(self.done), "best": self.best}

    def set_state(self, state: dict) -> None:
        self.done.update(state.get("done", {}))
        self.best = state.get("best")
        self.started, self.resumed_from = time.time(), len(self.done)

    def _write(self) -> None:
        data = {"total": self.total, "completed": len(self.done) - self.failed,
                "failed": self.failed, "running": len(self.running), "best": self.best,
                "budget_stopped": sum(1 for s in self.done.values() if s == "budget"),
                "updated": time.time(), "pid": os.getpid()}
        path = Path(self.sweep_dir) / "progress.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data, default=str))
            tmp.replace(path)
        except OSError:  # a full or read-only sweep dir must not stop the trials; next time
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _label(self, trial: Any) -> str:
        cfg = trial.config
        seed = cfg.get("seed", 0)
        return f"{cfg.get('method', '?')}" + (f" seed {seed}" if seed else "")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info_: Any) -> None:
        self.running[trial.trial_id] = self._label(trial)
        self._write()

    def on_step_end(self, iteration: int, trials: list, **info_: Any) -> None:
        if self.running and time.time() - self.last_beat > 60:
            self.last_beat = time.time()
            err_console().print(f"[dim]  running: {', '.join(sorted(self.running.values()))}[/]")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info_: Any) -> None:
        self.running.pop(trial.trial_id, None)
        r = trial.last_result or {}
        # A trial the time or cost budget stopped still counts as complete; it is said so here,
        # in status and in the leaderboards, not only in an MLflow tag.
        stopped = bool(r.get("budget/over"))
        self.done[trial.trial_id] = "budget" if stopped else "ok"
        value = r.get(f"best/{self.key}")
        if isinstance(value, (int, float)) and math.isfinite(value):
            better = self.best is None or (value < self.best["value"] if self.mode == "min"
                                           else value > self.best["value"])
            if better:
                self.best = {"value": value, "trial_id": trial.trial_id,
                             "method": trial.config.get("method")}
        n = len(self.done)
        val = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        best = (f"best {self.best['value']:.4f} ({self.best['method']})" if self.best else "")
        secs = r.get("rs/trial_seconds", float("nan"))
        tag = "[yellow]budget[/]" if stopped else "[green]done[/]  "
        err_console().print(f"  \\[{n:>{len(str(self.total))}}/{self.total}] {tag} "
                      f"{escape(self._label(trial)):<16} {self.key} {val}  epochs "
                      f"{int(r.get('epoch', 0))}  {secs:5.1f}s{self._eta(n)}   "
                      f"[dim]{escape(best)}  {escape(self._params(trial))}[/]")
        self._write()

    def _eta(self, n: int) -> str:
        """``  ETA 3m`` from this session's pace ('' until a trial finished in it)."""
        here = n - getattr(self, "resumed_from", 0)
        left = self.total - n
        if here <= 0 or left <= 0:
            return ""
        secs = (time.time() - self.started) / here * left
        return f"  ETA {secs / 60:.0f}m" if secs >= 90 else f"  ETA {secs:.0f}s"

    @staticmethod
    def _params(trial: Any) -> str:
        try:
            params = trial_params(trial.config)[1]
        except Exception:
            return ""
        return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in sorted(params.items()))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info_: Any) -> None:
        self.running.pop(trial.trial_id, None)
        self.done[trial.trial_id] = "failed"
        n = len(self.done)
        err_console().print(f"  [{n:>{len(str(self.total))}}/{self.total}] [red]failed[/] "
                      f"{self._label(trial):<16} {error_reason(trial)}")
        if self.stop_all():
            err_console().print(f"[red]more than {self.max_failed} failed trials "
                          f"(search.max_failed_trials): stopping the sweep[/]")
        self._write()


def _make_callbacks(sweep_dir: Path, total: int, max_failed: int | None,
                    objective_key: str, objective_mode: str) -> list[Any]:
    # The signer first: Progress must stay last (it is also the sweep's Stopper).
    return [SnapshotSigner(sweep_dir),
            Progress(sweep_dir, total, max_failed, objective_key, objective_mode)]


# -- run / resume ------------------------------------------------------------------------------

@dataclass
class SweepOutcome:
    sweep_id: str
    sweep_dir: Path
    status: str                       # finished | failed | interrupted
    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    optuna_storage: str
    counts: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    fit_seconds: float = 0.0
    fit_started: float = 0.0          # time.time() when Tuner.fit began
    trial_seconds: list[float] = field(default_factory=list)
    method_seconds: list[float] = field(default_factory=list)
    message: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)  # per trial: config, best/*

    def to_json(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "status": self.status,
                "mlflow_tracking_uri": redact_uri(self.tracking_uri),
                "mlflow_experiment_id": self.experiment_id,
                "mlflow_parent_run_id": self.parent_run_id,
                "optuna_storage": self.optuna_storage, "sweep_dir": str(self.sweep_dir),
                "counts": self.counts, "wall_seconds": round(self.wall_seconds, 2)}


def _max_concurrent(spec: SweepSpec, resources: dict[str, float]) -> int:
    # A trial that no node can ever hold waits forever, whatever max_concurrent says: check the
    # cluster's totals first.
    r = spec.resources_per_trial
    if r.cpu > resources.get("CPU", 0.0):
        raise ConfigError(f"resources_per_trial.cpu: {r.cpu:g} CPUs per trial, but the Ray "
                          f"cluster has {resources.get('CPU', 0.0):g}; lower it or add nodes")
    if r.gpu > 0 and resources.get("GPU", 0.0) <= 0:
        raise ConfigError("resources_per_trial.gpu > 0 but the Ray cluster has no GPU; set "
                          "resources_per_trial.gpu: 0 or connect to a GPU cluster (--address)")
    if r.gpu > resources.get("GPU", 0.0):
        raise ConfigError(f"resources_per_trial.gpu: {r.gpu:g} GPUs per trial, but the Ray "
                          f"cluster has {resources.get('GPU', 0.0):g}; lower it")
    if spec.search.max_concurrent is not None:
        return spec.search.max_concurrent
    n = int(resources.get("CPU", 1.0) // r.cpu) or 1
    if r.gpu > 0:
        n = min(n, int(resources["GPU"] // r.gpu) or 1)
    return max(1, n)


def _prepare(spec: SweepSpec) -> tuple[Any, Any]:
    from raysweep.workload import prepare

    wcfg = load_workload_config(spec.workload)
    return wcfg, prepare(wcfg)


def _trainable(workload: Any, plan: Any, seeds: list[int]) -> Any:
    # The copy each trial receives carries the oracle's references for the sweep's seeds.
    workload.warm(seeds, plan.selection_val_rows)
    fn = tune.with_parameters(unlearning_trial, workload=workload, plan=plan)
    res = {"cpu": plan.cpus, "gpu": plan.gpus}
    return tune.with_resources(fn, res)


def dry_run_plan(spec: SweepSpec) -> dict[str, Any]:
    """What ``raysweep run`` would do, without starting Ray or writing anything."""
    import optuna

    n = spec.num_configs()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.search.seed))
    dbr = DefineByRun(spec)
    examples = []
    for _ in range(min(3, n)):
        t = study.ask()
        out = dbr(t)
        examples.append(
            {
                "method": out["method"],
                "params": {k.split("/", 1)[1]: v for k, v in t.params.items() if "/" in k},
            }
        )
    metrics, modes = spec.searcher_metrics()
    return {
        "name": spec.name,
        "workload": spec.workload,
        "methods": spec.method_names(),
        "algorithm": spec.search.algorithm,
        "configurations": n,
        "seeds": spec.seeds,
        "trials": n * len(spec.seeds),
        "grid_points": len(grid_points(spec)) if spec.search.algorithm == "grid" else None,
        "objectives": [o.model_dump() for o in spec.objectives],
        "searcher_metrics": dict(zip(metrics, modes)),
        "budget": spec.budget.model_dump(),
        "resources_per_trial": spec.resources_per_trial.model_dump(),
        "max_concurrent": spec.search.max_concurrent or "CPUs / resources_per_trial.cpu",
        "early_terminate": spec.search.early_terminate.model_dump()
        if spec.search.early_terminate
        else None,
        "first_points": (
            default_points(spec, load_workload_config(spec.workload).train.model_dump())
            if spec.search.start_from_defaults and spec.search.algorithm != "grid"
            else []
        ),
        "example_configs": examples,
    }


def check_objective_computable(spec: SweepSpec, refs: dict[str, dict[str, float]],
                               workload_name: str, task: str = "classify") -> None:
    """Every metric the objective reads must exist on this workload (checked on the oracle's
    own metrics, before anything is written): a term that cannot be computed would fail every
    trial."""
    needed: list[str] = []
    for o in spec.objectives:
        needed += (spec.objective.for_task(task).weighted_keys("val")
                   if o.metric == "composite" else [o.metric])
    oracle = refs.get("retrain", {})
    # Cost, time and epochs exist only in trials (the references do not run a method).
    missing = [k for k in needed if k not in oracle
               and not k.startswith(("cost/", "time/", "train/")) and k != "epochs"]
    if missing:
        k = missing[0]
        term = next((t.name for t in terms_for(task) if t.dist_key("val") == k), None)
        fix = (f"set objective.w_{term}: 0" if term else "choose another metric")
        raise ConfigError(f"{spec.name}: objective needs {k!r}, which workload {workload_name} "
                          f"cannot compute (e.g. too few held-out samples matched to the forget "
                          f"set for the attack or the probe); {fix}, or raise the workload's "
                          f"dataset.val_fraction")


def check_original_loses(spec: SweepSpec, refs: dict[str, dict[str, float]],
                         workload_name: str, task: str = "classify") -> None:
    """The untouched original must score worse than the oracle on the composite; otherwise the
    weights (a large ``w_cost``: the original spends nothing) reward not unlearning at all."""
    if not any(o.metric == "composite" for o in spec.objectives):
        return
    objective = spec.objective.for_task(task)
    original = objective.score(refs["original"])
    oracle = objective.score(refs["retrain"])
    if original <= oracle:
        raise ConfigError(
            f"{spec.name}: with these objective weights the untouched original model scores "
            f"{original:.4g} on {workload_name}, no worse than the retrained oracle's "
            f"{oracle:.4g}: the search would reward not unlearning; lower objective.w_cost "
            f"(now {spec.objective.w_cost:g}) or raise the quality weights")


def warn_no_signal(rows: list[dict[str, Any]], objective: Any) -> list[str]:
    """Warn (stderr) about every weighted objective term that does not separate original from
    oracle on this workload: optimising it optimises noise. Returns the terms warned about."""
    weak = [r for r in rows if r["weighted"] and not r["signal"]]
    for r in weak:
        sep = "n/a" if r["separation"] is None else f"{r['separation']:.1f} sigma"
        err_console().print(
            f"[yellow]warning:[/] objective term {r['term']!r} ({r['metric']}) has no signal on "
            f"this workload: original vs oracle separate by {sep} (< 2); it adds noise to the "
            f"objective. Set objective.w_{r['term']}: 0 or use a workload that memorises "
            f"(raysweep workload prepare NAME shows the check)", markup=True, highlight=False)
    return [r["term"] for r in weak]


def parent_run_tags(spec: SweepSpec, state: SweepState) -> dict[str, str]:
    """MLflow's standard tags on the parent run (the UI's source, version and note columns) and
    the sweep's own ``tags:`` (the schema keeps them out of the raysweep./mlflow. prefixes)."""
    out = {"mlflow.source.type": "LOCAL", "mlflow.source.name": "raysweep run"}
    commit = commit_of(state.git_sha)  # MLflow links the bare commit; "+dirty" stays ours
    if commit:
        out["mlflow.source.git.commit"] = commit
    if spec.description:
        out["mlflow.note.content"] = spec.description
    return {**out, **spec.tags}


def run_sweep(
    spec: SweepSpec,
    *,
    address: str | None = None,
    sweep_id: str | None = None,
    num_cpus: int | None = None,
    tracking_uri_override: str | None = None,
) -> SweepOutcome:
    """Run a resolved sweep end to end (see the module docstring)."""
    t0 = time.perf_counter()
    uri = tracking_uri(tracking_uri_override)
    # Bad input is rejected before anything is prepared, started or written to MLflow.
    check_ray_address(address or os.environ.get("RAY_ADDRESS"))
    check_tracking_store(uri)

    check_storage_reachable(spec.search.storage)  # search.storage: driver installed, DB answers

    sweep_preflight(spec, address, uri, num_cpus)
    sweep_id = sweep_id or new_sweep_id()
    err_console().print(
        f"[bold]sweep {sweep_id}[/] ({spec.name}): {', '.join(spec.method_names())} on "
        f"{spec.workload}; {spec.num_configs()} configurations x {len(spec.seeds)} seed(s), "
        f"{spec.search.algorithm}"
    )
    # A missing or corrupt dataset, or a scenario the data cannot satisfy, fails here: no
    # sweep directory, no Ray, no MLflow run.
    wcfg, workload = _prepare(spec)
    refs = workload.reference_metrics(catboost=spec.evaluation.catboost)
    task = getattr(workload, "task", "classify")
    check_objective_computable(spec, refs, wcfg.name, task)
    check_original_loses(spec, refs, wcfg.name, task)
    ensure_key()  # the resume signature's key: a key that cannot be made fails before any write
    sweep_dir = sweeps_home() / sweep_id
    sweep_dir.mkdir(parents=True, exist_ok=False, mode=0o700)  # private: see sweep/_trust.py
    lock = SweepLock(sweep_dir, sweep_id).acquire()  # held until this driver ends
    state = SweepState(id=sweep_id)
    try:
        return _run_locked(spec, sweep_id, sweep_dir, uri, wcfg, workload, refs, state, t0,
                           address=address, num_cpus=num_cpus)
    except BaseException as exc:
        _record_failure(sweep_dir, state, exc)
        raise
    finally:
        lock.release()


def _run_locked(spec: SweepSpec, sweep_id: str, sweep_dir: Path, uri: str, wcfg: Any,
                workload: Any, refs: dict[str, dict[str, float]], state: SweepState,
                t0: float, *, address: str | None, num_cpus: int | None) -> SweepOutcome:
    (sweep_dir / "spec.json").write_text(spec.model_dump_json(indent=2))
    state.update(
        id=sweep_id, name=spec.name, status="preparing", created=time.time(),
        workload=spec.workload, tracking_uri=uri, experiment=spec.tracking.experiment,
        git_sha=git_sha(), pid=os.getpid(), address=address or os.environ.get("RAY_ADDRESS"),
        trials=spec.num_configs() * len(spec.seeds),
    )
    _save_state(sweep_dir, state)
    plan = make_plan(spec, workload, refs)
    ref_objectives = {k: objective_values(v, plan) for k, v in refs.items()}
    signal = workload.signal_check(spec.objective)
    warn_no_signal(signal, spec.objective)
    (sweep_dir / "references.json").write_text(json.dumps(
        {"metrics": refs, "objectives": ref_objectives, "workload_key": workload.key,
         "retrain_seconds": workload.retrain_seconds, "signal": signal,
         "selection_split": "val", "report_split": "test", "seeds": spec.seeds},
        indent=2, default=float))

    tracker = Tracker(uri, spec.tracking.experiment, sweep_id)
    tags = {"raysweep.workload": wcfg.name, "raysweep.workload_ref": spec.workload,
            "raysweep.workload_key": workload.key, "raysweep.git_sha": state.git_sha,
            "raysweep.sort_key": spec.objectives[0].key,
            "raysweep.selection_split": "val", "raysweep.report_split": "test",
            "raysweep.objective": spec.objective.for_task(
                getattr(workload, "task", "classify")).describe(),
            "raysweep.signal_terms": ",".join(r["term"] for r in signal if r["signal"]),
            "raysweep.no_signal_terms": ",".join(r["term"] for r in signal if not r["signal"])}
    state._tracker = tracker  # for _record_failure; never saved
    experiment_id = tracker.ensure_experiment()
    parent = tracker.start_parent(
        name=f"{spec.name}-{sweep_id}",
        tags={
            **tags,
            "raysweep.methods": ",".join(spec.method_names()),
            **parent_run_tags(spec, state),
        },
        params={
            "algorithm": spec.search.algorithm,
            "num_samples": spec.num_configs(),
            "seeds": spec.seeds,
            "methods": spec.method_names(),
            "workload": wcfg.name,
            "objectives": [o.key for o in spec.objectives],
            "max_epochs": spec.budget.max_epochs,
            "max_time_ratio": spec.budget.max_time_ratio,
            "max_seconds": spec.budget.max_seconds,
            "max_cost_ratio": spec.budget.max_cost_ratio,
        },
        spec_json=spec.model_dump_json(indent=2),
    )
    state.parent_run_id = parent
    tracker.log_references(parent, refs, ref_objectives, tags)
    state.update(status="running", experiment_id=experiment_id, parent_run_id=parent,
                 workload_name=wcfg.name, workload_key=workload.key, tags=tags)
    _save_state(sweep_dir, state)
    return _fit(FitContext(spec=spec, sweep_dir=sweep_dir, state=state, workload=workload,
                           plan=plan, tracker=tracker, tags=tags, address=address,
                           num_cpus=num_cpus, t0=t0), restore=None)


def resume_sweep(ref: str, *, address: str | None = None, errored: str = "skip",
                 num_cpus: int | None = None, trust: bool = False,
                 more_samples: int = 0) -> SweepOutcome:
    """Continue an interrupted or crashed sweep (finished trials are not re-run).

    ``more_samples`` > 0 extends the sweep, finished or not, by that many configurations on
    the same Optuna study and Tune experiment (``raysweep resume SWEEP --num-samples +N``):
    the sampler keeps what it learnt, and MLflow's parent run gets the new child runs.
    """
    t0 = time.perf_counter()
    if isinstance(more_samples, bool) or not isinstance(more_samples, int) or more_samples < 0:
        raise ConfigError(f"more_samples: expected a whole number >= 0 of configurations to "
                          f"add, got {more_samples!r}")
    sweep_dir = find_sweep(ref)
    if more_samples:  # a space with nothing more to give is refused before the lock is taken
        extended_spec(load_spec(sweep_dir), more_samples, sweep_dir.name)
    # Two resumes at once would both run every unfinished trial: one driver per sweep.
    with SweepLock(sweep_dir, sweep_dir.name):
        return _resume_locked(sweep_dir, address=address, errored=errored, num_cpus=num_cpus,
                              t0=t0, trust=trust, more_samples=more_samples)


def extended_spec(spec: SweepSpec, more: int, sweep_id: str) -> SweepSpec:
    """``spec`` with ``more`` configurations added to ``search.num_samples``; a space that has
    no more distinct configurations to give is a :class:`UserError` naming what is left."""
    flag = f"--num-samples +{more}"
    if not spec.searchable():
        raise UserError(f"sweep {sweep_id}: {flag}: its space has nothing to search (each "
                        f"method runs its defaults once per seed, and they all ran); give the "
                        f"methods parameters: to search and start it with raysweep run")
    done = spec.num_configs()
    if spec.search.algorithm == "grid":
        left = grid_size(spec) - done
        if more > left:
            raise UserError(f"sweep {sweep_id}: {flag}: its grid has {grid_size(spec)} points "
                            f"and {done} were scheduled; "
                            + (f"use at most +{left}" if left else "none is left to add"))
    if done + more > MAX_CONFIGS:
        raise UserError(f"sweep {sweep_id}: {flag}: {done} + {more} configurations exceed the "
                        f"limit of {MAX_CONFIGS}; use at most +{MAX_CONFIGS - done}")
    search = spec.search.model_copy(update={"num_samples": done + more})
    return spec.model_copy(update={"search": search})


def _extend_tune_state(experiment_path: Path, more_trials: int) -> None:
    """Raise the trial count in Tune's saved search-generator state by ``more_trials``.

    ``Tuner.restore`` takes the number of trials to run from this state, not from the
    TuneConfig, so this is what makes a restored (even finished) experiment ask the searcher
    for more. Call it only after :func:`verify_sweep_dir`: it unpickles the file.
    """
    for path in sorted(experiment_path.glob("search_gen_state-*.json")):
        with open(path, "rb") as f:
            saved = cloudpickle.load(f)
        saved["total_samples"] = int(saved["total_samples"]) + more_trials
        saved["finished"] = False  # a searcher that said FINISHED is asked again
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(cloudpickle.dumps(saved))
        tmp.replace(path)


def _enqueue_grid_points(sweep_dir: Path, spec: SweepSpec, start: int, stop: int) -> None:
    """Grid sweeps enqueue their points: an extension enqueues the next ones in the study."""
    study = load_study(sweep_dir)
    multi = len(spec.spaces()) > 1
    for method, params in grid_points(spec)[start:stop]:
        point: dict[str, Any] = {f"{method}/{k}": v for k, v in params.items()
                                 if spec.spaces()[method][k].distribution != "constant"}
        if multi:
            point["method"] = method
        study.enqueue_trial(point)


def _resume_locked(sweep_dir: Path, *, address: str | None, errored: str,
                   num_cpus: int | None, t0: float, trust: bool = False,
                   more_samples: int = 0) -> SweepOutcome:
    state = load_state(sweep_dir)
    spec = load_spec(sweep_dir)
    if state.status == "finished" and not more_samples:
        raise UserError(f"sweep {state.id} already finished; see raysweep leaderboard "
                        f"--sweep {state.id}, or add configurations with raysweep resume "
                        f"{state.id} --num-samples +N")
    configs_before = spec.num_configs()
    if more_samples:
        spec = extended_spec(spec, more_samples, state.id)
    if not (sweep_dir / "ray" / "tune" / "tuner.pkl").exists() and \
            not (sweep_dir / "ray" / "last-good" / "tuner.pkl").exists():
        raise UserError(f"sweep {state.id} stopped before Ray Tune started (status "
                        f"{state.status}); start it again with raysweep run")
    pid = state.pid
    if pid and pid != os.getpid() and pid_alive(pid) and state.status == "running":
        raise UserError(f"sweep {state.id} is still running (pid {pid}); stop it first")
    check_ray_address(address or state.address or os.environ.get("RAY_ADDRESS"))
    state.tracking_uri = restore_credentials(state.tracked().tracking_uri)  # redacted on disk
    check_tracking_store(state.tracking_uri)

    check_storage_reachable(spec.search.storage)
    experiment_path = sweep_dir / "ray" / "tune"
    # A kill or a full disk may have torn Tune's snapshot or the journal's last record; both
    # are repaired (the damaged bytes kept aside) before anything reads them.
    try:
        torn = restore_point(experiment_path, state.id)
    except UserError:
        torn = []  # no last-good copy: the signed copy put back below may still be usable
    if torn:
        err_console().print(f"[yellow]Ray Tune's snapshot was unusable ({'; '.join(torn)}): "
                            f"resuming from the last good copy[/]")
    # Nothing is unpickled before this: ownership, signature, state.json's MLflow/Ray fields.
    # It runs after the fallback, so what Tune reads is always the signed set.
    verify_sweep_dir(sweep_dir, trust=trust, say=err_console().print)
    unusable = snapshot_problems(experiment_path)
    if unusable:
        raise UserError(
            f"sweep {state.id} cannot be resumed: Ray Tune's snapshot in {experiment_path} is "
            f"unusable ({'; '.join(unusable)}) and no good copy of it was kept; its finished "
            f"trials stay in MLflow (raysweep leaderboard --sweep {state.id}); start it again "
            f"with raysweep run")
    keep_last_good(experiment_path)
    cut = repair_journal(sweep_dir / "optuna.journal")
    if cut:
        err_console().print(f"[yellow]optuna.journal ended in a torn record ({cut} bytes, kept "
                            f"beside it as optuna.journal.torn-*): cut off[/]")
    # Only this driver writes the journal now (the sweep lock): a lock left by a killed one
    # would make the first append wait out Optuna's grace period.
    stale = sweep_dir / "optuna.journal.lock"
    if stale.is_symlink() or stale.exists():
        stale.unlink()
    err_console().print(f"[bold]resuming sweep {state.id}[/] ({spec.name})")
    _wcfg, workload = _prepare(spec)
    if workload.key != state.workload_key:
        raise UserError(f"workload {spec.workload} changed since sweep {state.id} started "
                        f"(cache key {workload.key} != {state.workload_key})")
    refs = json.loads((sweep_dir / "references.json").read_text())["metrics"]
    plan = make_plan(spec, workload, refs)
    where = state.tracked()
    tracker = Tracker(where.tracking_uri, where.experiment, state.id)
    tracker.experiment_id = where.experiment_id
    tracker.client.update_run(where.parent_run_id, status="RUNNING")
    dropped = tracker.drop_orphans(snapshot_trial_ids(experiment_path))
    if dropped:
        err_console().print(f"[dim]dropped MLflow runs of {len(dropped)} trial(s) started after "
                            f"the last snapshot ({', '.join(dropped)}); they run again[/]")
    if more_samples:
        # Everything was checked above; from here the extension is written: the spec's count,
        # the study's next grid points, Tune's trial count, then state.json (which signs it).
        if spec.search.algorithm == "grid":
            _enqueue_grid_points(sweep_dir, spec, configs_before, spec.num_configs())
        _extend_tune_state(experiment_path, more_samples * len(spec.seeds))
        (sweep_dir / "spec.json").write_text(spec.model_dump_json(indent=2))
        state.trials = spec.num_configs() * len(spec.seeds)
        state.extended = [*(state.extended or []), more_samples]
        tracker.client.set_tag(state.parent_run_id, "raysweep.num_samples",
                               str(spec.num_configs()))
        err_console().print(f"extending sweep {state.id} by {more_samples} configuration(s): "
                            f"{configs_before} -> {spec.num_configs()}")
    state.update(status="running", pid=os.getpid(), resumed=(state.resumed or 0) + 1,
                 finished=None)
    _save_state(sweep_dir, state)
    if more_samples:
        keep_last_good(experiment_path)  # the fallback copy carries the new count too
    state._tracker = tracker
    # A sweep started on a cluster resumes there unless told otherwise.
    try:
        return _fit(FitContext(spec=spec, sweep_dir=sweep_dir, state=state, workload=workload,
                               plan=plan, tracker=tracker, tags=state.tags or {},
                               address=address or state.address, num_cpus=num_cpus, t0=t0),
                    restore=errored)
    except BaseException as exc:
        _record_failure(sweep_dir, state, exc)
        raise


def resume_blocker(sweep_dir: Path) -> str | None:
    """Why ``raysweep resume`` would refuse this sweep (``None``: it would not), so that
    ``status`` never suggests a resume that cannot work. Reads files only."""
    try:
        state = load_state(sweep_dir)
    except (OSError, ValueError):
        return f"its state.json ({sweep_dir / 'state.json'}) is unreadable"
    sid = state.id
    if state.status == "finished":
        return f"sweep {sid} already finished"
    tune_dir = sweep_dir / "ray" / "tune"
    if (
        not (tune_dir / "tuner.pkl").exists()
        and not (sweep_dir / "ray" / LAST_GOOD / "tuner.pkl").exists()
    ):
        return (f"sweep {sid} stopped before Ray Tune started (status {state.status}); "
                f"start it again with raysweep run")
    problems = snapshot_problems(tune_dir)
    if problems and snapshot_problems(sweep_dir / "ray" / LAST_GOOD):
        return (f"sweep {sid}: Ray Tune's snapshot is unusable ({'; '.join(problems)}) and there "
                f"is no last-good copy; start it again with raysweep run")
    return None


def _close_stale_study_trials(sweep_dir: Path) -> int:
    """Optuna trials left RUNNING by a crash (asked after the last snapshot) -> FAIL."""
    import optuna

    try:
        study = load_study(sweep_dir)
    except UserError:
        return 0
    stale = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for t in stale:
        with contextlib.suppress(Exception):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(stale)


class _QuietTrialErrors(logging.Filter):
    """Drop Tune's traceback per failed trial: the progress line and MLflow carry the reason,
    the full trace stays in the trial's error.txt (``RAYSWEEP_DEBUG=1`` shows it again)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith("Saving experiment state to storage"):
            # A known benign race: an asynchronous upload of Tune's staging directory lists a
            # searcher's temporary file that is renamed before it is copied; the next snapshot
            # (seconds later) uploads the renamed file. Real failures still show.
            exc = record.exc_info[1] if record.exc_info else None
            return not (isinstance(exc, FileNotFoundError) and "-tmp-" in str(exc))
        # Ray's own "Resume experiment with: Tuner.restore(...)" hint is not a command a
        # raysweep user can run; the raysweep resume SWEEP hint printed after it is.
        return not msg.startswith(("Trial task failed", "Trials did not complete",
                                   "Experiment has been interrupted",
                                   "Training has been interrupted"))


@dataclass
class FitContext:
    """What :func:`_fit` runs: everything a new run and a resume have prepared before Tune."""

    spec: SweepSpec
    sweep_dir: Path
    state: SweepState
    workload: Any                   # raysweep.workload.PreparedWorkload
    plan: Any                       # raysweep.sweep.trainable.TrialPlan
    tracker: Any                    # raysweep.sweep.tracking.Tracker
    tags: dict[str, str]            # every trial's MLflow tags
    address: str | None             # Ray cluster (None: RAY_ADDRESS or a private local Ray)
    num_cpus: int | None            # CPU cap of a local Ray
    t0: float                       # time.perf_counter() when the command started


def _fit(ctx: FitContext, *, restore: str | None) -> SweepOutcome:
    """Run (``restore=None``) or restore (``skip``/``resume``/``restart`` errored trials) the
    Tune experiment, then record the outcome in state.json and on the MLflow parent run."""
    spec, sweep_dir, state, workload, plan, tracker, tags = (
        ctx.spec, ctx.sweep_dir, ctx.state, ctx.workload, ctx.plan, ctx.tracker, ctx.tags)
    address, num_cpus, t0 = ctx.address, ctx.num_cpus, ctx.t0

    if not os.environ.get("RAYSWEEP_DEBUG"):
        for name in ("ray.tune.execution.tune_controller", "ray.tune.tune",
                     "ray.tune.execution.experiment_state"):
            logging.getLogger(name).addFilter(_QuietTrialErrors())
    set_tune_environment()
    n_trials = spec.num_configs() * len(spec.seeds)
    outcome_status = "finished"
    message = ""
    fit_seconds = 0.0
    fit_started = time.time()
    trials: list[Any] = []
    # Method errors recorded here are not retried (see raysweep.sweep.trainable); asking to
    # resume or restart errored trials clears them.
    failure_dir = sweep_dir / "failures"
    if restore in ("resume", "restart"):
        shutil.rmtree(failure_dir, ignore_errors=True)
    plan.extra["failure_dir"] = str(failure_dir)
    with ray_session(address, num_cpus) as session, sigterm_as_sigint():
        trainable = _trainable(workload, plan, list(spec.seeds))
        experiment_path = sweep_dir / "ray" / "tune"
        if restore is None:
            max_conc = _max_concurrent(spec, session["resources"])
            state.max_concurrent = max_conc
            _save_state(sweep_dir, state)
            key, mode = spec.objectives[0].key, spec.objectives[0].mode
            callbacks = [MlflowTrialCallback(tracker, state.tracked().parent_run_id, tags,
                                             log_checkpoints=spec.tracking.checkpoints == "all",
                                             fresh=restore is None),
                         SnapshotKeeper(experiment_path),
                         ClusterWatch(spec.resources_per_trial.cpu, spec.resources_per_trial.gpu),
                         *_make_callbacks(sweep_dir, n_trials, spec.search.max_failed_trials,
                                          key, mode)]
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=make_search(spec, sweep_dir / "optuna.journal", max_conc,
                                           recipe=workload.config.train.model_dump()),
                    scheduler=make_scheduler(spec), num_samples=n_trials, reuse_actors=True),
                run_config=tune.RunConfig(
                    name="tune", storage_path=str(sweep_dir / "ray"), verbose=0,
                    callbacks=callbacks, stop=callbacks[-1],
                    failure_config=tune.FailureConfig(max_failures=spec.search.trial_retries),
                    checkpoint_config=trial_checkpoint_config()),
            )
        else:
            tuner = tune.Tuner.restore(str(experiment_path), trainable=trainable,
                                       resume_unfinished=True,
                                       resume_errored=restore == "resume",
                                       restart_errored=restore == "restart")
        gpus = session["resources"].get("GPU")
        err_console().print(
            f"Ray: {session['address']}, {session['resources'].get('CPU', 0):g} CPUs"
            f"{f', {gpus:g} GPUs' if gpus else ''}; trials write to {sweep_dir}"
        )
        t_fit = time.perf_counter()
        fit_started = time.time()
        try:
            grid = tuner.fit()
        except Exception as exc:
            # The environment failed past what the driver waits for (no node, a store locked
            # for minutes): Tune's snapshot and the trials' checkpoints are intact, so say
            # what happened in one line and how to continue.
            env = _cause(exc, ClusterLost, StoreUnavailable)
            if env is None:
                raise
            keep_last_good(experiment_path)
            message = (f"{env}; once fixed, continue with: raysweep resume {state.id}")
            state.update(status="interrupted", finished=time.time(), message=message)
            _save_state(sweep_dir, state)
            with contextlib.suppress(Exception):
                tracker.finish_parent(state.parent_run_id, "KILLED",
                                      tags={"raysweep.status": "interrupted",
                                            "raysweep.error": message})
            raise SweepStopped(f"sweep {state.id} stopped: {message}") from None
        finally:
            fit_seconds = time.perf_counter() - t_fit
        keep_last_good(experiment_path)
        trials = [grid[i] for i in range(len(grid))]  # ResultGrid has no __iter__ in its stubs
        # Count from the progress callback: its state survives restores, and Tune marks the
        # trials it stops on Ctrl-C TERMINATED in memory although they did not finish.
        progress = _read_progress(sweep_dir)
        terminated = int(progress.get("completed", grid.num_terminated))
        errors = int(progress.get("failed", grid.num_errors))
        max_failed = spec.search.max_failed_trials
        if max_failed is not None and errors > max_failed:
            outcome_status = "failed"
            message = f"{errors} trials failed, more than search.max_failed_trials={max_failed}"
        elif terminated + errors < n_trials:
            outcome_status = "interrupted"
            message = (f"interrupted with {n_trials - terminated - errors} of {n_trials} trials "
                       f"unfinished")
        elif terminated == 0:
            outcome_status = "failed"
            message = f"no trial finished ({errors} failed); see raysweep status {state.id}"
    if outcome_status != "interrupted":
        _close_stale_study_trials(sweep_dir)
    counts = {"trials": n_trials, "finished": terminated, "failed": errors,
              "unfinished": n_trials - terminated - errors}
    # The best checkpoint of each method's best configuration, as artifacts of its runs.
    # With "all" every checkpoint is logged already; the best still gets its MLflow model.
    if spec.tracking.checkpoints in ("best", "all") and outcome_status != "interrupted":
        _log_best_checkpoints(spec, tracker, state, trials, workload)
    mlflow_status = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}[
        outcome_status
    ]
    best = _read_progress(sweep_dir).get("best") or {}
    tracker.finish_parent(
        state.parent_run_id,
        mlflow_status,
        metrics={
            "trials_finished": counts["finished"],
            "trials_failed": counts["failed"],
            f"best/{spec.objectives[0].key}": best.get("value", float("nan")),
        },
        tags={"raysweep.status": outcome_status},
    )
    state.update(status=outcome_status, finished=time.time(), counts=counts, message=message)
    _save_state(sweep_dir, state)
    results = [full_result(r.metrics) for r in trials]
    trial_secs = [float(m.get("rs/trial_seconds", 0.0)) for m in results if m]
    method_secs = [float(m.get("rs/method_seconds", 0.0)) for m in results if m]
    return SweepOutcome(
        sweep_id=state.id, sweep_dir=sweep_dir, status=outcome_status,
        **state.tracked()._asdict(),
        optuna_storage=_storage_label(sweep_dir, spec), counts=counts,
        wall_seconds=time.perf_counter() - t0, fit_seconds=fit_seconds, fit_started=fit_started,
        trial_seconds=trial_secs, method_seconds=method_secs, message=message,
        results=[{"trial_id": m.get("trial_id"), "config": r.config,
                  "error": r.error is not None, "ended": m.get("timestamp"),
                  "trial_seconds": m.get("rs/trial_seconds"),
                  "best": {k: v for k, v in m.items() if k.startswith("best/")}}
                 for r, m in zip(trials, results)])


def _read_progress(sweep_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((sweep_dir / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


def _log_best_checkpoints(spec: SweepSpec, tracker: Any, state: SweepState,
                          results: list[Any], workload: Any = None) -> None:
    by_trial = {}
    for r in results:
        tid = (r.metrics or {}).get("trial_id")
        if tid and r.checkpoint is not None:
            by_trial[tid] = r.checkpoint.path
    try:
        where = state.tracked()
        runs = fetch_runs(where.tracking_uri, where.experiment, sweep_id=state.id)
        if spec.multi_objective:
            rows = leaderboard(runs, pareto=[f"{o.key}:{o.mode}" for o in spec.objectives])
        else:
            rows = leaderboard(runs)
    except UserError:
        return
    run_trial = {r["run_id"]: r["tags"].get("raysweep.trial_id") for r in runs}
    # A run still best after `resume --num-samples +N` has its model already: log it once.
    has_model = {r["run_id"] for r in runs if r["tags"].get("raysweep.model")}
    for row in rows:
        if row["kind"] != "trial":
            continue
        for run_id in row["run_ids"]:
            path = by_trial.get(run_trial.get(run_id))
            if path and Path(path).exists():
                try:
                    if spec.tracking.checkpoints == "best":
                        tracker.log_checkpoint(run_id, path)
                    if workload is not None and run_id not in has_model:
                        _log_best_model(tracker, run_id, path, workload)
                except Exception as exc:
                    err_console().print(
                        f"[yellow]could not log the checkpoint of run {run_id}: {exc}[/]"
                    )


def _log_best_model(tracker: Any, run_id: str, checkpoint_dir: str, workload: Any) -> None:
    """The checkpoint's weights as an MLflow model (``runs:/<run>/model``: Model Registry,
    ``mlflow models``), with a few test rows as its input example."""
    model = restore_weights(workload.build_model("original"), load_best(checkpoint_dir))
    x = workload.splits["test"].tensors[0][:4]
    tracker.log_model(run_id, model.eval().cpu(), x)


def sweep_status(ref: str) -> dict[str, Any]:
    """State, trial counts (Optuna and Tune) and the current best of a sweep."""
    sweep_dir = find_sweep(ref)
    state = load_state(sweep_dir)
    spec = load_spec(sweep_dir)
    progress = _read_progress(sweep_dir)
    out: dict[str, Any] = {
        "sweep_id": state.id, "name": state.name, "status": state.status,
        "workload": state.workload, "methods": spec.method_names(),
        "algorithm": spec.search.algorithm, "sweep_dir": str(sweep_dir),
        "mlflow_tracking_uri": state.tracking_uri,
        "mlflow_experiment_id": state.experiment_id,
        "mlflow_parent_run_id": state.parent_run_id,
        "optuna_storage": _storage_label(sweep_dir, spec),
        "trials": {"total": state.trials, "completed": progress.get("completed", 0),
                   "failed": progress.get("failed", 0),
                   # progress.json keeps the count of the moment it stopped; only a running
                   # sweep has running trials (raysweep status reads raysweep.sweep.catalog)
                   "running": progress.get("running", 0) if state.status == "running" else 0,
                   "budget_stopped": progress.get("budget_stopped", 0)},
        "message": state.message or "",
    }
    if state.status in ("running", "preparing") and state.pid \
            and not pid_alive(int(state.pid)):
        out["status"] = "crashed"
        out["message"] = f"the driver (pid {state.pid}) is gone: raysweep resume {state.id}"
    try:
        study = load_study(sweep_dir)
    except UserError:
        return out
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    out["optuna"] = {"configurations": len(study.trials), "states": states}
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if complete:
        if spec.multi_objective:
            out["pareto"] = [{"number": t.number, "values": t.values, "params": t.params}
                             for t in study.best_trials]
        else:
            bt = study.best_trial
            out["best"] = {"number": bt.number, "value": bt.value, "params": bt.params,
                           "metric": spec.searcher_metrics()[0][0]}
    return out
