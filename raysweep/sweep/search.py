"""From a :class:`~raysweep.sweep.space.SweepSpec` to Ray Tune's search algorithm and scheduler.

* :class:`DefineByRun` is the Optuna define-by-run space: ``method`` is a categorical when a sweep
  compares several methods, and each method's parameters are suggested as ``<method>/<param>``
  (so TPE never mixes two methods' ``lr`` ranges), in ``when:`` dependency order.
* :func:`make_sampler` maps ``search.algorithm`` to an Optuna sampler. ``grid`` is exact: every
  point of the discrete space (``when:`` honoured, several methods allowed) is enqueued in the
  study and a random sampler fills nothing, so no point runs twice.
* :class:`SeedReplicator` runs each configuration once per seed and tells Optuna the mean over
  seeds (one Optuna trial per configuration; Ray's ``Repeater`` neither handles several
  objectives nor keeps its groups across a restore).
* :func:`make_search` wires OptunaSearch (persistent JournalStorage under the sweep dir, or the
  RDB of ``search.storage``: see :mod:`raysweep.sweep._storage`; so the Pareto set and the
  plots can be read afterwards), the replicator and a ConcurrencyLimiter.
* :func:`make_scheduler` returns ASHA on the per-epoch objective, or FIFO.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from raysweep.errors import ConfigError
from raysweep.methods import get_method
from raysweep.sweep._storage import open_storage, study_name
from raysweep.sweep.space import (
    ASHA_DEFAULT_MAX_EPOCHS,
    ParamSpec,
    SweepSpec,
    active,
    condition_order,
    grid_points,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["DefineByRun", "SeedReplicator", "make_sampler", "make_search", "make_scheduler",
           "new_study", "study_directions", "study_storage", "STUDY_NAME", "default_points",
           "trial_params", "repair_journal"]

STUDY_NAME = "raysweep"


def study_storage(path: str | Path) -> optuna.storages.BaseStorage:
    """The sweep's Optuna study storage: a JournalStorage file (safe for one writer, no server).

    Journal files, unlike SQLite, need no schema migration and survive concurrent readers such
    as ``optuna-dashboard``; never put either on NFS (use an RDB server there).
    """
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def repair_journal(path: Path) -> int:
    """Cut a torn last record off an Optuna journal; returns the number of bytes cut.

    A driver killed mid-append (or a full disk) leaves a last line without its newline or with
    broken JSON. Optuna's reader skips such a tail, but the next append is glued onto it and the
    glued line then poisons the study for every reader. The cut bytes are kept beside the
    journal (``optuna.journal.torn-<time>``). Call it only as the journal's one writer (under
    the sweep lock, before the study is opened): a live writer's record in flight looks torn.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb") as f:
        # Look back far enough to hold the longest record (a study's system attrs at most).
        back = min(size, 1 << 20)
        f.seek(size - back)
        tail = f.read(back)
    good_end = size
    if not tail.endswith(b"\n"):
        nl = tail.rfind(b"\n")
        good_end = size - back + nl + 1 if nl >= 0 else (0 if back == size else size)
    else:
        start = tail.rfind(b"\n", 0, len(tail) - 1)
        last = tail[start + 1:]
        if start >= 0 or back == size:
            try:
                json.loads(last)
            except ValueError:
                good_end = size - len(last)
    if good_end == size:
        return 0
    with open(path, "r+b") as f:
        f.seek(good_end)
        cut = f.read()
        side = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        side.write_bytes(cut)
        f.truncate(good_end)
        f.flush()
        os.fsync(f.fileno())
    return len(cut)


def _suggest(trial: Any, name: str, p: ParamSpec) -> Any:
    d = p.distribution
    if d == "constant":
        return p.value
    if d == "categorical":
        return trial.suggest_categorical(name, list(p.values or []))
    lo, hi = p.bounds()
    if p.is_int:
        step = int(p.step) if p.step else 1
        return trial.suggest_int(name, lo, hi, step=step, log=p.log)
    return trial.suggest_float(name, lo, hi, step=p.step, log=p.log)


class DefineByRun:
    """The Optuna define-by-run function of a sweep (a class, so OptunaSearch can pickle it)."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spaces = spec.spaces()
        self.methods = list(self.spaces)
        self.order = {m: condition_order(ps) for m, ps in self.spaces.items()}

    def __call__(self, trial: Any) -> dict[str, Any]:
        if len(self.methods) > 1:
            method = trial.suggest_categorical("method", self.methods)
        else:
            method = self.methods[0]
        chosen: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for name in self.order[method]:
            p = self.spaces[method][name]
            if not active(p, chosen):
                continue
            value = _suggest(trial, f"{method}/{name}", p)
            chosen[name] = value
            if p.distribution == "constant":
                constants[f"{method}/{name}"] = value
        # Returned keys are merged with the suggested ones and unflattened on "/" by
        # OptunaSearch: the trial config becomes {"method": m, m: {param: value}, "rs": {...}}.
        return {"method": method, **constants, "rs/optuna_trial": trial.number}


def trial_params(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(method, params)`` of a trial config produced by :class:`DefineByRun`."""
    method = config["method"]
    return method, dict(config.get(method) or {})


def default_points(
    spec: SweepSpec, recipe: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One enqueued point per method: its paper defaults, where they lie inside the space.

    A default of ``None`` means "the workload's training recipe" (EU-k's and retrain's ``lr``,
    retrain's ``epochs``); ``recipe`` (the workload's ``train`` section) supplies that value, so
    the first trial really is the method as published rather than a sampled ``lr``.
    """
    points = []
    for method, params in spec.spaces().items():
        defaults = get_method(method).config().model_dump()
        point: dict[str, Any] = {"method": method} if len(spec.spaces()) > 1 else {}
        for name, p in params.items():
            v = defaults.get(name)
            if v is None and recipe is not None:
                v = recipe.get(name)
            if p.distribution == "constant" or v is None:
                continue
            if p.distribution == "categorical":
                if v in (p.values or []):
                    point[f"{method}/{name}"] = v
                continue
            lo, hi = p.bounds()
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                continue
            if p.step:  # snap to the grid so Optuna accepts it
                v = lo + round((v - lo) / p.step) * p.step
                v = int(v) if p.is_int else float(v)
            point[f"{method}/{name}"] = v
        points.append(point)
    return points


def _n_startup(spec: SweepSpec) -> int:
    if spec.search.n_startup_trials is not None:
        return spec.search.n_startup_trials
    return int(min(10, max(2, spec.num_configs() // 4)))


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``search.algorithm``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # several samplers and options are "experimental"
        return _make_sampler(spec)


def new_study(spec: SweepSpec, *, quiet: bool = True) -> optuna.Study:
    """An in-memory Optuna study with the sweep's sampler and objective directions, for an
    ask/tell loop outside Ray (benchmarks that replay a tabulated space). Optuna is reached
    through this package only, like Ray."""
    import optuna

    if quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=make_sampler(spec), directions=study_directions(spec))


def study_directions(spec: SweepSpec) -> list[Any]:
    """Optuna's direction per objective of ``spec``, in order."""
    import optuna

    return [optuna.study.StudyDirection.MINIMIZE if o.mode == "min"
            else optuna.study.StudyDirection.MAXIMIZE for o in spec.objectives]


def _make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    alg, seed = spec.search.algorithm, spec.search.seed
    conditional = len(spec.spaces()) > 1 or any(p.when for ps in spec.spaces().values()
                                                for p in ps.values())
    if alg == "tpe":
        # multivariate + group model conditional (when:/multi-method) spaces jointly;
        # constant_liar keeps concurrent trials from piling onto one point.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=_n_startup(spec),
                                          multivariate=True, group=conditional,
                                          constant_liar=True)
    if alg in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    if alg == "nsga2":
        pop = max(4, min(50, spec.num_configs() // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
    if alg == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_n_startup(spec))
    if alg == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if alg == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError("search.algorithm: cmaes needs the 'cmaes' package "
                              "(pip install cmaes), or choose tpe, gp, random, qmc") from None
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=_n_startup(spec))
    raise ConfigError(f"search.algorithm: unknown {alg!r}")


class SeedReplicator(Searcher):
    """Run every suggested configuration once per seed; report the seed mean to the searcher.

    The first trial of a group owns the Optuna trial; the others copy its config with another
    ``seed``. When every seed has finished, each objective is averaged over the seeds that
    produced it (NaN-aware); a group whose seeds all failed is told to Optuna as failed.
    """

    def __init__(self, searcher: Searcher, seeds: list[int], metrics: list[str],
                 modes: list[str]) -> None:
        self.searcher = searcher
        self.seeds = list(seeds)
        self.metrics = list(metrics)
        self._groups: dict[str, dict[str, Any]] = {}
        self._member: dict[str, str] = {}
        self._open: str | None = None
        super().__init__(metric=metrics[0] if len(metrics) == 1 else None,
                         mode=modes[0] if len(modes) == 1 else None)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return True  # the inner OptunaSearch is fully configured already

    # Searcher.FINISHED (a str) ends the search: Tune's convention, not in its annotation.
    def suggest(self, trial_id: str) -> dict | str | None:  # type: ignore[override]
        group = self._groups.get(self._open) if self._open else None
        if group is None or len(group["members"]) >= len(self.seeds):
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            group = {"primary": trial_id, "config": copy.deepcopy(config), "members": [],
                     "results": {}}
            self._groups[trial_id] = group
            self._open = trial_id
        index = len(group["members"])
        group["members"].append(trial_id)
        self._member[trial_id] = group["primary"]
        config = copy.deepcopy(group["config"])
        config["seed"] = self.seeds[index]
        config.setdefault("rs", {})["group"] = group["primary"]
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # Optuna pruners are not used (ASHA is a Tune scheduler)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        primary = self._member.get(trial_id)
        if primary is None:
            return
        group = self._groups[primary]
        values = {m: float(result[m]) for m in self.metrics
                  if result and m in result and result[m] is not None}
        group["results"][trial_id] = None if error or not values else values
        if len(group["results"]) < len(self.seeds) or group.get("told"):
            return
        group["told"] = True
        ok = [r for r in group["results"].values() if r]
        if not ok:
            self.searcher.on_trial_complete(primary, result=None, error=True)
            return
        mean = {}
        for m in self.metrics:
            vals = [r[m] for r in ok if m in r and math.isfinite(r[m])]
            mean[m] = float(np.mean(vals)) if vals else float("inf")
        self.searcher.on_trial_complete(primary, result=mean, error=False)

    def get_state(self) -> dict:
        state = self.__dict__.copy()
        del state["searcher"]
        return copy.deepcopy(state)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


def make_search(spec: SweepSpec, storage_path: Path, max_concurrent: int,
                recipe: Mapping[str, Any] | None = None) -> ConcurrencyLimiter:
    """OptunaSearch on persistent storage, replicated over seeds, with a concurrency limit
    (``recipe``: the workload's training recipe, see :func:`default_points`)."""
    from ray.tune.search.optuna import OptunaSearch

    metrics, modes = spec.searcher_metrics()
    points: list[dict[str, Any]] = []
    if spec.search.algorithm == "grid":
        multi = len(spec.spaces()) > 1
        for method, params in grid_points(spec)[: spec.num_configs()]:
            point = {f"{method}/{k}": v for k, v in params.items()
                     if spec.spaces()[method][k].distribution != "constant"}
            if multi:
                point["method"] = method
            points.append(point)
    elif spec.search.start_from_defaults:
        points = [p for p in default_points(spec, recipe) if p][: spec.num_configs()]
    searcher = OptunaSearch(
        space=DefineByRun(spec),
        metric=metrics if spec.multi_objective else metrics[0],
        mode=modes if spec.multi_objective else modes[0],
        sampler=make_sampler(spec),
        seed=spec.search.seed,
        # The sweep's journal file, or search.storage's database (one study per sweep there).
        study_name=study_name(storage_path.parent, spec.search.storage),
        storage=(study_storage(storage_path) if spec.search.storage is None
                 else open_storage(storage_path.parent, spec.search.storage)),
        points_to_evaluate=points or None,
    )
    replicated = SeedReplicator(searcher, spec.seeds, metrics, modes)
    return ConcurrencyLimiter(replicated, max_concurrent=max_concurrent)


def make_scheduler(spec: SweepSpec) -> Any:
    """ASHA on the per-epoch objective when ``search.early_terminate`` asks for it, else FIFO."""
    et = spec.search.early_terminate
    if et is None:
        return FIFOScheduler()
    objective = spec.objectives[0]
    # grace_period < max_t is checked by SweepSpec, so validate and --dry-run catch it.
    max_t = spec.budget.max_epochs or ASHA_DEFAULT_MAX_EPOCHS
    return ASHAScheduler(time_attr="epoch", metric=objective.key, mode=objective.mode,
                         max_t=max_t, grace_period=et.grace_period,
                         reduction_factor=et.reduction_factor, brackets=et.brackets)
