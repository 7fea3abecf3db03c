"""Seeds and splits of a suite: tuning seeds disjoint from evaluation seeds, ``seed_scope``,
mean ± 95% CI in reports, and the protocol every report states."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from raysweep.bench.baseline import Stat, aggregate, compare
from raysweep.bench.suite import TUNING_SEED_BASE, Tolerance, TuneSpec, load_suite
from raysweep.errors import ConfigError

TOL = {"forget/acc": {"direction": "lower_is_better", "abs": 0.05}}


def _write(tmp_path: Path, data: dict[str, Any], name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _tuned_suite(tune: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"workload": "digits-class", "method": "ssd", "config": "tuned"}
    if tune is not None:
        entry["tune"] = tune
    data: dict[str, Any] = {"name": "seeds", "seeds": [0, 1], "tolerances": TOL,
                            "entries": [{"workload": "digits-class", "method": "ssd"}, entry]}
    data.update(changes)
    return data


# ------------------------------------------------------------------- 1. tuning vs evaluation seeds

def test_tuning_seeds_default_to_1000_and_are_disjoint(tmp_path: Path) -> None:
    assert TuneSpec().seeds == [TUNING_SEED_BASE] == [1000]
    suite = load_suite(_write(tmp_path, _tuned_suite()))
    tuned = suite.entries[1]
    assert tuned.tune is not None and tuned.tune.seeds == [1000] and tuned.seeds == (0, 1)
    proto = suite.protocol()
    assert proto["tuning_seeds"] == [1000] and proto["evaluation_seeds"] == [0, 1]
    assert proto["selection_split"] == "val" and proto["report_split"] == "test"
    # The sweep the entry runs uses the tuning seeds, not the evaluation seeds.
    from raysweep.bench.tuning import sweep_spec

    spec = sweep_spec("seeds", tuned.id, tuned.workload_ref, "ssd", tuned.tune, where="x")
    assert list(spec.seeds) == [1000]
    # Explicit tuning seeds that avoid the entry's own evaluation seeds are fine.
    ok = load_suite(_write(tmp_path, _tuned_suite({"seeds": [1000, 1001]})))
    assert ok.entries[1].tune.seeds == [1000, 1001]
    ok = load_suite(_write(tmp_path, _tuned_suite({"seeds": [0]}, entries=[
        {"workload": "digits-class", "method": "ssd", "config": "tuned", "seeds": [5],
         "tune": {"seeds": [0]}}])))
    assert ok.entries[0].seeds == (5,)


def test_overlapping_tuning_seeds_fail_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _tuned_suite({"seeds": [1, 1000, 0]}))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: entries[1].tune.seeds: [0, 1] are also evaluation seeds")
    assert "tune: {seeds: [1000]}" in msg and "1000 and above" in msg
    # The entry's own seeds are what counts.
    with pytest.raises(ConfigError,
                       match=r"entries\[0\]\.tune\.seeds: \[7\] is also an evaluation seed"):
        load_suite(_write(tmp_path, _tuned_suite(entries=[
            {"workload": "digits-class", "method": "ssd", "config": "tuned", "seeds": [7],
             "tune": {"seeds": [7]}}])))
    # So does --set, and every scale (not only the one loaded).
    with pytest.raises(ConfigError, match=r"\(with --set\): entries\[1\]\.tune\.seeds: \[1000\]"):
        load_suite(_write(tmp_path, _tuned_suite()), ["seeds=[0,1000]"])
    scaled = _tuned_suite(scales={"small": {}, "big": {"seeds": [0, 1], "tune": {"seeds": [1]}}})
    with pytest.raises(ConfigError, match=r"scales\.big: entries\[1\]\.tune\.seeds: \[1\]"):
        load_suite(_write(tmp_path, scaled))


def test_the_tuned_config_is_picked_on_val(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from raysweep.bench import tuning

    suite = load_suite(_write(tmp_path, _tuned_suite({"num_samples": 2})))
    entry = suite.entries[1]
    spec = tuning.sweep_spec("seeds", entry.id, entry.workload_ref, "ssd", entry.tune, where="x")
    assert tuning.selection_key(spec, where="x") == "best/objective"       # the val composite
    fake = SimpleNamespace(searcher_metrics=lambda: (["best/objective/test"], ["min"]))
    with pytest.raises(ConfigError, match="reads the test split"):
        tuning.selection_key(fake, where="x")  # type: ignore[arg-type]
    for metric in ("test/acc", "dist/heldout_acc/test"):
        with pytest.raises(ConfigError, match="test"):
            load_suite(_write(tmp_path, _tuned_suite({"objectives": [{"metric": metric}]})))

    # tune_entry sweeps on the tuning seeds and takes Optuna's best trial, i.e. the best value
    # of that val key (trial 1), and records the key and split it selected on.
    import raysweep.sweep.runner as sweep_runner

    def trial(number: int, value: float, test: float) -> Any:
        return SimpleNamespace(number=number, value=value, state=SimpleNamespace(name="COMPLETE"),
                               params={"ssd/selection_weighting": float(number + 1)},
                               user_attrs={"objective/test": test})

    trials = [trial(0, 0.30, 0.01), trial(1, 0.10, 0.90)]
    study = SimpleNamespace(trials=trials, best_trial=min(trials, key=lambda t: t.value))
    seen: dict[str, Any] = {}

    def fake_run_sweep(s: Any, address: Any = None) -> Any:
        seen["seeds"] = list(s.seeds)
        return SimpleNamespace(status="finished", sweep_id="sw1", sweep_dir=tmp_path, message="",
                               results=[])

    monkeypatch.setattr(sweep_runner, "run_sweep", fake_run_sweep)
    monkeypatch.setattr(sweep_runner, "load_study", lambda d: study)
    prepared = SimpleNamespace(key="k" * 16, config=SimpleNamespace(seed=0))
    found = tuning.tune_entry(entry, prepared, suite="seeds")  # type: ignore[arg-type]
    assert seen["seeds"] == [1000]
    assert found["config"]["selection_weighting"] == 2.0 and found["objective"] == 0.10
    assert found["metric"] == "best/objective" and found["selection_split"] == "val"


# --------------------------------------------------------------------------------- 2. seed_scope

def test_seed_scope_field(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, _tuned_suite()))
    assert {e.seed_scope for e in suite.entries} == {"method"}           # default: today's
    assert suite.entries[0].workload_for(1) is suite.entries[0].workload
    data = _tuned_suite(seed_scope="full")
    data["entries"][0]["seed_scope"] = "method"
    suite = load_suite(_write(tmp_path, data))
    plain, tuned = suite.entries
    assert plain.seed_scope == "method" and tuned.seed_scope == "full"
    assert suite.protocol()["seed_scope"] == "mixed"
    assert tuned.workload_for(1).seed == 1 and tuned.workload_for(1).name == "digits-class"
    assert tuned.tuning_workload().seed == 1000
    with pytest.raises(ConfigError, match="seed_scope"):
        load_suite(_write(tmp_path, _tuned_suite(seed_scope="data")))


def _tiny_workload(tmp_path: Path) -> str:
    """digits-class with a 2-epoch recipe: a full-scope run prepares one workload per seed."""
    from raysweep.workload import BUNDLED_WORKLOADS

    data = yaml.safe_load((BUNDLED_WORKLOADS / "digits-class.yaml").read_text())
    data["train"]["epochs"] = 2
    (tmp_path / "digits-class-tiny.yaml").write_text(yaml.safe_dump(data))
    return "digits-class-tiny.yaml"


def test_full_seed_scope_redraws_the_workload_per_seed(bench_env: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import raysweep.workload as workload_mod
    from raysweep.bench import run_suite

    calls: list[int] = []
    real_prepare = workload_mod.prepare

    def counting_prepare(cfg: Any, **kw: Any) -> Any:
        calls.append(cfg.seed)
        return real_prepare(cfg, **kw)

    monkeypatch.setattr(workload_mod, "prepare", counting_prepare)
    tuned_on: list[tuple[int, list[int]]] = []

    def fake_tune(entry: Any, prepared: Any) -> dict[str, Any]:
        tuned_on.append((prepared.config.seed, list(entry.tune.seeds)))
        return {"config": {"epochs": 1}, "sweep_id": "fake"}

    wl = _tiny_workload(bench_env)
    path = _write(bench_env, {
        "name": "full-scope", "seeds": [0, 1], "seed_scope": "full", "device": "cpu",
        "tolerances": TOL, "report_metrics": ["forget/acc", "time/seconds"],
        "entries": [{"workload": wl, "method": "finetune", "config": {"epochs": 1},
                     "max_epochs": 1},
                    {"workload": wl, "method": "ssd"},
                    {"workload": wl, "method": "finetune", "config": "tuned", "max_epochs": 1}]})
    suite = load_suite(path)
    result = run_suite(suite, out_dir=bench_env / "out", tune=fake_tune)
    assert result.status == "baseline", result.errors
    # Each (workload, seed) prepared once per suite run: seeds 0 and 1 for the evaluation runs
    # of all three entries, 1000 (the first tuning seed) for the tuning sweep only.
    assert sorted(calls) == [0, 1, 1000]
    assert tuned_on == [(1000, [1000])]

    from mlflow.tracking import MlflowClient

    kids = MlflowClient().search_runs([result.experiment_id],
                                      "tags.`raysweep.kind` = 'bench-entry'")
    assert len(kids) == 6
    by_seed: dict[str, set[str]] = {}
    for k in kids:
        p = k.data.params
        assert p["seed_scope"] == "full" and p["workload_seed"] == p["seed"]
        by_seed.setdefault(p["seed"], set()).add(p["workload_key"])
    assert set(by_seed) == {"0", "1"} and all(len(v) == 1 for v in by_seed.values())
    (key0,), (key1,) = by_seed["0"], by_seed["1"]
    assert key0 != key1                                     # each seed cached by its own key
    root = Path(workload_mod.cache_root()) / "workloads"
    forget = {s: np.load(next(root.glob(f"*-{key}")) / "indices.npz")["forget"]
              for s, key in (("0", key0), ("1", key1))}
    assert not np.array_equal(forget["0"], forget["1"])     # a different forget set per seed

    doc = json.loads((bench_env / "out" / "summary.json").read_text())
    proto = doc["protocol"]
    assert proto["seed_scope"] == "full" and proto["evaluation_seeds"] == [0, 1]
    assert proto["tuning_seeds"] == [1000] and proto["selection_split"] == "val"
    assert proto["report_split"] == "test" and proto["reference_seeds"] == {"digits-class": [0, 1]}
    assert doc["entries"]["digits-class/ssd"]["seed_scope"] == "full"
    assert doc["entries"]["digits-class/finetune@tuned"]["tuning_seeds"] == [1000]
    md = (bench_env / "out" / "report.md").read_text()
    assert "## Protocol" in md and "| seed scope | full (" in md
    assert "mean over workload seeds 0, 1" in md


# ------------------------------------------------------------------------------ 3. 95% CI

def test_ci95_is_student_t_and_the_gate_keeps_the_std() -> None:
    from scipy.stats import t

    from raysweep.bench.report import fmt_stat

    s = aggregate([1.0, 2.0, 4.0])
    sd = float(np.std([1.0, 2.0, 4.0], ddof=1))
    assert s.std == pytest.approx(sd)
    assert s.ci95 == pytest.approx(t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert fmt_stat(s) == f"2.333 ± {s.ci95:.2g}"
    one = aggregate([0.5])
    assert one.ci95 is None and fmt_stat(one) == "0.5 (n=1, no CI)"
    assert (Stat(0.5, float("nan"), 3).ci95 is None
            and fmt_stat(Stat(0.5, float("nan"), 3)) == "0.5")
    # Regression gate: σ is |Δ| over the pooled seed *std* (not the CI): here Δ = 0.3 with
    # std 0.1 on both sides is 3σ, so min_sigma 2.5 still flags it (its CI would not).
    tol = {"e": {"m": Tolerance(direction="lower_is_better", abs=0.05, min_sigma=2.5)}}
    base = {"e": {"m": aggregate([0.0, 0.1, 0.2])}}
    cur = {"e": {"m": aggregate([0.3, 0.4, 0.5])}}
    (row,) = compare(cur, base, tol)
    assert row.sigma == pytest.approx(3.0) and row.status == "regressed"


def test_reports_label_the_ci_and_state_the_protocol(tmp_path: Path) -> None:
    from raysweep.bench.paper import write_paper_report
    from raysweep.bench.report import ReportData, write_report

    suite = load_suite(_write(tmp_path, _tuned_suite()))
    summary = {e.id: {"forget/acc": aggregate([0.1, 0.2]), "time/seconds": aggregate([1.0])}
               for e in suite.entries}
    refs = {"digits-class": {"original": {"forget/acc": 1.0}, "retrain": {"forget/acc": 0.0}}}
    data = ReportData(suite=suite, status="baseline", summary=summary, comparisons=[],
                      baseline={}, baseline_label="none", references=refs,
                      meta={"status": "baseline"})
    paths = write_report(data, tmp_path / "rep")
    md = paths["report.md"].read_text()
    assert "## Results (seed mean ± 95% CI)" in md and "t(0.975, n-1)" in md
    assert "0.15 ± 0.64" in md and "1 (n=1, no CI)" in md
    for row in ("| selection split | val (", "| report split | test (",
                "| evaluation seeds | 0, 1 |", "| tuning seeds | 1000 (",
                "| seed scope | method ("):
        assert row in md, row
    html = paths["report.html"].read_text()
    assert "<h2>Protocol</h2>" in html and "95% CI" in html
    readme = write_paper_report(suite, summary, refs, tmp_path / "paper", plots=False).read_text()
    assert "95% confidence interval" in readme and "selection split: val" in readme
    assert "tuning seeds: 1000" in readme and "seed scope: method" in readme
    assert "evaluation seeds: 0, 1" in readme


def test_a_failed_tuning_sweep_fails_its_entry_not_the_suite(bench_env: Path) -> None:
    """A tuning sweep that raises (here: the objective guard refusing a workload) leaves an
    error row per evaluation seed of its entry; every other entry still runs and the report
    is written (exit 1, as for a failed run)."""
    from raysweep.bench import run_suite

    def refusing_tune(entry: Any, prepared: Any) -> dict[str, Any]:
        raise ConfigError("the untouched original model scores 0.48, no worse than the oracle")

    path = _write(bench_env, {
        "name": "tune-fails", "seeds": [0, 1], "device": "cpu", "tolerances": TOL,
        "report_metrics": ["forget/acc"],
        "entries": [{"workload": "digits-class", "method": "finetune", "config": "tuned",
                     "max_epochs": 1},
                    {"workload": "digits-class", "method": "finetune", "config": {"epochs": 1},
                     "max_epochs": 1}]})
    result = run_suite(load_suite(path), out_dir=bench_env / "out", tune=refusing_tune)
    assert result.exit_code == 1
    failed = {(e, s): err for e, s, err in result.errors}
    assert set(failed) == {("digits-class/finetune@tuned", 0), ("digits-class/finetune@tuned", 1)}
    assert all(err.startswith("tuning failed: ConfigError: the untouched original")
               for err in failed.values())
    ok = result.summary["digits-class/finetune"]["forget/acc"]
    assert ok.n == 2 and math.isfinite(ok.mean)
    assert (bench_env / "out" / "report.md").exists()
