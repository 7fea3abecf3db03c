"""``raysweep bench driver``: driver seconds per trial as a sweep grows to thousands of trials.

It lives under ``sweep/`` because it drives Ray Tune and Optuna itself (subclasses of Tune's
callbacks and concurrency limiter); :mod:`raysweep.bench.driver` re-exports its entry points.

Every trial is *zero-compute*: it reports its epochs at once (with the keys a real trial
reports: every per-epoch metric of the registry and its ``best/`` copy, the report metrics at
the last epoch; and a tiny checkpoint per epoch, as the real trainable does), so the sweep's
wall time is the driver's own work. The rest is the real path of ``raysweep run``: the
searcher that :func:`raysweep.sweep.search.make_search` builds (OptunaSearch on the sweep's
JournalStorage, the seed replicator, the concurrency limiter), the scheduler of
:func:`~raysweep.sweep.search.make_scheduler`, ``Tuner.fit`` with the runner's settings, the
MLflow child-run callback, the last-good snapshot keeper and the progress callback.

Measured per sampler, with timing hooks around the driver's parts (subclasses of the real
callbacks and of the limiter, so nothing is estimated):

* the time each trial completes; *seconds per trial* at index ``i`` is the gap between the
  ``i-1``-th and ``i``-th completion (what a full cluster of slots waits on the driver);
* per trial: Optuna suggest + tell, MLflow logging, the progress callback; the remainder of
  the wall time is Ray Tune's own bookkeeping (result processing, trial checkpoints, the
  experiment snapshots) and the actors' round trips.

``first`` and ``last`` are the means over the first and the last ``window`` trials (200 at the
default 2,000): growth shows as ``last / first`` well above 1.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback
from ray.tune.execution.experiment_state import _ExperimentCheckpointManager as Manager
from ray.tune.search import ConcurrencyLimiter
from rich.console import Console

import raysweep.sweep.runner as runner
from raysweep._provenance import load_average, machine
from raysweep.metrics.registry import metric_keys, per_epoch_keys
from raysweep.sweep._result import tune_keys, tune_result
from raysweep.sweep._snapshot import SnapshotKeeper
from raysweep.sweep.runner import (
    Progress,
    SweepInterrupted,
    ray_session,
    set_tune_environment,
    trial_checkpoint_config,
)
from raysweep.sweep.search import (
    DefineByRun,
    make_sampler,
    make_scheduler,
    make_search,
    study_directions,
)
from raysweep.sweep.space import default_space, parse_sweep, resolve_spec
from raysweep.sweep.tracking import MlflowTrialCallback, Tracker

__all__ = ["SAMPLERS", "GOAL_SECONDS_PER_TRIAL", "measure_sampler", "run_driver_bench",
           "write_driver_report"]

#: Samplers the benchmark knows (``search.algorithm`` values).
SAMPLERS = ("tpe", "random", "nsga2")
#: The issue's goal for one driver at 2,000 trials.
GOAL_SECONDS_PER_TRIAL = 0.25
#: The searched method: SCRUB's bundled space has six parameters, one of them categorical.
METHOD = "scrub"
#: Timed parts of the driver, in the order of the report's columns: Optuna suggest + tell, the
#: MLflow callback, the progress callback, Tune's experiment snapshots (trial table, searcher
#: and callback states, upload), the last-good copy and checkpoint pruning
#: (:class:`~raysweep.sweep._snapshot.SnapshotKeeper`), and of the snapshots the searcher's
#: state alone.
PARTS = ("optuna", "mlflow", "progress", "snapshot", "keeper", "searcher_state")


class _Clock:
    """Timed events ``(end time, part, seconds)`` and the trials' completion times."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, float]] = []
        self.completed: list[float] = []

    def add(self, part: str, seconds: float) -> None:
        self.events.append((time.perf_counter(), part, seconds))

    def per_trial(self, part: str, start: float, end: float, n: int) -> float:
        """Seconds of ``part`` per trial over the trials completed in ``(start, end]``."""
        total = sum(d for t, p, d in self.events if p == part and start < t <= end)
        return total / n if n else math.nan


# The clock is module state, not an attribute: Tune pickles the callbacks and the searcher into
# its experiment snapshots, and every hook must write to the one clock of this process.
_CLOCK: _Clock | None = None


def _timed(part: str, fn: Callable[[], Any]) -> Any:
    t = time.perf_counter()
    try:
        return fn()
    finally:
        if _CLOCK is not None:
            _CLOCK.add(part, time.perf_counter() - t)


class _TimedLimiter(ConcurrencyLimiter):
    """The sweep's concurrency limiter, timing the Optuna suggest and tell beneath it."""

    def suggest(self, trial_id: str) -> dict | None:
        return _timed("optuna", lambda: super(_TimedLimiter, self).suggest(trial_id))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        _timed("optuna", lambda: super(_TimedLimiter, self).on_trial_complete(
            trial_id, result=result, error=error))


class _TimedMlflow(MlflowTrialCallback):
    """The sweep's MLflow callback (child run per trial, one ``log_batch`` per result), timed."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _timed("mlflow", lambda: super(_TimedMlflow, self).on_trial_start(
            iteration, trials, trial, **info))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        _timed("mlflow", lambda: super(_TimedMlflow, self).on_trial_result(
            iteration, trials, trial, result, **info))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _timed("mlflow", lambda: super(_TimedMlflow, self).on_trial_complete(
            iteration, trials, trial, **info))


class _TimedProgress(Progress):
    """The sweep's progress callback (stderr line, progress.json, failure limit), timed."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _timed("progress", lambda: super(_TimedProgress, self).on_trial_start(
            iteration, trials, trial, **info))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _timed("progress", lambda: super(_TimedProgress, self).on_trial_complete(
            iteration, trials, trial, **info))
        if _CLOCK is not None:  # the last callback: the trial's whole completion is handled
            _CLOCK.completed.append(time.perf_counter())


class _TimedKeeper(SnapshotKeeper):
    """The sweep's last-good snapshot copy and checkpoint pruning, timed."""

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        _timed("keeper", lambda: super(_TimedKeeper, self).on_step_end(iteration, trials, **info))


class _Completions(Callback):
    """Marks when ``Tuner.fit`` hands out its first trial (the clock's zero)."""

    def __init__(self) -> None:
        self.started: float | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.started is None:
            self.started = time.perf_counter()


def zero_compute_trial(config: dict[str, Any], keys: tuple[str, ...] = (),
                       epochs: int = 1, final_keys: tuple[str, ...] = (),
                       numeric: tuple[str, ...] = ()) -> None:
    """A trial without compute: ``epochs`` reports with a small checkpoint, as a real one makes.

    The values are a fixed function of the configuration (a hash in [0, 1)), so a sampler sees
    a deterministic objective and repeated configurations score alike.
    """
    params = json.dumps({k: v for k, v in config.items() if k != "rs"}, sort_keys=True,
                        default=str)
    value = int(hashlib.sha256(params.encode()).hexdigest()[:8], 16) / 16**8
    for epoch in range(1, epochs + 1):
        result = {"epoch": epoch, "best_epoch": epoch, "rs/method_seconds": 0.0,
                  "rs/trial_seconds": 0.0}
        for k in keys:
            result[k] = value
        if epoch == epochs:  # a real trial's last report adds its full evaluation (rs/final)
            result.update(dict.fromkeys(final_keys, value))
        with tempfile.TemporaryDirectory(prefix="rs-ckpt-") as d:
            (Path(d) / "state.json").write_text(json.dumps({"epoch": epoch, "result": result}))
            # As the real trainable hands it to Tune (raysweep.sweep._result).
            tune.report(tune_result(result, numeric),
                        checkpoint=tune.Checkpoint.from_directory(d))


def _resolve(data: dict[str, Any]) -> Any:
    return resolve_spec(parse_sweep(data, "bench"), "bench")


def _spec(sampler: str, trials: int, concurrency: int, seed: int) -> Any:
    # The bundled space, written out: a sweep file naming only the method searches nothing.
    params = {k: v.model_dump(mode="json") for k, v in (default_space(METHOD) or {}).items()}
    objectives = [{"metric": "composite"}]
    if sampler == "nsga2":  # NSGA-II is a Pareto search: give it two objectives
        objectives.append({"metric": "cost/ratio"})
    return _resolve({
        "name": f"bench-driver-{sampler}", "workload": "digits-class", "method": METHOD,
        "parameters": params, "objectives": objectives,
        "search": {"algorithm": sampler, "num_samples": trials, "max_concurrent": concurrency,
                   "seed": seed},
        "resources_per_trial": {"cpu": 1},
        "tracking": {"experiment": "raysweep-bench-driver", "checkpoints": "none"},
    })


@contextmanager
def _timed_snapshots() -> Iterator[None]:
    """Time Tune's experiment snapshots (``sync_up_experiment_state``: it writes the trial
    table, the searcher's and the callbacks' states, and uploads them), and the searcher's
    state within them, while measuring; the classes are restored afterwards."""
    from ray.tune.search.optuna import OptunaSearch

    sync_up, save = Manager.sync_up_experiment_state, OptunaSearch.save

    def timed_sync_up(self: Any, *args: Any, **kwargs: Any) -> None:
        _timed("snapshot", lambda: sync_up(self, *args, **kwargs))

    def timed_save(self: Any, path: str) -> None:  # Tune saves the innermost searcher only
        _timed("searcher_state", lambda: save(self, path))

    Manager.sync_up_experiment_state = timed_sync_up  # type: ignore[method-assign]
    OptunaSearch.save = timed_save  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Manager.sync_up_experiment_state = sync_up  # type: ignore[method-assign]
        OptunaSearch.save = save  # type: ignore[method-assign]


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """The progress callback prints a line per trial; render them to /dev/null (the cost of
    formatting stays in the measurement, thousands of lines leave the terminal)."""
    saved = runner._ERR
    with open(os.devnull, "w") as sink:
        runner._ERR = Console(file=sink, width=160)
        try:
            yield
        finally:
            runner._ERR = saved


def _window_mean(xs: list[float], window: int, last: bool) -> float:
    part = xs[-window:] if last else xs[:window]
    return sum(part) / len(part) if part else math.nan


def measure_sampler(sampler: str, *, trials: int, concurrency: int, epochs: int, seed: int,
                    window: int, tracking_uri: str, workdir: Path,
                    log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """One zero-compute sweep of ``trials`` trials with ``sampler``; timings per trial."""
    global _CLOCK
    spec = _spec(sampler, trials, concurrency, seed)
    sweep_dir = workdir / sampler
    sweep_dir.mkdir(parents=True, exist_ok=False)
    tracker = Tracker(tracking_uri, spec.tracking.experiment, f"driver-{sampler}-{os.getpid()}")
    tags = {"raysweep.workload": spec.workload, "raysweep.sort_key": spec.objectives[0].key}
    parent = tracker.start_parent(name=spec.name or "bench-driver", tags=tags,
                                  params={"algorithm": sampler, "num_samples": trials},
                                  spec_json=spec.model_dump_json())
    metrics, _ = spec.searcher_metrics()
    # A real trial's result: every per-epoch metric and its best/ copy each epoch, the
    # report metrics once at the end. Tune keeps a running analysis of every numeric key in
    # its experiment snapshot, so the key count is what makes the snapshot grow per trial.
    per_epoch = set(metrics) | set(per_epoch_keys()) | {o.key for o in spec.objectives}
    keys = tuple(sorted(per_epoch | {f"best/{k}" for k in per_epoch}))
    final_keys = tuple(sorted({f"best/{k}" for k in metric_keys()} - set(keys)))
    searcher = make_search(spec, sweep_dir / "optuna.journal", concurrency)
    # Same searcher chain, with the outer limiter swapped for its timed twin.
    timed_search = _TimedLimiter(searcher.searcher, max_concurrent=concurrency)
    start = _Completions()
    progress = _TimedProgress(sweep_dir, trials, None, spec.objectives[0].key,
                              spec.objectives[0].mode)
    callbacks = [_TimedMlflow(tracker, parent, tags),
                 _TimedKeeper(sweep_dir / "ray" / "tune"),
                 progress,
                 start]
    trainable = tune.with_resources(
        tune.with_parameters(zero_compute_trial, keys=keys, epochs=epochs,
                             final_keys=final_keys,
                             numeric=tune_keys(o.key for o in spec.objectives)),
        {"cpu": spec.resources_per_trial.cpu})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=timed_search, scheduler=make_scheduler(spec),
                                    num_samples=trials, reuse_actors=True),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(sweep_dir / "ray"), verbose=0, callbacks=callbacks,
            stop=progress, failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=trial_checkpoint_config()),
    )
    _CLOCK = clock = _Clock()
    log(f"driver benchmark: {trials} zero-compute trials with {sampler}, {concurrency} at a time")
    t0 = time.perf_counter()
    try:
        with _quiet_progress(), _timed_snapshots():
            grid = tuner.fit()
    finally:
        _CLOCK = None
    fit = time.perf_counter() - t0
    errors = sum(grid[i].error is not None for i in range(len(grid)))
    if len(clock.completed) + errors < trials:  # Ctrl-C: Tune stops early and returns
        tracker.finish_parent(parent, "KILLED")
        raise SweepInterrupted(f"driver benchmark interrupted during {sampler}")
    tracker.finish_parent(parent, "FINISHED")
    first_start = start.started if start.started is not None else t0
    stamps = [first_start, *clock.completed]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    w = min(window, max(1, len(gaps) // 2))
    first, last = _window_mean(gaps, w, False), _window_mean(gaps, w, True)
    # Each part's seconds per trial inside the same two windows of completions.
    spans = {"first": (first_start, stamps[w]), "last": (stamps[-w - 1], stamps[-1])}
    hooks = {p: {**{k: round(clock.per_trial(p, a, b, w), 5) for k, (a, b) in spans.items()},
                 "total_seconds": round(sum(d for _, q, d in clock.events if q == p), 4)}
             for p in PARTS}
    # searcher_state is a part of snapshot: count it once
    hooked_last = sum(h["last"] for p, h in hooks.items() if p != "searcher_state")
    log(f"  {len(gaps)} trials in {fit:.1f} s: {first:.3f} s/trial (first {w}) -> "
        f"{last:.3f} s/trial (last {w})")
    return {
        "sampler": sampler, "trials": trials, "completed": len(gaps), "errors": errors,
        "concurrency": concurrency, "epochs_per_trial": epochs, "window": w,
        "fit_seconds": round(fit, 2),
        "startup_seconds": round(first_start - t0, 2),
        "seconds_per_trial_first": round(first, 4), "seconds_per_trial_last": round(last, 4),
        "growth_last_over_first": round(last / first, 3) if first > 0 else None,
        "hooks_per_trial": hooks,
        "tune_and_actors_per_trial_last": round(max(0.0, last - hooked_last), 4),
        "seconds_per_trial": [round(g, 5) for g in gaps],
        "meets_goal": bool(last <= GOAL_SECONDS_PER_TRIAL),
    }


def measure_sampler_alone(sampler: str, *, trials: int, window: int,
                          seed: int = 0) -> dict[str, Any]:
    """The sampler by itself (no Ray, no MLflow): ``ask``, the sweep's define-by-run space,
    ``tell``, ``trials`` times on the sweep's sampler; seconds per trial at the start and end.

    Cheap enough to run at the full 2,000 trials where the whole path cannot, and it isolates
    what Optuna's own growth contributes.
    """
    import optuna

    spec = _spec(sampler, trials, 1, seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(spec),
                                directions=study_directions(spec))
    space = DefineByRun(spec)
    took = []
    for _ in range(trials):
        t = time.perf_counter()
        trial = study.ask()
        space(trial)
        key = json.dumps(trial.params, sort_keys=True, default=str).encode()
        value = int(hashlib.sha256(key).hexdigest()[:8], 16) / 16**8
        study.tell(trial, [value] * len(spec.objectives))
        took.append(time.perf_counter() - t)
    w = min(window, max(1, trials // 2))
    first, last = _window_mean(took, w, False), _window_mean(took, w, True)
    return {"trials": trials, "window": w, "seconds_per_trial_first": round(first, 5),
            "seconds_per_trial_last": round(last, 5),
            "growth_last_over_first": round(last / first, 2) if first > 0 else None}


def run_driver_bench(*, samplers: tuple[str, ...] = SAMPLERS, trials: int = 2000,
                     concurrency: int = 2, epochs: int = 1, seed: int = 0, window: int = 200,
                     sampler_trials: int | None = None,
                     tracking_uri: str | None = None, num_cpus: int | None = None,
                     log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Run the zero-compute sweep once per sampler in one local Ray; return the report.

    Everything a sweep writes (Optuna journal, Tune experiment, MLflow store) goes to a
    temporary directory that is removed afterwards, unless ``tracking_uri`` names an MLflow
    store to measure against (its runs are then kept, under experiment
    ``raysweep-bench-driver``).
    """
    set_tune_environment()  # Tune's settings as the runner sets them for a sweep
    work = Path(tempfile.mkdtemp(prefix="raysweep-bench-driver-"))
    uri = tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
    runs = []
    t0 = time.perf_counter()
    load_before = load_average()
    try:
        with ray_session(None, num_cpus or concurrency):
            for s in samplers:
                runs.append(measure_sampler(s, trials=trials, concurrency=concurrency,
                                            epochs=epochs, seed=seed, window=window,
                                            tracking_uri=uri, workdir=work, log=log))
                n = sampler_trials or trials
                log(f"  {s} alone (no Ray, no MLflow): {n} trials")
                runs[-1]["sampler_alone"] = measure_sampler_alone(s, trials=n, window=window,
                                                                  seed=seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "driver", "created": time.strftime("%Y-%m-%d %H:%M"),
        "machine": _machine(), "trials": trials, "concurrency": concurrency,
        "epochs_per_trial": epochs, "method": METHOD,
        "tracking": "private sqlite store (removed)" if tracking_uri is None else tracking_uri,
        "goal_seconds_per_trial": GOAL_SECONDS_PER_TRIAL,
        "wall_seconds": round(time.perf_counter() - t0, 1), "samplers": runs,
        "load_average": [load_before, load_average()],
    }


def _machine() -> str:
    import optuna

    return machine(f"Ray {ray.__version__}", f"Optuna {optuna.__version__}")


def _alone(a: dict[str, Any] | None) -> str:
    if not a:
        return "-"
    return (f"{a['trials']}: {a['seconds_per_trial_first']:.4f} -> "
            f"{a['seconds_per_trial_last']:.4f} (x{a['growth_last_over_first']})")


def _rolling(xs: list[float], k: int) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= k:
            acc -= xs[i - k]
        out.append(acc / min(i + 1, k))
    return out


def write_driver_report(report: dict[str, Any], out: Path, command: str,
                        notes: str = "") -> Path:
    """``out`` (markdown), the plot next to it (``<stem>.png``) and the JSON (``<stem>.json``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in report["samplers"]:
        xs = r["seconds_per_trial"]
        k = max(1, min(50, len(xs) // 10))
        ax.plot(range(1, len(xs) + 1), _rolling(xs, k), label=f"{r['sampler']} (mean of {k})")
    ax.axhline(report["goal_seconds_per_trial"], color="grey", ls="--", lw=1, label="goal")
    ax.set_xlabel("trial (completion order)")
    ax.set_ylabel("driver seconds per trial")
    ax.set_title(f"raysweep bench driver: {report['trials']} zero-compute trials, "
                 f"{report['concurrency']} at a time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    w = report["samplers"][0]["window"] if report["samplers"] else 0
    lines = [
        "# Driver: seconds per trial as a sweep grows",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Produced {report['created']} on {report['machine']}; whole run "
        f"{report['wall_seconds'] / 60:.1f} min; load average (1 min) "
        f"{' -> '.join(str(x) for x in report.get('load_average', []))}. Every trial is "
        f"zero-compute (it reports {report['epochs_per_trial']} epoch(s) with a small "
        f"checkpoint at once, and the metric keys a real trial reports), so the "
        f"wall time is the driver's: the real searcher (`make_search`: Optuna on the "
        f"sweep's JournalStorage, seed replicator, concurrency limiter), `Tuner.fit` with the "
        f"runner's settings, the MLflow child-run callback ({report['tracking']}), the "
        f"last-good snapshot keeper and the progress callback, on a local Ray with "
        f"{report['concurrency']} trial slots. The "
        f"searched space is {report['method']}'s (six parameters, one categorical).",
        "",
        f"Seconds per trial = gap between consecutive trial completions; first/last = mean "
        f"over the first/last {w} trials. Goal: at most {report['goal_seconds_per_trial']} s "
        f"per trial at 2,000 trials. The hook columns are the last {w} trials' mean per trial "
        f"inside each timed part; the rest is Ray Tune's bookkeeping and the actors' round "
        f"trips. *Sampler alone* runs the same sampler, space and objective without Ray and "
        f"MLflow (ask, define-by-run, tell), to as many trials as `--sampler-trials` asks: "
        f"Optuna's own growth, at a size the whole path may not reach on a small machine.",
        "",
        "| sampler | trials | s/trial first | s/trial last | last/first | Optuna | MLflow | "
        "progress | Tune snapshots (searcher state) | last-good copy + pruning | "
        "rest: Tune + actors | goal met | sampler alone: trials, s/trial first -> last |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["samplers"]:
        h = r["hooks_per_trial"]
        lines.append(
            f"| {r['sampler']} | {r['completed']} | {r['seconds_per_trial_first']:.3f} | "
            f"{r['seconds_per_trial_last']:.3f} | {r['growth_last_over_first']} | "
            f"{h['optuna']['last']:.3f} | {h['mlflow']['last']:.3f} | "
            f"{h['progress']['last']:.3f} | {h['snapshot']['last']:.3f} "
            f"({h['searcher_state']['last']:.3f}) | {h.get('keeper', {}).get('last', 0.0):.3f} | "
            f"{r['tune_and_actors_per_trial_last']:.3f} | "
            f"{'yes' if r['meets_goal'] else 'no'} | {_alone(r.get('sampler_alone'))} |")
    lines += ["", f"![seconds per trial against the trial index]({png.name})", ""]
    if notes:
        lines += [notes.strip(), ""]
    out.write_text("\n".join(lines))
    return out
