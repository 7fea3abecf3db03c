"""``config: tuned``: find a config with a small sweep, then run it on the entry's seeds.

The sweep is the project's own (:func:`raysweep.sweep.runner.run_sweep`): the entry's workload
and method, the method's ranges (``tune.parameters`` or the bundled
``search_spaces/<method>.yaml``), ``tune.num_samples`` configurations, the sweep's objective
(``tune.objective`` / ``tune.objectives`` / ``tune.budget`` pass through), on the tuning seeds
``tune.seeds`` (default ``[1000]``; never an evaluation seed, see :mod:`raysweep.bench.suite`).
The best trial is the one with the best value of the sweep's selection objective, read on the
``val`` split (``objective``, or a ``*/val`` metric): never ``objective/test`` nor any metric
computed on test, which only the reports read. Its parent run lands in
the MLflow experiment ``raysweep-bench/<suite>/tuning`` and its files under
``$RAYSWEEP_HOME/sweeps/<id>``. The best trial's parameters, on top of the method's defaults,
become the entry's config; the suite's child runs record them as ``config.*`` params and the
sweep id as the ``raysweep.tuned_sweep`` tag.

With ``tune.cache: true`` the result is kept under ``$RAYSWEEP_CACHE/bench-tuned/`` keyed by the
workload's cache key, the method and the tune spec, and reused by later suite runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from raysweep._console import info
from raysweep.errors import ConfigError, UserError
from raysweep.sweep.space import active, parse_sweep, reads_test, resolve_spec
from raysweep.workload import cache_root

if TYPE_CHECKING:
    from raysweep.bench.suite import Entry, TuneSpec
    from raysweep.sweep.space import SweepSpec
    from raysweep.workload import PreparedWorkload

__all__ = ["sweep_spec", "tune_entry", "cached_tuning", "selection_key"]


def _reads_test(key: str) -> bool:
    """Whether a result key is computed on the test split (reporting only, never selection)."""
    base = key[len("best/"):] if key.startswith("best/") else key
    if base == "objective/test" or base.endswith("/test") or base.startswith("test/"):
        return True
    return reads_test(base)


def selection_key(spec: SweepSpec, *, where: str) -> str:
    """The result key the tuning sweep's best trial is chosen on; a val key, never a test one."""
    keys, _ = spec.searcher_metrics()
    key = keys[0]
    if _reads_test(key):
        raise ConfigError(f"{where}.objectives: the tuned config would be chosen on {key!r}, "
                          f"which reads the test split; tuning selects on val: use metric: "
                          f"composite (the sweep's objective) or a metric ending in /val")
    return key


def sweep_spec(suite: str, entry_id: str, workload_ref: str, method: str, tune: TuneSpec,
               *, where: str) -> SweepSpec:
    """The resolved sweep spec that tunes one entry (validated; imports neither Ray nor Optuna)."""
    space: dict[str, Any] | None = None
    if tune.parameters is not None:
        space = {"parameters": tune.parameters}
    data: dict[str, Any] = {
        "name": "bench-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", entry_id).strip("-"),
        "description": f"tuning {entry_id} for regression suite {suite}",
        "workload": workload_ref,
        "methods": {method: space},
        "search": {"algorithm": tune.algorithm, "num_samples": tune.num_samples, "seed": tune.seed,
                   **({"max_concurrent": tune.max_concurrent} if tune.max_concurrent else {})},
        "seeds": list(tune.seeds),
        "tracking": {"experiment": f"raysweep-bench/{suite}/tuning", "checkpoints": "none"},
    }
    for key in ("objective", "objectives", "budget"):
        value = getattr(tune, key)
        if value is not None:
            data[key] = value
    spec = resolve_spec(parse_sweep(data, where), where)
    if spec.multi_objective:
        raise ConfigError(f"{where}.objectives: a tuned entry needs one objective (the best trial "
                          f"is run); got {[o.key for o in spec.objectives]}")
    selection_key(spec, where=where)
    return spec


def _cache_path(entry: Entry, prepared: PreparedWorkload) -> Any:
    blob = json.dumps({"workload": prepared.key, "method": entry.method,
                       "tune": entry.tune.model_dump(mode="json") if entry.tune else None},
                      sort_keys=True)
    return cache_root() / "bench-tuned" / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"


def _best_epoch(results: list[dict[str, Any]], optuna_trial: int) -> int | None:
    """The epoch a sweep scored the Optuna trial at (trials are scored at their best epoch), so
    that the suite stops the tuned config there too; the latest one over the trial's seeds."""
    epochs = [int(r["best"]["best/epochs"]) for r in results
              if not r.get("error") and "best/epochs" in r.get("best", {})
              and ((r.get("config") or {}).get("rs") or {}).get("optuna_trial") == optuna_trial]
    return max(epochs) if epochs else None


def cached_tuning(entry: Entry, prepared: PreparedWorkload) -> dict[str, Any] | None:
    """The result an identical earlier tuning cached (``tune.cache: true``), else ``None``."""
    assert entry.tune is not None
    cache = _cache_path(entry, prepared)
    if entry.tune.cache and cache.is_file():
        return dict(json.loads(cache.read_text()))
    return None


def tune_entry(entry: Entry, prepared: PreparedWorkload, *, suite: str = "bench",
               address: str | None = None) -> dict[str, Any]:
    """Tune ``entry``; returns ``{"config", "sweep_id", "objective", "metric", "cached"}``."""
    from raysweep.sweep.runner import load_study, run_sweep

    assert entry.tune is not None
    cache = _cache_path(entry, prepared)
    found = cached_tuning(entry, prepared)
    if found is not None:
        info(f"  {entry.id}: reusing the config tuned by sweep {found.get('sweep_id')} ({cache})")
        return {**found, "cached": True}
    spec = sweep_spec(suite, entry.id, entry.workload_ref, entry.method, entry.tune,
                      where=f"entry {entry.id}: tune")
    outcome = run_sweep(spec, address=address)
    if outcome.status != "finished":
        raise UserError(f"entry {entry.id}: the tuning sweep {outcome.sweep_id} {outcome.status}"
                        f"{': ' + outcome.message if outcome.message else ''}")
    study = load_study(outcome.sweep_dir)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise UserError(f"entry {entry.id}: the tuning sweep {outcome.sweep_id} finished no trial")
    # Optuna's value is the searcher metric: the sweep's selection objective on val (checked
    # again here, so that no spec, however built, picks the config on a test metric).
    metric = selection_key(spec, where=f"entry {entry.id}: tune")
    best = study.best_trial
    prefix = f"{entry.method}/"
    # Optuna records only sampled parameters; constants (``epochs: {value: 2}``) are part of the
    # tuned configuration too, so take them from the resolved space (active ones only).

    config = {k[len(prefix):]: v for k, v in best.params.items() if k.startswith(prefix)}
    for name, param in resolve_spec(spec).spaces().get(entry.method, {}).items():
        if param.distribution == "constant" and name not in config and active(param, config):
            config[name] = param.value
    found = {"config": config, "sweep_id": outcome.sweep_id, "objective": best.value,
             "metric": metric, "selection_split": "val", "seeds": list(entry.tune.seeds),
             "workload_seed": prepared.config.seed, "trials": len(complete),
             "best_epoch": _best_epoch(outcome.results, best.number)}
    info(f"  {entry.id}: best of {len(complete)} configurations {config} "
         f"({found['metric']} {best.value:.4g}, sweep {outcome.sweep_id})")
    if entry.tune.cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(found, indent=2, default=str))
    return {**found, "cached": False}
