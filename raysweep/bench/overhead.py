"""``raysweep bench overhead``: what the sweep machinery costs, and what Optuna saves.

Two measurements, one JSON report:

1. **Overhead** (one real sweep with default settings): the sweep's wall time against the sum
   of the trials' own compute. A trial's own compute is measured inside the trainable, from
   entry to its last report (model copy, the method, every per-epoch evaluation and checkpoint);
   everything else (Ray scheduling, actor start-up, Optuna, MLflow logging, experiment
   snapshots) is overhead. With ``c`` trials running at once the sweep has ``c`` slots, so

       overhead = wall x c / sum(trial compute) - 1

   (the share of slot time not spent inside trials). Reported for ``Tuner.fit`` alone and
   end to end (also counting Ray start-up, the cached workload load, the reference
   evaluation and the MLflow set-up, which a sweep pays once).

   **Where it goes** (:func:`_instrumented`): the sweep runs with timed twins of its own
   searcher limiter, MLflow and progress callbacks (:mod:`raysweep.sweep.driver_bench`), Tune's
   experiment snapshots timed, and a callback that stamps each trial's start, results and
   end. Slot time outside the trials splits into *start latency* (trial handed out -> the
   trainable's clock starts: actor start or reuse, fetching the workload, restoring nothing),
   *finish latency* (the last report sent -> the trial marked done: its checkpoint persisted
   and the result processed) and *idle slots* (before the first trial, between trials, the
   tail when fewer trials than slots remain). The driver-thread parts (Optuna suggest/tell,
   MLflow writes, progress, snapshots) are what those latencies and gaps wait on.

2. **Sample efficiency**: a full grid over a small discretised space runs as a real sweep;
   then Optuna TPE, with raysweep's default settings for a budget of a quarter of the grid,
   searches the *same* discrete space, replayed against the grid's results (every point TPE
   can suggest is a grid point and the objective is deterministic: ``w_time: 0``, fixed seeds),
   ``repeats`` times with different sampler seeds. The result is how many trials TPE needs to
   reach the grid's best composite score (median, and the share of repeats that reach it
   within a quarter of the grid), with random search as the baseline. This replay is the
   tabular-benchmark technique of Syne Tune's simulator backend.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raysweep.methods import get_method
from raysweep.sweep.space import default_space, grid_points, parse_sweep, resolve_spec
from raysweep.sweep.timeline import TrialTimeline, timeline_callback

__all__ = ["run_benchmark", "breakdown_lines", "measure_overhead", "measure_sample_efficiency",
           "EFFICIENCY_SPACE", "bench_spec", "config_fields"]

#: The grid of the sample-efficiency run: SSD on a small workload, 7 x 8 = 56 points.
EFFICIENCY_SPACE: dict[str, Any] = {
    "selection_weighting": {"values": [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]},
    "dampening_constant": {"distribution": "uniform", "min": 0.25, "max": 2.0, "step": 0.25},
}


def bench_spec(data: dict[str, Any]) -> Any:
    """A sweep spec from a benchmark's sweep mapping, parsed and resolved as ``run`` would."""
    return resolve_spec(parse_sweep(data, "bench"), "bench")


# The stamps' type, under its old name (tests build one to check the breakdown).
_Timeline = TrialTimeline


@contextmanager
def _instrumented() -> Iterator[tuple[Any, _Timeline]]:
    """Run the real sweep with timed twins of its searcher limiter and callbacks (the factory
    functions the runner calls are swapped for the duration, then restored)."""
    import raysweep.sweep.driver_bench as drv
    import raysweep.sweep.runner as runner
    import raysweep.sweep.search as search
    import raysweep.sweep.tracking as tracking

    saved = (search.make_search, tracking.MlflowTrialCallback, runner._make_callbacks)
    make_search = saved[0]

    def timed_search(*args: Any, **kwargs: Any) -> Any:
        limiter = make_search(*args, **kwargs)
        return drv._TimedLimiter(limiter.searcher, max_concurrent=limiter.max_concurrent)

    def timed_callbacks(sweep_dir: Path, total: int, max_failed: int | None,
                        objective_key: str, objective_mode: str) -> list[Any]:
        # The progress callback stays last: the runner uses it as the sweep's stopper.
        return [timeline_callback(line),
                drv._TimedProgress(sweep_dir, total, max_failed, objective_key, objective_mode)]

    clock, line = drv._Clock(), TrialTimeline()
    search.make_search = timed_search
    tracking.MlflowTrialCallback = drv._TimedMlflow  # type: ignore[misc]
    runner._make_callbacks = timed_callbacks
    drv._CLOCK = clock
    try:
        with drv._timed_snapshots():
            yield clock, line
    finally:
        search.make_search, runner._make_callbacks = saved[0], saved[2]
        tracking.MlflowTrialCallback = saved[1]  # type: ignore[misc]  # restoring a patched class
        drv._CLOCK = None


def _breakdown(clock: Any, line: _Timeline, out: Any, conc: int) -> dict[str, Any]:
    """Slot time outside the trials, and the driver's timed parts, in seconds and as a share
    of the trials' own compute."""
    compute = sum(out.trial_seconds)
    slot = out.fit_seconds * conc
    fit_end = out.fit_started + out.fit_seconds
    # When each trial's own clock started (its first report minus the time it says it took).
    entry = {tid: arrived - own for tid, (arrived, own) in line.first.items()}
    first_ones = sorted(entry, key=lambda t: entry[t])[:conc]
    last_ones = sorted(line.end, key=lambda t: line.end[t])[-conc:]
    # Every slot waits from Tuner.fit's start until its first trial computes, and from its
    # last trial's end until Tuner.fit returns.
    startup = sum(max(0.0, entry[t] - out.fit_started) for t in first_ones)
    tail = sum(max(0.0, fit_end - line.end[t]) for t in last_ones)
    start = sum(max(0.0, entry[t] - line.start[t]) for t in entry
                if t in line.start and t not in first_ones)
    finish = sum(max(0.0, line.end[t] - line.last[t]) for t in line.end if t in line.last)
    gaps = max(0.0, slot - compute - startup - tail - start - finish)
    rows: dict[str, float] = {
        "start-up: Tuner.fit start -> the first trials compute (worker processes, imports, "
        "workload fetch)": startup,
        "trial start latency (actor reuse, trial set-up)": start,
        "trial finish latency (last report's checkpoint, result processing)": finish,
        "gaps between one trial's end and the next's start": gaps,
        "tail: slots idle after their last trial": tail}
    driver = {"Optuna suggest + tell": "optuna", "MLflow logging": "mlflow",
              "progress callback": "progress", "Tune experiment snapshots": "snapshot",
              "  of which the searcher's state": "searcher_state"}
    parts = {label: sum(d for _, p, d in clock.events if p == key)
             for label, key in driver.items()}

    def share(x: float) -> float:
        return round(x / compute, 4) if compute else math.nan

    return {
        "slot_seconds": round(slot, 2), "trial_compute_seconds": round(compute, 2),
        "slots": {k: {"seconds": round(v, 2), "share_of_compute": share(v)}
                  for k, v in rows.items()},
        "driver_thread": {k: {"seconds": round(v, 2), "share_of_compute": share(v)}
                          for k, v in parts.items()},
    }


def measure_overhead(workload: str, method: str, trials: int, epochs: int = 2) -> dict[str, Any]:
    """Run one sweep with default settings; compare its wall time with the trials' compute,
    and break the difference down with timing hooks."""
    from raysweep.sweep.runner import run_sweep

    params = {k: v.model_dump(mode="json")
              for k, v in (default_space(method) or {}).items()
              if k != "epochs"}
    spec = bench_spec({
        "name": f"bench-overhead-{method}", "workload": workload,
        "method": method, "parameters": {**params, **({"epochs": {"value": epochs}} if "epochs" in
                                                      config_fields(method) else {})},
        "search": {"algorithm": "random", "num_samples": trials, "start_from_defaults": False},
        "budget": {"max_epochs": epochs}, "tracking": {"experiment": "raysweep-bench"},
    })
    called = time.time()
    with _instrumented() as (clock, line):
        out = run_sweep(spec)
        conc = int(json.loads((out.sweep_dir / "state.json").read_text()).get("max_concurrent", 1))
        breakdown = _breakdown(clock, line, out, conc)
    before_fit = out.fit_started - called
    breakdown["end_to_end"] = {
        "before Tuner.fit (Ray start, workload load, references, MLflow set-up)":
            round(before_fit, 2),
        "after Tuner.fit (results, best checkpoints, MLflow close)":
            round(out.wall_seconds - out.fit_seconds - before_fit, 2)}
    compute = sum(out.trial_seconds)
    method_s = sum(out.method_seconds)
    fit_overhead = out.fit_seconds * conc / compute - 1 if compute else math.nan
    e2e_overhead = out.wall_seconds * conc / compute - 1 if compute else math.nan
    # Steady state: from the first trial's start to the last trial's end (no start-up/shutdown).
    spans = [(r["ended"] - r["trial_seconds"], r["ended"]) for r in out.results
             if r.get("ended") and r.get("trial_seconds")]
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    steady = (last - first) * conc / compute - 1 if compute else math.nan
    return {
        "sweep_id": out.sweep_id, "workload": workload, "method": method, "trials": trials,
        "finished": out.counts.get("finished"), "max_concurrent": conc,
        "fit_wall_seconds": round(out.fit_seconds, 2),
        "end_to_end_seconds": round(out.wall_seconds, 2),
        "sum_trial_compute_seconds": round(compute, 2), "sum_method_seconds": round(method_s, 2),
        "overhead_fit": round(fit_overhead, 4), "overhead_end_to_end": round(e2e_overhead, 4),
        "overhead_seconds_per_trial": round(
            (out.fit_seconds * conc - compute) / max(1, trials), 2),
        "overhead_steady_state": round(steady, 4),
        "startup_seconds": round(first - out.fit_started, 2),
        "shutdown_seconds": round(out.fit_started + out.fit_seconds - last, 2),
        "breakdown": breakdown,
    }


def config_fields(method: str) -> list[str]:
    """The names of the fields of ``method``'s config."""
    return list(get_method(method).config.model_fields)


def _replay(spec: Any, table: dict[tuple, float], target: float, algorithm: str, seed: int,
            budget: int, limit: int) -> int | None:
    """Trials an Optuna sampler needs to reach ``target`` on the tabulated space (None: never)."""
    from raysweep.sweep.search import DefineByRun, new_study

    spec_alg = spec.model_copy(update={"search": spec.search.model_copy(update={
        "algorithm": algorithm, "seed": seed, "num_samples": budget})})
    study = new_study(spec_alg)
    dbr = DefineByRun(spec_alg)
    method = spec.method_names()[0]
    for n in range(1, limit + 1):
        t = study.ask()
        dbr(t)
        key = _key({k.split("/", 1)[1]: v for k, v in t.params.items()}, method)
        value = table[key]
        study.tell(t, value)
        if value <= target + 1e-12:
            return n
    return None


def _key(params: dict[str, Any], method: str) -> tuple:
    return tuple(sorted((k, round(float(v), 9)) for k, v in params.items()))


def measure_sample_efficiency(workload: str, repeats: int) -> dict[str, Any]:
    """A real grid sweep, then TPE (and random search) replayed over its results."""
    from raysweep.sweep.runner import run_sweep
    from raysweep.sweep.search import trial_params

    spec = bench_spec({
        "name": "bench-grid-ssd", "workload": workload, "method": "ssd",
        "parameters": EFFICIENCY_SPACE, "objective": {"w_time": 0.0},
        "search": {"algorithm": "grid"}, "tracking": {"experiment": "raysweep-bench"},
    })
    n_grid = len(grid_points(spec))
    out = run_sweep(spec)
    table: dict[tuple, float] = {}
    for r in out.results:
        if r["error"] or "best/objective" not in r["best"]:
            continue
        method, params = trial_params(r["config"])
        table[_key(params, method)] = float(r["best"]["best/objective"])
    if len(table) < n_grid:
        raise RuntimeError(f"the grid sweep {out.sweep_id} finished {len(table)} "
                           f"of {n_grid} points")
    best = min(table.values())
    n_best = sum(1 for v in table.values() if v <= best + 1e-12)
    budget = max(1, n_grid // 4)
    tpe_spec = spec.model_copy(
        update={"search": spec.search.model_copy(update={"algorithm": "tpe"})})
    runs = {alg: [_replay(tpe_spec, table, best, alg, seed, budget, 4 * n_grid)
                  for seed in range(repeats)] for alg in ("tpe", "random")}

    def summary(xs: list[int | None]) -> dict[str, Any]:
        reached = [x for x in xs if x is not None]
        return {"trials_to_best": xs,
                "median": statistics.median([x if x is not None else math.inf for x in xs]),
                "mean_reached": round(statistics.fmean(reached), 2) if reached else None,
                "within_quarter_grid": round(
                    sum(x is not None and x <= budget for x in xs) / len(xs), 3)}

    tpe, rnd = summary(runs["tpe"]), summary(runs["random"])
    return {
        "sweep_id": out.sweep_id, "workload": workload, "method": "ssd", "space": EFFICIENCY_SPACE,
        "grid_points": n_grid, "grid_best_objective": best, "grid_points_at_best": n_best,
        "grid_wall_seconds": round(out.wall_seconds, 1), "quarter_grid": budget,
        "repeats": repeats, "tpe": tpe, "random": rnd,
        "tpe_median_over_grid": tpe["median"] / n_grid,
        "random_expected_trials": round((n_grid + 1) / (n_best + 1), 2),
    }


def breakdown_lines(b: dict[str, Any]) -> list[str]:
    """The breakdown as a markdown table (seconds and share of the trials' own compute)."""
    lines = [f"where the overhead goes ({b['slot_seconds']:.1f} s of slot time, "
             f"{b['trial_compute_seconds']:.1f} s inside trials):", "",
             "| part | seconds | % of trial compute |", "|---|---|---|"]
    for k, v in b["slots"].items():
        lines.append(f"| {k} | {v['seconds']:.2f} | {100 * v['share_of_compute']:.2f} |")
    lines.append("| *driver thread (what the latencies and gaps wait on):* | | |")
    for k, v in b["driver_thread"].items():
        lines.append(f"| {k} | {v['seconds']:.2f} | {100 * v['share_of_compute']:.2f} |")
    for k, v in b.get("end_to_end", {}).items():
        lines.append(f"| end to end: {k} | {v:.2f} | |")
    return lines


def run_benchmark(*, workload: str = "fmnist-class-small", method: str = "finetune",
                  trials: int = 10, efficiency_workload: str = "digits-class", repeats: int = 20,
                  overhead: bool = True, efficiency: bool = True,
                  out: Path = Path("bench-overhead.json")) -> dict[str, Any]:
    """Both measurements; writes the JSON report to ``out`` and returns it with a summary."""
    report: dict[str, Any] = {"created": time.time(), "host_cpus": os.cpu_count(), "summary": []}
    if overhead:
        o = measure_overhead(workload, method, trials)
        report["overhead"] = o
        report["summary"].append(
            f"overhead: Tuner.fit {o['fit_wall_seconds']:.1f}s wall x "
            f"{o['max_concurrent']} slots vs "
            f"{o['sum_trial_compute_seconds']:.1f}s of trial compute ({o['trials']} trials of "
            f"{method} on {workload}): {100 * o['overhead_fit']:.1f}% overhead "
            f"({o['overhead_seconds_per_trial']:.2f}s per trial; {o['startup_seconds']:.1f}s "
            f"before the first trial starts, {100 * o['overhead_steady_state']:.1f}% between the "
            f"first start and the last end); end to end incl. Ray start-up and the reference "
            f"evaluation {100 * o['overhead_end_to_end']:.1f}%")
        report["summary"] += breakdown_lines(o["breakdown"])
    if efficiency:
        e = measure_sample_efficiency(efficiency_workload, repeats)
        report["sample_efficiency"] = e
        report["summary"].append(
            f"sample efficiency: a {e['grid_points']}-point grid's best composite "
            f"{e['grid_best_objective']:.4f} ({e['grid_points_at_best']} point(s) reach it); TPE "
            f"needs a median of {e['tpe']['median']} trials "
            f"({100 * e['tpe_median_over_grid']:.0f}% "
            f"of the grid; within a quarter of the grid in "
            f"{100 * e['tpe']['within_quarter_grid']:.0f}% "
            f"of {e['repeats']} repeats), random search {e['random']['median']} "
            f"(expected {e['random_expected_trials']})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    return report
