"""The sweep / search-space schema: inference, validation errors, round trip, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from raysweep.errors import ConfigError
from raysweep.methods import list_methods
from raysweep.sweep.space import (
    SCHEMA_PATH,
    SEARCH_SPACES,
    ParamSpec,
    SweepSpec,
    bundled_space_path,
    grid_points,
    load_sweep,
    parse_sweep,
    resolve_spec,
    schema_text,
)

SWEEPS = sorted((SEARCH_SPACES / "sweeps").glob("*.yaml"))


def _resolve(data: dict) -> SweepSpec:
    return resolve_spec(parse_sweep(data, "x.yaml"), "x.yaml")


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        _resolve(data)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("x.yaml: ")
    return msg


@pytest.mark.parametrize(("spec", "distribution"), [
    ({"values": ["sgd", "adam"]}, "categorical"),
    ({"value": 3}, "constant"),
    ({"min": 1, "max": 5}, "int_uniform"),
    ({"min": 0.1, "max": 5}, "uniform"),
    ({"min": 1, "max": 5, "step": 2}, "int_uniform"),
    ({"min": 1, "max": 5, "step": 0.5}, "uniform"),
    ({"distribution": "loguniform", "min": 1e-5, "max": 1e-1}, "loguniform"),
])
def test_distribution_is_inferred_like_wandb(spec: dict, distribution: str) -> None:
    assert ParamSpec.model_validate(spec).distribution == distribution


def test_yaml_exponent_without_dot_is_a_number() -> None:
    # PyYAML reads 1e-5 as a string; a categorical of learning rates must still hold floats.
    p = ParamSpec.model_validate(yaml.safe_load("{values: [1e-5, 1.0e-4]}"))
    assert p.values == [1e-5, 1e-4]


@pytest.mark.parametrize(("data", "needle"), [
    ({"method": "ssd", "parameters": {"selection_weighting": {
        "distribution": "loguniform", "min": 0, "max": 10}}},
     "parameters.selection_weighting: loguniform needs min > 0, got min=0"),
    ({"method": "ssd", "parameters": {"dampening_constant": {"min": 3, "max": 1}}},
     "parameters.dampening_constant: int_uniform needs min < max, got min=3, max=1"),
    ({"method": "ssd", "parameters": {"selection_weightin": {"min": 1.0, "max": 2.0}}},
     "did you mean 'selection_weighting'"),
    ({"method": "ssd", "parameters": {"selection_weighting": {"min": 1.0, "max": 5000.0}}},
     "parameters.selection_weighting.max: 5000.0 is not allowed for ssd.selection_weighting"),
    ({"method": "scrub", "parameters": {"optimizer": {"values": ["sgd", "adm"]}}},
     "parameters.optimizer.values: 'adm' is not allowed"),
    ({"method": "scrub", "parameters": {"epochs": {"value": 0}}},
     "parameters.epochs.value: 0 is not allowed"),
    ({"method": "ssd", "parameters": {"selection_weighting": {"min": 1.0, "max": 2.0, "mx": 3}}},
     "unknown key 'mx' in parameters.selection_weighting"),
    ({"method": "scurb"}, "method: unknown method 'scurb'; did you mean 'scrub'?"),
    ({"methods": {"ssd": {}, "scurb": {}}}, "methods.scurb: unknown method 'scurb'"),
    ({"method": "scrub", "parameters": {"momentum": {"min": 0.5, "max": 0.9,
                                                     "when": {"optimiser": "sgd"}}}},
     "parameters.momentum.when: 'optimiser' is not a parameter of this space"),
    ({"method": "scrub", "parameters": {"optimizer": {"values": ["sgd"]},
                                        "momentum": {"min": 0.5, "max": 0.9,
                                                     "when": {"optimizer": "rmsprop"}}}},
     "'rmsprop' is not one of optimizer's values"),
    ({"method": "scrub", "objectives": [{"metric": "dist/forget_ac"}]},
     "objectives.0.metric: unknown metric 'dist/forget_ac'; did you mean 'dist/forget_acc'?"),
    ({"method": "scrub", "objectives": [{"metric": "test/acc", "goal": "maximize"}]},
     "objectives.0.metric: objective metric 'test/acc' reads the test split"),
    ({"method": "scrub", "objectives": [{"metric": "dist/mia_auc/test"}]},
     "use its selection twin 'dist/mia_auc/val'"),
    ({"method": "scrub", "objective": {"w_cost": 0.1},
      "search": {"early_terminate": {"type": "asha"}}},
     "cannot be combined with a cost or time objective"),
    ({"method": "scrub", "objective": {"w_gap": 1}},
     "objective.w_gap belongs to the old objective"),
    ({"method": "scrub", "objective": {"w_mia": float("nan")}}, "objective.w_mia"),
    ({"method": "scrub", "budget": {"max_cost_ratio": 0}}, "budget.max_cost_ratio"),
    ({"method": "scrub", "search": {"algorithm": "cmaes"},
      "objectives": [{"metric": "dist/forget_acc"},
                     {"metric": "heldout/acc/val", "goal": "maximize"}]},
     "search.algorithm cmaes optimises one objective"),
    ({"method": "scrub", "budget": {"max_time_ratio": 0.1, "max_seconds": 5}},
     "budget: give max_time_ratio or max_seconds, not both"),
    ({"method": "scrub", "search": {"algorithm": "bayes"}}, "search.algorithm: Input should be"),
    ({"method": "scrub", "search": {"algorithm": "grid"},
      "parameters": {"lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-2}}},
     "parameters.lr: grid search needs a discrete range"),
    ({"method": "scrub", "seeds": [1, 1]}, "seeds: seeds must be unique"),
    ({"method": "scrub", "parameters": {"lr": 0.1}}, "parameters.lr: expected a mapping"),
    ({"method": "scrub", "resources_per_trial": {"gpu": -1}}, "resources_per_trial.gpu"),
])
def test_bad_inputs_name_the_field(data: dict, needle: str) -> None:
    assert needle in _error(data)


def test_asha_is_fine_without_a_cost_term() -> None:
    spec = _resolve({"method": "finetune", "objective": {"w_cost": 0},
                     "search": {"early_terminate": {"type": "asha"}}, "budget": {"max_epochs": 4}})
    assert spec.search.early_terminate is not None


def test_round_trip_is_lossless() -> None:
    for path in [*SWEEPS, bundled_space_path("scrub")]:
        spec = load_sweep(path)
        assert SweepSpec.model_validate_json(spec.model_dump_json()) == spec
        assert SweepSpec.model_validate(json.loads(spec.model_dump_json())) == spec
        # resolving twice changes nothing
        assert resolve_spec(spec) == spec


def test_resolve_fills_bundled_spaces_and_folds_method() -> None:
    spec = _resolve({"methods": ["ssd", "scrub"]})
    assert set(spec.spaces()) == {"ssd", "scrub"}
    assert "selection_weighting" in spec.spaces()["ssd"]
    single = _resolve({"method": "ssd",
                       "parameters": {"selection_weighting": {"min": 1.0, "max": 2.0}}})
    assert single.method is None and list(single.spaces()) == ["ssd"]


def test_grid_honours_when_conditions() -> None:
    spec = _resolve({"method": "scrub", "search": {"algorithm": "grid"}, "parameters": {
        "optimizer": {"values": ["sgd", "adam"]},
        "momentum": {"min": 0.5, "max": 0.9, "step": 0.2, "when": {"optimizer": "sgd"}},
        "lr": {"values": [1e-3, 1e-2]}}})
    points = grid_points(spec)
    assert len(points) == 3 * 2 + 2  # momentum only under sgd
    assert all("momentum" not in p for m, p in points if p["optimizer"] == "adam")
    assert spec.num_configs() == 8


def test_when_cycle_is_rejected() -> None:
    msg = _error({"method": "scrub", "parameters": {
        "optimizer": {"values": ["sgd", "adam"], "when": {"temperature": 1.0}},
        "temperature": {"values": [1.0, 2.0], "when": {"optimizer": "sgd"}}}})
    assert "cycle" in msg


@pytest.mark.parametrize("method", list_methods())
def test_every_registered_method_has_a_valid_search_space(method: str) -> None:
    from raysweep.methods import get_method
    from raysweep.sweep.space import default_space

    if get_method(method).space is not None:      # the space travels with the registration
        assert default_space(method), f"{method}: the registered search space has no parameters"
        return
    path = bundled_space_path(method)
    assert path.is_file(), (f"write {path.relative_to(SEARCH_SPACES.parent)} or "
                            f"register_method(..., space=...) for method {method!r}")
    spec = load_sweep(path)
    assert spec.method_names() == [method]
    assert spec.spaces()[method], f"{path.name} has no parameters"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_bundled_sweeps_validate(path: Path) -> None:
    spec = load_sweep(path)
    assert spec.num_configs() >= 1


def test_quickstart_compares_the_readme_methods() -> None:
    spec = load_sweep(SEARCH_SPACES / "sweeps" / "quickstart.yaml")
    assert {"ssd", "eu-k", "salun", "scrub", "finetune"} <= set(spec.method_names())
    assert spec.budget.max_cost_ratio == 0.15 and spec.objective.retain_floor == 0.05
    assert spec.workload == "fmnist-class-small"


def test_json_schema_file_is_up_to_date() -> None:
    assert SCHEMA_PATH.is_file(), "run: python -m raysweep.sweep.space"
    assert SCHEMA_PATH.read_text() == schema_text(), "stale; run: python -m raysweep.sweep.space"


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    spec = load_sweep(SEARCH_SPACES / "sweeps" / "smoke.yaml",
                      ["search.num_samples=7", "methods.ssd.parameters.dampening_constant.max=3"])
    assert spec.num_configs() == 7
    assert spec.spaces()["ssd"]["dampening_constant"].max == 3
    with pytest.raises(ConfigError, match=r"search.num_samples"):
        load_sweep(SEARCH_SPACES / "sweeps" / "smoke.yaml", ["search.num_samples=0"])


def test_workload_path_is_relative_to_the_sweep_file(tmp_path: Path) -> None:
    wl = SEARCH_SPACES / "workloads" / "digits-class.yaml"
    (tmp_path / "wl.yaml").write_text(wl.read_text())
    (tmp_path / "s.yaml").write_text("method: ssd\nworkload: wl.yaml\n")
    spec = load_sweep(tmp_path / "s.yaml")
    assert Path(spec.workload).is_absolute() and Path(spec.workload).exists()
