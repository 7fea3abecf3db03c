"""Driver-side pieces without Ray running: sweep lookup, progress/failure accounting, planning."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from raysweep.errors import ConfigError, UserError
from raysweep.sweep.runner import Progress, _max_concurrent, dry_run_plan, find_sweep
from raysweep.sweep.space import SEARCH_SPACES, load_sweep, parse_sweep, resolve_spec
from raysweep.sweep.tracking import error_reason, tracking_uri


def _trial(tid: str, method: str = "ssd", result: dict | None = None,
           error_file: Path | None = None):
    return SimpleNamespace(trial_id=tid, config={"method": method, "seed": 0},
                           last_result=result or {},
                           error_file=str(error_file) if error_file else None,
                           get_error=lambda: None)


def test_find_sweep_by_id_prefix_latest_and_path(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path))
    for i, sid in enumerate(["abc12345", "abd99999"]):
        d = tmp_path / "sweeps" / sid
        d.mkdir(parents=True)
        (d / "state.json").write_text(json.dumps({"id": sid, "created": i}))
    assert find_sweep("abc12345").name == "abc12345"
    assert find_sweep("abd").name == "abd99999"
    assert find_sweep("latest").name == "abd99999"
    assert find_sweep(str(tmp_path / "sweeps" / "abc12345")).name == "abc12345"
    with pytest.raises(UserError, match="ambiguous"):
        find_sweep("ab")
    with pytest.raises(UserError, match="no sweep 'zzz'"):
        find_sweep("zzz")


def test_progress_counts_best_and_failure_budget(tmp_path: Path) -> None:
    err = tmp_path / "error.txt"
    err.write_text("Traceback...\n"
                   "raysweep.methods._base.MethodDivergedError: scrub diverged at epoch 2\n")
    p = Progress(tmp_path, total=4, max_failed=1, objective_key="objective", objective_mode="min")
    p.on_trial_start(0, [], _trial("a"))
    p.on_trial_complete(0, [], _trial("a", result={"best/objective": 0.5, "epoch": 1}))
    p.on_trial_complete(0, [], _trial("b", "scrub", result={"best/objective": 0.2, "epoch": 2}))
    assert p.best["value"] == 0.2 and p.best["method"] == "scrub"
    p.on_trial_error(0, [], _trial("c", error_file=err))
    assert not p.stop_all()
    p.on_trial_error(0, [], _trial("d", error_file=err))
    assert p.stop_all()  # more failures than search.max_failed_trials
    data = json.loads((tmp_path / "progress.json").read_text())
    assert data["completed"] == 2 and data["failed"] == 2 and data["total"] == 4
    restored = Progress(tmp_path, 4, 1, "objective", "min")
    restored.set_state(p.get_state())
    assert restored.failed == 2 and restored.best == p.best


def test_error_reason_is_the_exception_line(tmp_path: Path) -> None:
    err = tmp_path / "error.txt"
    err.write_text("Failure # 1\nTraceback (most recent call last):\n  File x\n"
                   "raysweep.sweep.trainable.TrialFailure: finetune: non-finite model outputs\n")
    assert error_reason(_trial("x", error_file=err)).endswith(
        "TrialFailure: finetune: non-finite model outputs")
    assert error_reason(_trial("y")) == "trial failed (no error text)"


def test_max_concurrent_defaults_to_cpu_slots() -> None:
    spec = load_sweep(SEARCH_SPACES / "sweeps" / "smoke.yaml", ["search.max_concurrent=null"])
    assert _max_concurrent(spec, {"CPU": 4.0}) == 4
    half = load_sweep(SEARCH_SPACES / "sweeps" / "smoke.yaml",
                      ["search.max_concurrent=null", "resources_per_trial.cpu=2"])
    assert _max_concurrent(half, {"CPU": 5.0}) == 2
    gpu = resolve_spec(parse_sweep({"method": "ssd", "resources_per_trial": {"gpu": 0.5}}))
    assert _max_concurrent(gpu, {"CPU": 16.0, "GPU": 1.0}) == 2
    with pytest.raises(ConfigError, match="no GPU"):
        _max_concurrent(gpu, {"CPU": 16.0})


def test_dry_run_plan_counts_trials() -> None:
    spec = load_sweep(SEARCH_SPACES / "sweeps" / "quickstart.yaml", ["seeds=[0, 1]"])
    plan = dry_run_plan(spec)
    assert plan["trials"] == 2 * plan["configurations"] == 20
    assert [p["method"] for p in plan["first_points"]] == spec.method_names()
    assert plan["searcher_metrics"] == {"best/objective": "min"}


def test_tracking_uri_default_is_an_absolute_sqlite_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri() == "http://mlflow:5000"


def test_dry_run_first_point_uses_the_workload_recipe_for_recipe_defaults() -> None:
    # EU-k's lr default means "the workload's recipe": the enqueued first trial carries that lr.
    from raysweep.workload import load_workload_config

    spec = resolve_spec(parse_sweep({"methods": {"eu-k": None}, "workload": "fmnist-class-small"}))
    recipe_lr = load_workload_config("fmnist-class-small").train.lr
    assert dry_run_plan(spec)["first_points"] == [{"eu-k/k": 1, "eu-k/lr": recipe_lr,
                                                   "eu-k/epochs": 10}]


def test_objective_terms_the_workload_cannot_compute_fail_before_anything_is_written() -> None:
    from raysweep.errors import ConfigError
    from raysweep.sweep.runner import check_objective_computable
    from raysweep.sweep.space import parse_sweep

    spec = parse_sweep({"method": "ssd", "parameters": {}})
    full = {"dist/forget_acc": 0.0, "dist/heldout_acc/val": 0.0, "dist/mia_auc/val": 0.0,
            "dist/js": 0.0, "dist/probe/val": 0.0, "rel/heldout_drop/val": 0.0}
    check_objective_computable(spec, {"retrain": full}, "w")
    partial = {k: v for k, v in full.items() if k != "dist/probe/val"}
    with pytest.raises(ConfigError, match=r"objective.w_probe: 0"):
        check_objective_computable(spec, {"retrain": partial}, "w")
    no_probe = parse_sweep({"method": "ssd", "parameters": {}, "objective": {"w_probe": 0}})
    check_objective_computable(no_probe, {"retrain": partial}, "w")


def test_a_sweep_written_with_the_old_objective_fails_with_one_line(tmp_path) -> None:
    import json

    from raysweep.errors import UserError
    from raysweep.sweep.runner import load_spec
    from raysweep.sweep.space import parse_sweep

    spec = json.loads(parse_sweep({"method": "ssd", "parameters": {}}).model_dump_json())
    spec["objective"] = {"w_gap": 1.0, "w_mia": 1.0, "w_time": 0.1}
    d = tmp_path / "abc123"
    d.mkdir()
    (d / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match=r"old objective.*raysweep leaderboard --sweep abc123"):
        load_spec(d)


def test_trial_only_metrics_are_not_required_of_the_references() -> None:
    from raysweep.sweep.runner import check_objective_computable
    from raysweep.sweep.space import parse_sweep

    spec = parse_sweep({"method": "ssd", "parameters": {},
                        "objectives": [{"metric": "dist/forget_acc"},
                                       {"metric": "time/ratio"}, {"metric": "cost/ratio"}]})
    check_objective_computable(spec, {"retrain": {"dist/forget_acc": 0.0}}, "w")


def test_weights_that_let_the_untouched_original_beat_the_oracle_are_refused() -> None:
    from raysweep.errors import ConfigError
    from raysweep.sweep.runner import check_original_loses
    from raysweep.sweep.space import parse_sweep

    zero = {"dist/forget_acc": 0.0, "dist/heldout_acc/val": 0.0, "dist/mia_auc/val": 0.0,
            "dist/js": 0.0, "dist/probe/val": 0.0, "rel/heldout_drop/val": 0.0}
    refs = {"retrain": {**zero, "cost/ratio": 1.0},
            "original": {**zero, "dist/forget_acc": 1.0, "dist/js": 0.5, "cost/ratio": 0.0}}
    check_original_loses(parse_sweep({"method": "ssd", "parameters": {}}), refs, "w")
    greedy = parse_sweep({"method": "ssd", "parameters": {}, "objective": {"w_cost": 2.0}})
    with pytest.raises(ConfigError, match=r"untouched original.*lower objective.w_cost"):
        check_original_loses(greedy, refs, "w")
