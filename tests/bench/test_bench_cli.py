"""End to end: ``raysweep bench run`` on the tests' copy of the smoke suite with a private MLflow
store.

First run: no baseline, so it becomes the baseline (exit 0). Second run: compared with the first,
within tolerance (exit 0). Third run: SSD's selection weighting is injected so high that it
dampens nothing and the model keeps its forget-set accuracy: exit 3, with a table naming the
entry and the metric. Then the reports, the MLflow layout, and pinned / run-id baselines.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raysweep.cli import main

#: The tests' copy of the smoke suite on the tiny digits workload (the shipped one memorises).
SMOKE = str(Path(__file__).parent / "suites" / "test-smoke.yaml")

WORSE_SSD = "entries.ssd.config.selection_weighting=1000"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["bench", "run", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture()
def smoke_history(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    rc1, out1, _ = _run(capsys, SMOKE, "--out", str(bench_env / "r1"), "--json")
    rc2, out2, _ = _run(capsys, SMOKE, "--out", str(bench_env / "r2"))
    rc3, out3, _ = _run(capsys, SMOKE, "--out", str(bench_env / "r3"), "--set", WORSE_SSD)
    return {"rc": (rc1, rc2, rc3), "first": json.loads(out1), "out2": out2, "out3": out3}


def test_smoke_suite_baseline_pass_then_regression(bench_env: Path, smoke_history: dict,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke_history["rc"] == (0, 0, 3)
    first = smoke_history["first"]
    assert first["status"] == "baseline" and first["exit_code"] == 0
    assert set(first["entries"]) == {"digits-class/ssd", "digits-class/scrub",
                                     "digits-class/finetune"}
    assert first["entries"]["digits-class/ssd"]["metrics"]["forget/acc"]["n"] == 2
    # SSD forgets
    assert first["entries"]["digits-class/ssd"]["metrics"]["forget/acc"]["mean"] < 0.2

    assert "passed" in smoke_history["out2"] and "previous run" in smoke_history["out2"]
    # The terminal report states its protocol and labels the intervals.
    out2 = smoke_history["out2"]
    assert "selection split: val" in out2 and "report split: test" in out2
    assert "evaluation seeds: 0, 1" in out2 and "seed scope: method" in out2
    assert "tuning seeds: none" in out2 and "± 95% CI" in out2
    assert (first["protocol"]["selection_split"] == "val"
            and first["protocol"]["report_split"] == "test")
    assert (first["protocol"]["evaluation_seeds"] == [0, 1]
            and first["protocol"]["seed_scope"] == "method")
    assert first["entries"]["digits-class/ssd"]["seed_scope"] == "method"
    out3 = smoke_history["out3"]
    assert "REGRESSION" in out3 and "regressed" in out3
    table = out3[out3.index("REGRESSION"):]
    assert "digits-class/ssd" in table and "forget/acc" in table and "REGRESSED" in table
    assert "digits-class/scrub" not in table.split("regressed:")[0]   # only what got worse

    # Reports: Markdown + self-contained HTML with embedded plots, for every run.
    for run in ("r1", "r2", "r3"):
        d = bench_env / run
        assert (d / "report.md").is_file() and (d / "summary.json").is_file()
        html = (d / "report.html").read_text()
        assert "data:image/png;base64," in html and "<img" in html
    assert (bench_env / "r3" / "trend.png").is_file()
    assert "What got worse" in (bench_env / "r3" / "report.md").read_text()
    summary3 = json.loads((bench_env / "r3" / "summary.json").read_text())
    assert summary3["status"] == "regressed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", summary3["finished"])
    assert [(r["entry"], r["metric"]) for r in summary3["regressions"]] == [
        ("digits-class/ssd", "forget/acc")]

    # MLflow: a parent per suite run, children per entry x seed with the documented tags.
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("raysweep-bench/test-smoke")
    parents = client.search_runs([exp.experiment_id], "tags.`raysweep.kind` = 'bench-suite'",
                                 order_by=["attributes.start_time ASC"])
    assert [p.data.tags["raysweep.bench.status"] for p in parents] == [
        "baseline", "passed", "regressed"]
    kids = client.search_runs([exp.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert len(kids) == 6
    tags = kids[0].data.tags
    for key in ("raysweep.suite", "raysweep.method", "raysweep.workload", "raysweep.git_sha",
                "raysweep.entry"):
        assert tags[key]
    assert (kids[0].data.params["seed_scope"] == "method"
            and kids[0].data.params["workload_seed"] == "0")
    assert parents[0].data.params["seed_scope"] == "method"
    assert parents[0].data.params["selection_split"] == "val"
    assert "forget/acc" in kids[0].data.metrics and "config.selection_weighting" in \
        next(k for k in kids if k.data.tags["raysweep.method"] == "ssd").data.params

    # "previous" skips the regressed run: the next baseline is run 2, not run 3.
    from raysweep.bench import load_suite, resolve_baseline

    prev = resolve_baseline(load_suite(SMOKE), "previous")
    assert prev.ref == f"previous:{parents[1].info.run_id}"
    # Pin run 2, then use the pinned file and a run id as baselines.
    capsys.readouterr()
    pin = bench_env / "pin.json"
    assert main(["bench", "baseline", SMOKE, "--pin", str(pin),
                 "--run", parents[1].info.run_id]) == 0
    pinned = json.loads(pin.read_text())
    assert pinned["suite"] == "test-smoke" and pinned["source"]["run_id"] == parents[1].info.run_id
    from_file = resolve_baseline(load_suite(SMOKE), str(pin))
    from_run = resolve_baseline(load_suite(SMOKE), parents[1].info.run_id)
    assert from_file.summary is not None and from_run.summary is not None
    for entry, metrics in from_run.summary.items():
        assert from_file.summary[entry]["forget/acc"].mean == metrics["forget/acc"].mean
    assert set(from_file.summary) == set(first["entries"])


def test_bad_references_fail_fast(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, SMOKE, "--baseline", "nope")
    assert rc == 2 and "--baseline 'nope'" in err
    rc, _, err = _run(capsys, SMOKE, "--baseline", "0" * 32)
    assert rc == 2 and "no MLflow run with this id" in err
    rc, _, err = _run(capsys, SMOKE, "--set", "entries.ssd.config.selection_weighting=0")
    assert rc == 2 and "selection_weighting" in err
    rc = main(["bench", "baseline", SMOKE, "--pin", str(bench_env / "p.json")])
    assert rc == 2 and "has no finished runs" in capsys.readouterr().err


def test_dry_run_prints_the_plan(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, SMOKE, "--dry-run", "--json")
    plan = json.loads(out)
    assert rc == 0 and plan["runs"] == 6
    assert next(e["entry"] for e in plan["entries"]) == "digits-class/ssd"


def test_relearn_time_in_suite_runs_and_references(bench_env: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # relearn: on a suite adds relearn/epochs to every run and to both reference rows: the
    # original is at its own forget accuracy (0 epochs); the oracle never saw D_f, so it needs
    # at least one fine-tuning step; a method that forgot takes > 0 epochs as well.
    suite = bench_env / "relearn.yaml"
    suite.write_text(
        "schema_version: 1\nname: relearn\nseeds: [0]\n"
        "relearn: {lr: 0.01, max_epochs: 3}\n"
        "report_metrics: [forget/acc, relearn/epochs]\n"
        "entries:\n  - {workload: digits-class, method: ssd, "
        "config: {selection_weighting: 3}}\n")
    rc, out, err = _run(capsys, str(suite), "--out", str(bench_env / "r"), "--json")
    assert rc == 0, err[-3000:]
    doc = json.loads(out)
    run = doc["entries"]["digits-class/ssd"]["metrics"]["relearn/epochs"]
    refs = doc["references"]["digits-class"]
    assert refs["original"]["relearn/epochs"] == 0.0
    assert 0.0 < refs["retrain"]["relearn/epochs"] <= 3.0
    # The workload's signal check rides along (1: the term separates original from oracle);
    # paper reports flag the columns whose term has none (raysweep.bench.flags).
    assert set(refs["signal"]) == {"forget", "heldout", "mia", "js", "probe"}
    assert all(v in (0.0, 1.0) for v in refs["signal"].values())
    assert 0.0 < run["mean"] <= 3.0


@pytest.mark.slow  # trains 12 models as Ray tasks (about a minute on 2 idle cores)
def test_forgetting_quality_column_in_a_suite(bench_env: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # forgetting_quality: trains k originals, k oracles and k unlearned models per default row's
    # method (Ray tasks), and its fq/* metrics join those rows; a tuned row gets none.
    suite = bench_env / "fq.yaml"
    suite.write_text(
        "schema_version: 1\nname: fq\nseeds: [0]\ndevice: cpu\n"
        "forgetting_quality: {k: 4}\n"
        "report_metrics: [forget/acc, fq/quality, fq/lira_auc]\n"
        "entries:\n  - {workload: digits-class, method: ssd, "
        "config: {selection_weighting: 3}}\n")
    rc, out, err = _run(capsys, str(suite), "--out", str(bench_env / "fq"), "--json")
    assert rc == 0, err[-3000:]
    metrics = json.loads(out)["entries"]["digits-class/ssd"]["metrics"]
    assert "fq/quality" in metrics, err[-3000:]
    assert 0.0 < metrics["fq/quality"]["mean"] <= 1.0 and metrics["fq/quality"]["n"] == 1
    assert 0.0 <= metrics["fq/lira_auc"]["mean"] <= 1.0
    page = (bench_env / "fq" / "forgetting-quality-digits-class.md").read_text()
    assert "| ssd |" in page and "| original |" in page


def test_fq_columns_join_the_fixed_config_rows_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The join itself, with the populations faked: every fixed-config row of the workload gets
    # its method's value, a tuned row none, a failed population no column (and a warning).
    from types import SimpleNamespace

    from raysweep.bench import forgetting, runner

    seen = {}

    def fake(workload, *, methods, k, configs, **kw):
        seen.update(methods=methods, k=k, configs=configs)
        return SimpleNamespace(rows=[
            {"row": "ssd", "forgetting_quality": 0.25, "score": 0.2, "lira_auc": 0.7},
            {"row": "scrub", "error": "2 scrub and 4 oracle models trained"}])

    monkeypatch.setattr(forgetting, "run_forgetting_quality", fake)
    wl = SimpleNamespace(name="w")
    entries = [SimpleNamespace(id="w/ssd", method="ssd", config={"a": 1}, config_kind="pinned",
                               workload=wl),
               SimpleNamespace(id="w/scrub", method="scrub", config={}, config_kind="default",
                               workload=wl),
               SimpleNamespace(id="w/ssd@tuned", method="ssd", config={}, config_kind="tuned",
                               workload=wl)]
    suite = SimpleNamespace(entries=entries, config=SimpleNamespace(
        forgetting_quality=SimpleNamespace(k=8, workloads=None), seeds=[3, 1], device="cpu"))
    summary: dict = {"w/ssd": {}, "w/scrub": {}, "w/ssd@tuned": {}}
    reports = runner.forgetting_quality_columns(suite, summary)
    assert set(reports) == {"w"} and seen["methods"] == ["ssd", "scrub"] and seen["k"] == 8
    assert seen["configs"] == {"ssd": {"a": 1}, "scrub": {}}
    assert summary["w/ssd"]["fq/quality"].mean == 0.25 and summary["w/ssd"]["fq/score"].n == 1
    assert summary["w/ssd"]["fq/lira_auc"].mean == 0.7
    assert summary["w/scrub"] == {} and summary["w/ssd@tuned"] == {}


def test_fq_metric_without_forgetting_quality_is_refused(bench_env: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    suite = bench_env / "nofq.yaml"
    suite.write_text(
        "schema_version: 1\nname: nofq\nseeds: [0]\n"
        "report_metrics: [forget/acc, fq/score]\n"
        "entries:\n  - {workload: digits-class, method: ssd}\n")
    rc, _out, err = _run(capsys, str(suite), "--dry-run")
    assert rc == 2 and "report_metrics: fq/score is measured only with forgetting_quality" in err
    assert err.count("raysweep: error:") == 1


def test_forgetting_quality_unknown_workload_is_refused(bench_env: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    # A misspelt workload would score nothing and say nothing: refused at load, nothing run.
    suite = bench_env / "fqtypo.yaml"
    suite.write_text(
        "schema_version: 1\nname: fqtypo\nseeds: [0]\n"
        "forgetting_quality: {k: 4, workloads: [digits-clas]}\n"
        "entries:\n  - {workload: digits-class, method: ssd}\n")
    rc, _out, err = _run(capsys, str(suite), "--dry-run")
    assert rc == 2 and "forgetting_quality.workloads: 'digits-clas'" in err
    assert "did you mean 'digits-class'" in err and err.count("raysweep: error:") == 1
