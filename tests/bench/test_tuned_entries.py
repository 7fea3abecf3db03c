"""``config: tuned`` entries: validated at load time, tuned before their seeds, logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from raysweep.bench import load_suite, run_suite
from raysweep.errors import ConfigError


def _suite(tmp_path: Path, tune: dict[str, Any] | None = None, **entry: Any) -> Path:
    data = {"name": "tuned", "seeds": [0], "device": "cpu",
            "tolerances": {"forget/acc": {"direction": "lower_is_better", "abs": 0.05}},
            "entries": [{"workload": "digits-class", "method": "ssd"},
                        {"workload": "digits-class", "method": "ssd", "config": "tuned",
                         **({"tune": tune} if tune is not None else {}), **entry}]}
    p = tmp_path / "tuned.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_tune_spec_is_validated_against_the_sweep_schema(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path, {
        "num_samples": 3, "budget": {"max_epochs": 2},
        "parameters": {"selection_weighting": {"min": 1, "max": 50}}}))
    tuned = suite.entries[1]
    assert tuned.id == "digits-class/ssd@tuned" and tuned.tune and tuned.tune.num_samples == 3
    from raysweep.bench.tuning import sweep_spec

    spec = sweep_spec("tuned", tuned.id, tuned.workload_ref, "ssd", tuned.tune, where="x")
    assert spec.method_names() == ["ssd"] and spec.num_configs() == 3
    assert spec.tracking.experiment == "raysweep-bench/tuned/tuning"
    with pytest.raises(ConfigError, match=r"entries\[1\]\.tune.*selection_weighting"):
        load_suite(_suite(tmp_path,
                          {"parameters": {"selection_weighting": {"min": 0, "max": 5000}}}))
    with pytest.raises(ConfigError, match=r"entries\[1\]\.tune.*alpha"):
        load_suite(_suite(tmp_path, {"parameters": {"alpha": {"min": 1, "max": 5}}}))
    with pytest.raises(ConfigError, match=r"entries\.1\.tune\.algorithm"):
        load_suite(_suite(tmp_path, {"algorithm": "bayes"}))


def test_tuned_config_runs_on_the_seeds_and_is_logged(bench_env: Path) -> None:
    calls = []

    def fake_tune(entry, prepared):
        calls.append((entry.id, prepared.name))
        return {"config": {"selection_weighting": 20.0}, "sweep_id": "fake123"}

    suite = load_suite(_suite(bench_env))
    result = run_suite(suite, out_dir=bench_env / "out", tune=fake_tune)
    assert calls == [("digits-class/ssd@tuned", "digits-class")]
    assert result.status == "baseline" and set(result.summary) == {"digits-class/ssd",
                                                                   "digits-class/ssd@tuned"}
    assert result.configs["digits-class/ssd@tuned"]["selection_weighting"] == 20.0
    assert result.configs["digits-class/ssd"]["selection_weighting"] == 10.0
    from mlflow.tracking import MlflowClient

    kids = MlflowClient().search_runs([result.experiment_id],
                                      "tags.`raysweep.entry` = 'digits-class/ssd@tuned'")
    assert len(kids) == 1
    assert kids[0].data.params["config.selection_weighting"] == "20.0"
    assert kids[0].data.params["config_kind"] == "tuned"
    assert kids[0].data.tags["raysweep.tuned_sweep"] == "fake123"
    md = (bench_env / "out" / "report.md").read_text()
    assert "digits-class/ssd@tuned" in md


@pytest.mark.slow
def test_tuned_entry_through_a_real_sweep(bench_env: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSWEEP_HOME", str(bench_env / "home"))
    monkeypatch.setenv("RAYSWEEP_NUM_CPUS", "2")
    suite = load_suite(_suite(bench_env, {"num_samples": 2, "cache": True}))
    first = run_suite(suite, out_dir=bench_env / "o1")
    assert first.status == "baseline", first.errors
    cfg = first.configs["digits-class/ssd@tuned"]
    assert set(cfg) == {"selection_weighting", "dampening_constant", "batch_size"}
    second = run_suite(suite, out_dir=bench_env / "o2")   # cache: true reuses the tuned config
    assert second.configs["digits-class/ssd@tuned"] == cfg and second.status == "passed"


def test_tuned_entry_stops_at_the_epoch_its_sweep_scored() -> None:
    # A sweep scores a trial at its best epoch; the suite must run the tuned config to that
    # epoch, not to the entry's budget (which would report a different, later model).
    from types import SimpleNamespace

    from raysweep.bench._run import _max_epochs
    from raysweep.bench.tuning import _best_epoch

    results = [
        {"config": {"rs": {"optuna_trial": 0}}, "error": False, "best": {"best/epochs": 3.0}},
        {"config": {"rs": {"optuna_trial": 1}}, "error": False, "best": {"best/epochs": 2.0}},
        {"config": {"rs": {"optuna_trial": 1}}, "error": False, "best": {"best/epochs": 1.0}},
        {"config": {"rs": {"optuna_trial": 2}}, "error": True, "best": {}},
    ]
    assert _best_epoch(results, 1) == 2 and _best_epoch(results, 0) == 3
    assert _best_epoch(results, 2) is None
    entry = SimpleNamespace(id="w/m@tuned", max_epochs=5)
    assert _max_epochs(entry, {"w/m@tuned": {"best_epoch": 2}}) == 2
    assert _max_epochs(entry, {"w/m@tuned": {"best_epoch": 9}}) == 5
    assert _max_epochs(entry, {"w/m@tuned": {"config": {}}}) == 5
    assert _max_epochs(entry, {}) == 5
