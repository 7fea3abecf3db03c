"""YAML -> Optuna: the define-by-run space, samplers, seed replication, grid, scheduler."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from raysweep.errors import ConfigError
from raysweep.sweep.search import (
    DefineByRun,
    SeedReplicator,
    default_points,
    make_sampler,
    make_scheduler,
    make_search,
    trial_params,
)
from raysweep.sweep.space import SweepSpec, parse_sweep, resolve_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(data: dict) -> SweepSpec:
    return resolve_spec(parse_sweep(data, "t.yaml"), "t.yaml")


MULTI = {
    "methods": {
        "scrub": {"parameters": {
            "optimizer": {"values": ["sgd", "adam"]},
            "momentum": {"min": 0.5, "max": 0.9, "when": {"optimizer": "sgd"}},
            "lr": {"distribution": "loguniform", "min": 1e-5, "max": 1e-2},
            "epochs": {"value": 2}}},
        "ssd": {"parameters": {
            "selection_weighting": {"distribution": "loguniform", "min": 1.0, "max": 100.0}}},
    },
}


def test_define_by_run_samples_methods_and_conditionals() -> None:
    spec = _spec(MULTI)
    dbr = DefineByRun(spec)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        t = study.ask()
        out = dbr(t)
        method = out["method"]
        seen.add(method)
        params = {k.split("/", 1)[1]: v for k, v in t.params.items() if "/" in k}
        if method == "scrub":
            assert out["scrub/epochs"] == 2  # constants are returned, not suggested
            assert ("momentum" in params) == (params["optimizer"] == "sgd")
            assert 1e-5 <= params["lr"] <= 1e-2
        else:
            assert set(params) == {"selection_weighting"}
        study.tell(t, 0.0)
    assert seen == {"scrub", "ssd"}


def test_trial_params_reads_unflattened_configs() -> None:
    method, params = trial_params({"method": "ssd", "ssd": {"selection_weighting": 3.0},
                                   "rs": {"optuna_trial": 0}, "seed": 1})
    assert method == "ssd" and params == {"selection_weighting": 3.0}


def test_default_points_lie_inside_the_space() -> None:
    spec = _spec(MULTI)
    points = default_points(spec)
    assert {"method": "ssd", "ssd/selection_weighting": 10.0} in points
    scrub = next(p for p in points if p["method"] == "scrub")
    assert scrub["scrub/lr"] == 5e-4 and scrub["scrub/optimizer"] == "sgd"


def test_default_points_take_recipe_values_for_recipe_defaults() -> None:
    # EU-k's lr default is None = "the workload's recipe": without the recipe the first trial
    # would sample lr (not the published method); with it, the recipe's lr is enqueued, and a
    # recipe value outside the space is left to the sampler.
    spec = _spec({"method": "eu-k", "parameters": {
        "lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-1},
        "k": {"distribution": "int_uniform", "min": 1, "max": 3}}})
    assert default_points(spec) == [{"eu-k/k": 1}]
    assert default_points(spec, {"lr": 0.05, "epochs": 10}) == [{"eu-k/k": 1, "eu-k/lr": 0.05}]
    assert default_points(spec, {"lr": 0.5}) == [{"eu-k/k": 1}]


@pytest.mark.parametrize("alg", ["tpe", "random", "grid", "nsga2", "gp", "qmc", "cmaes"])
def test_every_algorithm_gets_a_sampler(alg: str) -> None:
    params = {"lr": {"values": [1e-3, 1e-2]}} if alg == "grid" else {
        "lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-1}}
    spec = _spec({"method": "finetune", "parameters": params, "search": {"algorithm": alg}})
    assert isinstance(make_sampler(spec), optuna.samplers.BaseSampler)


def test_cmaes_without_its_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cmaes", None)  # as if not installed
    spec = _spec({"method": "finetune", "search": {"algorithm": "cmaes"},
                  "parameters": {"lr": {"min": 0.01, "max": 0.1}}})
    with pytest.raises(ConfigError, match="cmaes"):
        make_sampler(spec)


def test_cmaes_searches_a_continuous_space() -> None:
    spec = _spec({"method": "finetune", "search": {"algorithm": "cmaes", "seed": 0},
                  "parameters": {"lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-1}}})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(spec))
    study.optimize(lambda t: (math.log10(t.suggest_float("lr", 1e-4, 1e-1, log=True)) + 2.5) ** 2,
                   n_trials=30)
    assert 1e-4 <= study.best_params["lr"] <= 1e-1
    assert abs(math.log10(study.best_params["lr"]) + 2.5) < 0.3  # near the optimum 10^-2.5


class _Inner:
    """A stand-in searcher that records what the replicator tells it."""

    metric, mode = "best/objective", "min"

    def __init__(self) -> None:
        self.n = 0
        self.told: list[tuple[str, dict | None, bool]] = []

    def suggest(self, trial_id: str) -> dict:
        self.n += 1
        return {"method": "ssd", "ssd": {"selection_weighting": float(self.n)}}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self.told.append((trial_id, result, error))

    def save(self, path: str) -> None: ...

    def restore(self, path: str) -> None: ...


def test_seed_replicator_runs_each_config_once_per_seed_and_tells_the_mean() -> None:
    inner = _Inner()
    rep = SeedReplicator(inner, seeds=[0, 1, 2], metrics=["best/objective"], modes=["min"])
    configs = [rep.suggest(f"t{i}") for i in range(6)]
    assert [c["seed"] for c in configs] == [0, 1, 2, 0, 1, 2]
    assert configs[0]["ssd"] == configs[2]["ssd"] != configs[3]["ssd"]
    assert configs[1]["rs"]["group"] == "t0" and configs[4]["rs"]["group"] == "t3"
    rep.on_trial_complete("t0", {"best/objective": 1.0})
    rep.on_trial_complete("t1", {"best/objective": 3.0})
    assert inner.told == []  # waits for every seed
    rep.on_trial_complete("t2", None, error=True)  # a failed seed is left out of the mean
    assert inner.told == [("t0", {"best/objective": 2.0}, False)]
    for t in ("t3", "t4", "t5"):
        rep.on_trial_complete(t, None, error=True)
    assert inner.told[-1] == ("t3", None, True)  # every seed failed -> the config failed
    state = rep.get_state()
    fresh = SeedReplicator(_Inner(), seeds=[0], metrics=["x"], modes=["min"])
    fresh.set_state(state)
    assert fresh.seeds == [0, 1, 2] and set(fresh._groups) == {"t0", "t3"}


def test_seed_replicator_averages_every_objective() -> None:
    inner = _Inner()
    rep = SeedReplicator(inner, seeds=[0, 1], metrics=["gap/oracle", "test/acc"],
                         modes=["min", "max"])
    rep.suggest("a")
    rep.suggest("b")
    rep.on_trial_complete("a", {"gap/oracle": 0.2, "test/acc": 0.8})
    rep.on_trial_complete("b", {"gap/oracle": 0.4, "test/acc": 0.9})
    (tid, result, error), = inner.told
    assert tid == "a" and not error
    assert result == pytest.approx({"gap/oracle": 0.3, "test/acc": 0.85})


def test_make_search_enqueues_the_whole_grid(tmp_path: Path) -> None:
    spec = _spec({"methods": {
        "finetune": {"parameters": {"lr": {"values": [0.01, 0.1]},
                                    "epochs": {"min": 1, "max": 2}}},
        "ssd": {"parameters": {"selection_weighting": {"values": [1.0, 10.0]}}}},
        "search": {"algorithm": "grid", "max_concurrent": 1}})
    assert spec.num_configs() == 6
    search = make_search(spec, tmp_path / "study.journal", max_concurrent=1)
    optuna_search = search.searcher.searcher
    waiting = [t for t in optuna_search._ot_study.trials if t.state.name == "WAITING"]
    assert len(waiting) == 6
    seen = set()
    for i in range(6):
        cfg = search.suggest(f"t{i}")
        method, params = trial_params(cfg)
        seen.add((method, tuple(sorted(params.items()))))
        search.on_trial_complete(f"t{i}", {"best/objective": float(i)})
    assert len(seen) == 6  # every grid point exactly once


def test_make_search_multi_objective_uses_metric_lists(tmp_path: Path) -> None:
    spec = _spec({"method": "finetune", "parameters": {"lr": {"min": 0.01, "max": 0.1}},
                  "objectives": [{"metric": "dist/forget_acc"},
                                 {"metric": "heldout/acc/val", "goal": "maximize"}],
                  "search": {"algorithm": "nsga2"}})
    search = make_search(spec, tmp_path / "s.journal", max_concurrent=2)
    optuna_search = search.searcher.searcher
    assert optuna_search.metric == ["dist/forget_acc", "heldout/acc/val"]
    assert optuna_search._ot_study.directions[1].name == "MAXIMIZE"


def test_scheduler_is_asha_only_when_asked() -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    assert isinstance(make_scheduler(_spec({"method": "finetune"})), FIFOScheduler)
    spec = _spec({"method": "finetune", "objective": {"w_cost": 0}, "budget": {"max_epochs": 4},
                  "search": {"early_terminate": {"type": "asha", "grace_period": 1}}})
    assert isinstance(make_scheduler(spec), ASHAScheduler)
