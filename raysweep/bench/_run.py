"""Running suite entries: one method run end to end, in-process or as Ray tasks.

:func:`run_one` is the unit (``raysweep unlearn`` runs the same engine call): one run of the
run engine (:func:`raysweep.engine.run_once`) under the entry's epoch budget, every metric of
the final weights. :func:`execute` runs every entry × seed of a suite, preparing each
(workload, workload seed) once per suite run (from the on-disk cache when it exists): with
``seed_scope: method`` one per workload, with ``seed_scope: full`` one per evaluation seed (the
workload's ``seed`` replaced by it); with an address it submits one Ray task per workload
preparation and per run (through :mod:`raysweep.sweep.tasks`; this module never imports Ray),
so runs spread over the cluster's nodes while the prepared workload travels through the object
store. Without one, runs are in-process and the tuning sweeps of ``config: tuned`` entries
share one local Ray, started at the first sweep. A run that raises is recorded with its error
and the others go on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from raysweep._console import console, info
from raysweep.config import WorkloadConfig
from raysweep.engine import run_once
from raysweep.methods import make_config
from raysweep.metrics import relearn_time
from raysweep.metrics.accuracy import accuracy
from raysweep.sweep.tasks import TaskPool, ray_cluster
from raysweep.training import resolve_device

if TYPE_CHECKING:
    import torch

    from raysweep.bench.suite import Entry, Suite
    from raysweep.workload import PreparedWorkload

__all__ = ["RunRecord", "Execution", "run_one", "execute"]


@dataclass
class RunRecord:
    """The outcome of one entry × seed."""

    entry: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    node: str = ""
    seed_scope: str = "method"           # method: the seed varies the run; full: the workload too
    workload_seed: int | None = None     # the seed the run's workload was prepared with
    workload_key: str = ""               # that workload's cache key


@dataclass
class Execution:
    records: list[RunRecord]
    references: dict[str, dict[str, dict[str, float]]]   # workload -> original/retrain -> metrics
    configs: dict[str, dict[str, Any]]                   # entry -> the config actually run
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry -> sweep info
    seconds: float = 0.0
    #: workload -> the workload seeds its reference rows average over (one with seed_scope method)
    reference_seeds: dict[str, list[int]] = field(default_factory=dict)


def run_one(prepared: PreparedWorkload, method: str, config: dict[str, Any], seed: int,
            device: str | torch.device | None = None, *, catboost: bool = False,
            max_epochs: int | None = None,
            on_epoch: Callable[[Any, float], None] | None = None,
            relearn: dict[str, Any] | None = None) -> dict[str, float]:
    """Run ``method`` with ``config`` on a prepared workload; return every metric.

    One run of the run engine (:func:`raysweep.engine.run_once`): the weights the method ends
    with are evaluated in full. The metrics are those of :meth:`PreparedWorkload.evaluate`
    plus ``epochs`` (the number of epochs the method ran, which the budget may cut short), the
    cost, the default objective on val and test and, with ``relearn`` (the fields of
    :class:`raysweep.bench.suite.RelearnSpec`), ``relearn/epochs``. ``on_epoch(event,
    seconds)`` sees each epoch (progress).
    """
    dev = resolve_device(device)
    outcome = run_once(prepared, method, config, seed, device=dev, max_epochs=max_epochs,
                       catboost=catboost, progress=on_epoch)
    metrics = outcome.metrics
    if relearn is not None:
        metrics["relearn/epochs"] = measure_relearn(prepared, outcome.model, relearn, seed, dev)
    return metrics


def measure_relearn(prepared: PreparedWorkload, model: Any, spec: dict[str, Any], seed: int,
                    device: Any) -> float:
    """Epochs of fine-tuning on D_f until ``model`` is back at the original's forget accuracy."""
    data = prepared.unlearn_data(batch_size=prepared.config.train.batch_size)
    forget = prepared.original_outputs["forget"]
    target = float(accuracy(forget.logits, forget.labels))
    return relearn_time(model, data, target, lr=spec["lr"], max_epochs=spec["max_epochs"],
                        device=device, seed=seed, batch_size=spec["batch_size"],
                        tolerance=spec["tolerance"], max_samples=spec.get("max_samples"))


def _safe_run(prepared: PreparedWorkload, entry_id: str, method: str, config: dict[str, Any],
              seed: int, device: str, catboost: bool, max_epochs: int | None,
              relearn: dict[str, Any] | None = None, seed_scope: str = "method") -> RunRecord:
    rec = RunRecord(entry=entry_id, seed=seed, config=dict(config), node=socket.gethostname(),
                    seed_scope=seed_scope, workload_seed=prepared.config.seed,
                    workload_key=prepared.key)
    try:
        rec.metrics = run_one(prepared, method, config, seed, device, catboost=catboost,
                              max_epochs=max_epochs, relearn=relearn)
    except Exception as exc:  # recorded; the suite reports it and exits 1
        tail = traceback.format_exc().strip().splitlines()[-3:]
        rec.error = f"{type(exc).__name__}: {exc}"
        if os.environ.get("RAYSWEEP_DEBUG"):
            rec.error += "\n" + "\n".join(tail)
    return rec


def _tuning_failed(entry: Entry, exc: Exception) -> list[RunRecord]:
    """One error record per evaluation seed of a tuned entry whose sweep failed: the entry has
    no configuration to run, the rest of the suite still runs, and the report lists the error
    (the suite exits 1, as for a failed run)."""
    info(f"[red]tuning {escape(entry.id)} failed[/]: {escape(str(exc).splitlines()[0])}")
    error = f"tuning failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return [RunRecord(entry=entry.id, seed=seed, error=error, seed_scope=entry.seed_scope,
                      workload_seed=entry.workload_for(seed).seed) for seed in entry.seeds]


def _max_epochs(entry: Entry, tuned: dict[str, dict[str, Any]]) -> int | None:
    """The entry's epoch budget; a tuned entry stops where its sweep scored it (best epoch)."""
    best = (tuned.get(entry.id) or {}).get("best_epoch")
    if best is None:
        return entry.max_epochs
    return min(int(best), entry.max_epochs) if entry.max_epochs is not None else int(best)


def _relearn(suite: Any) -> dict[str, Any] | None:
    spec = suite.config.relearn
    return spec.model_dump() if spec is not None else None


def _prepare_with_refs(workload_json: dict[str, Any], device: str, catboost: bool,
                      relearn: dict[str, Any] | None = None,
                      ) -> tuple[PreparedWorkload, dict[str, dict[str, float]]]:
    from raysweep.workload import prepare

    cfg = WorkloadConfig.model_validate(workload_json)
    prepared = prepare(cfg, device=device, quiet=True)
    assert prepared is not None  # only ``cached_only`` returns None
    return prepared, _references(prepared, catboost, relearn, device)


def _references(prepared: PreparedWorkload, catboost: bool, relearn: dict[str, Any] | None,
                device: Any) -> dict[str, dict[str, float]]:
    """The original's and the oracle's metrics; with ``relearn``, their relearn times too (the
    oracle's is the baseline: how fast a model that never saw D_f learns it)."""
    refs = prepared.reference_metrics(catboost=catboost)
    # The signal check (1: the term separates original from oracle), so that reports flag the
    # columns it cannot support (raysweep.bench.flags); averaged over seeds like the rows.
    refs["signal"] = {row["term"]: float(row["signal"])
                      for row in prepared.signal_check(split="test", seed=prepared.config.seed)}
    if relearn is not None:
        dev = resolve_device(device)
        refs["original"]["relearn/epochs"] = 0.0  # at the target by definition
        refs["retrain"]["relearn/epochs"] = measure_relearn(
            prepared, prepared.build_model("retrain").to(dev), relearn, prepared.config.seed, dev)
    return refs


def _mean_references(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The reference rows of one workload over its prepared seeds: the mean of each metric."""
    if len(per_seed) == 1:
        return per_seed[0]
    out: dict[str, dict[str, float]] = {}
    for ref in dict.fromkeys(k for r in per_seed for k in r):
        rows = [r[ref] for r in per_seed if ref in r]
        keys = dict.fromkeys(k for row in rows for k in row)
        out[ref] = {k: sum(float(row[k]) for row in rows if k in row) /
                    sum(1 for row in rows if k in row) for k in keys}
    return out


def _workload_plan(suite: Suite) -> dict[tuple[str, int], WorkloadConfig]:
    """Every (workload name, workload seed) the suite's evaluation runs need, in entry order."""
    plan: dict[tuple[str, int], WorkloadConfig] = {}
    for entry in suite.entries:
        for seed in entry.seeds:
            w = entry.workload_for(seed)
            plan.setdefault((w.name, w.seed), w)
    return plan


def _group_references(refs: dict[tuple[str, int], dict[str, dict[str, float]]]
                      ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, list[int]]]:
    by_name: dict[str, list[int]] = {}
    for wname, wseed in refs:
        by_name.setdefault(wname, []).append(wseed)
    return ({w: _mean_references([refs[(w, s)] for s in seeds]) for w, seeds in by_name.items()},
            {w: sorted(seeds) for w, seeds in by_name.items()})


def _tuning_entry(entry: Entry) -> Entry:
    """The entry a tuning sweep runs (``full``: its workload drawn with the first tuning seed,
    written to a YAML file since a sweep takes its workload by reference)."""
    w = entry.tuning_workload()
    if w is entry.workload:
        return entry
    from raysweep.bench.suite import _write_workload

    return replace(entry, workload=w, workload_ref=_write_workload(w))


def _config_values(entry: Entry, tuned: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if entry.config_kind == "tuned":
        values = tuned[entry.id]["config"]
    else:
        values = entry.config
    return make_config(entry.method, values).model_dump(mode="json")


def _describe(metrics: dict[str, float], keys: list[str]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)


def execute(suite: Suite, *, address: str | None = None, device: str | None = None,
            tune: Callable[[Entry, PreparedWorkload], dict[str, Any]] | None = None) -> Execution:
    """Run every entry × seed of ``suite``; returns the records and the reference rows.

    ``tune(entry, prepared)`` resolves a ``config: tuned`` entry to ``{"config": {...}, ...}``;
    by default :func:`raysweep.bench.tuning.tune_entry` runs a sweep (on the same cluster when an
    address is given). It runs on the driver, before the entry's seeds.
    """
    dev = device or suite.config.device
    t0 = time.perf_counter()
    if address:
        ex = _execute_ray(suite, address, dev, tune)
    else:
        ex = _execute_local(suite, dev, tune)
    ex.seconds = time.perf_counter() - t0
    return ex


def _execute_local(suite: Suite, device: str,
                   tune: Callable[[Entry, PreparedWorkload], dict[str, Any]] | None) -> Execution:
    from raysweep.workload import prepare

    dev = str(resolve_device(device))
    keys = suite.report_metrics()
    plan = _workload_plan(suite)
    prepared: dict[tuple[str, int], PreparedWorkload] = {}
    refs: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    tuned: dict[str, dict[str, Any]] = {}
    records: list[RunRecord] = []
    configs: dict[str, dict[str, Any]] = {}
    total, done = suite.runs(), 0
    ray_started = False

    def prepared_for(w: WorkloadConfig, *, reference: bool = True) -> PreparedWorkload:
        key = (w.name, w.seed)
        if key not in prepared:   # each (workload, seed) once per suite run
            info(f"[bold]workload {w.name}[/] (seed {w.seed})")
            ready = prepare(w, device=dev)
            assert ready is not None  # only ``cached_only`` returns None
            prepared[key] = ready
        if reference and key not in refs:
            refs[key] = _references(prepared[key], suite.config.catboost, _relearn(suite), dev)
        return prepared[key]

    with contextlib.ExitStack() as ray_scope:
        for entry in suite.entries:
            if entry.config_kind == "tuned":
                tentry = _tuning_entry(entry)
                # The tuning workload is an evaluation workload too unless full scope moved it
                # to a tuning seed (then it has no reference row).
                pw = prepared_for(tentry.workload,
                                  reference=(tentry.workload.name, tentry.workload.seed) in plan)
                if tune is None and not ray_started and _needs_sweep(tentry, pw):
                    # One local Ray for every tuning sweep of the suite, started at the first:
                    # each sweep reuses it (and its warm workers) instead of starting its own,
                    # about 7 s of start-up and shutdown per sweep here.
                    from raysweep.sweep.runner import ray_session

                    ray_scope.enter_context(ray_session(None))
                    ray_started = True
                try:
                    tuned[entry.id] = _tune(tentry, pw, tune, suite=suite.name, address=None)
                except Exception as exc:  # this entry's sweep; the other entries still run
                    failed = _tuning_failed(entry, exc)
                    records.extend(failed)
                    done += len(failed)
                    configs[entry.id] = {}
                    continue
            configs[entry.id] = _config_values(entry, tuned)
            for seed in entry.seeds:
                pw = prepared_for(entry.workload_for(seed))
                done += 1
                rec = _safe_run(pw, entry.id, entry.method, configs[entry.id], seed, dev,
                                suite.config.catboost, _max_epochs(entry, tuned), _relearn(suite),
                                seed_scope=entry.seed_scope)
                records.append(rec)
                _progress(done, total, rec, keys)
    grouped, ref_seeds = _group_references(refs)
    return Execution(records, grouped, configs, tuned, reference_seeds=ref_seeds)


def _needs_sweep(entry: Entry, prepared: PreparedWorkload) -> bool:
    """Whether tuning ``entry`` runs a sweep (not when an earlier identical tuning is cached)."""
    from raysweep.bench.tuning import cached_tuning

    return cached_tuning(entry, prepared) is None


def _tune(entry: Entry, prepared: PreparedWorkload,
          tune: Callable[[Entry, PreparedWorkload], dict[str, Any]] | None, *, suite: str,
          address: str | None) -> dict[str, Any]:
    info(f"tuning {escape(entry.id)} "
         f"({entry.tune.num_samples if entry.tune else '?'} configurations)")
    if tune is None:
        from raysweep.bench.tuning import tune_entry

        return tune_entry(entry, prepared, suite=suite, address=address)
    return tune(entry, prepared)


def _progress(done: int, total: int, rec: RunRecord, keys: list[str]) -> None:
    if rec.error:
        msg = (f"  [{done}/{total}] {escape(rec.entry)} seed {rec.seed}: "
               f"[red]failed[/] {escape(rec.error)}")
    else:
        msg = (f"  [{done}/{total}] {escape(rec.entry)} seed {rec.seed}: "
               f"{_describe(rec.metrics, keys)}")
    console.print(msg, soft_wrap=True)  # one line per run, also in CI logs


def _execute_ray(suite: Suite, address: str, device: str,
                 tune: Callable[[Entry, PreparedWorkload], dict[str, Any]] | None) -> Execution:
    with ray_cluster(address):
        return _submit_all(suite, address, device, tune)


def _submit_all(suite: Suite, address: str, device: str,
                tune: Callable[[Entry, PreparedWorkload], dict[str, Any]] | None) -> Execution:
    res = suite.config.resources
    pool = TaskPool(num_cpus=res.cpu, num_gpus=res.gpu)
    keys = suite.report_metrics()
    plan = _workload_plan(suite)
    prep_refs: dict[tuple[str, int], Any] = {}
    ref_refs: dict[tuple[str, int], Any] = {}

    def submit_prep(w: WorkloadConfig) -> Any:
        key = (w.name, w.seed)
        if key not in prep_refs:   # each (workload, seed) once per suite run
            prep_refs[key], ref = pool.submit(_prepare_with_refs, w.model_dump(mode="json"),
                                              device, suite.config.catboost, _relearn(suite),
                                              num_returns=2)
            if key in plan:        # a tuning-only workload (full scope) has no reference row
                ref_refs[key] = ref
        return prep_refs[key]

    for w in plan.values():
        submit_prep(w)
    tuned: dict[str, dict[str, Any]] = {}
    configs: dict[str, dict[str, Any]] = {}
    by_key: dict[tuple[str, int], RunRecord] = {}
    for entry in suite.entries:
        if entry.config_kind == "tuned":
            tentry = _tuning_entry(entry)
            try:
                tuned[entry.id] = _tune(tentry, pool.get(submit_prep(tentry.workload)), tune,
                                        suite=suite.name, address=address)
            except Exception as exc:  # this entry's sweep; the other entries still run
                by_key.update(((r.entry, r.seed), r) for r in _tuning_failed(entry, exc))
                configs[entry.id] = {}
                continue
        configs[entry.id] = _config_values(entry, tuned)
    futures: dict[Any, tuple[str, int]] = {}
    for entry in suite.entries:
        if entry.config_kind == "tuned" and entry.id not in tuned:
            continue
        for seed in entry.seeds:
            w = entry.workload_for(seed)
            fut = pool.submit(_safe_run, prep_refs[(w.name, w.seed)], entry.id, entry.method,
                              configs[entry.id], seed, device, suite.config.catboost,
                              _max_epochs(entry, tuned), _relearn(suite),
                              seed_scope=entry.seed_scope)
            futures[fut] = (entry.id, seed)
    info(f"submitted {len(futures)} runs to Ray at {address}")
    entries = {e.id: e for e in suite.entries}
    for done, (fut, rec, died) in enumerate(pool.as_completed(list(futures)), start=1):
        eid, seed = futures[fut]
        if died is not None:  # the task itself died (worker crash, OOM)
            e = entries[eid]
            rec = RunRecord(entry=eid, seed=seed, config=configs[eid],
                            error=f"{type(died).__name__}: {str(died).splitlines()[0]}",
                            seed_scope=e.seed_scope, workload_seed=e.workload_for(seed).seed)
        by_key[(eid, seed)] = rec
        _progress(done, len(futures), rec, keys)
    grouped, ref_seeds = _group_references({k: pool.get(r) for k, r in ref_refs.items()})
    records = [by_key[(e.id, s)] for e in suite.entries for s in e.seeds]
    return Execution(records, grouped, configs, tuned, reference_seeds=ref_seeds)
