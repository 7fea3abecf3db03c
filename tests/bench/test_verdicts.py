"""Verdict tables: claims files checked on load, judged from a suite's results (Welch t-test
over seeds, or within a tolerance of the paper's number). Synthetic summary.json; nothing
trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from raysweep.bench import load_suite
from raysweep.bench.baseline import Stat, aggregate, summary_to_json
from raysweep.bench.claims import judge
from raysweep.bench.suite import BUNDLED_SUITES
from raysweep.cli import main
from raysweep.errors import ConfigError


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path / "cache"))


CLAIMS: list[dict[str, Any]] = [
    {"id": "ft-beats-bt", "claim": "finetune keeps more accuracy than bad-teaching",
     "source": "paper 004, Table 1", "paper_value": "FT first", "workload": "digits-class",
     "metric": "test/acc", "test": "better", "a": "finetune", "b": "bad-teaching"},
    {"id": "bt-beats-ft", "claim": "the reverse", "source": "paper 004, Table 1",
     "workload": "digits-class", "metric": "test/acc", "test": "better", "a": "bad-teaching",
     "b": ["finetune"]},
    {"id": "tie", "claim": "scrub beats finetune", "source": "paper 004, Table 1",
     "workload": "digits-class", "metric": "forget/acc", "test": "better", "goal": "lower",
     "a": "scrub", "b": "finetune"},
    {"id": "oracle",
     "claim": "scrub's forget accuracy is closer to the oracle's than the original's",
     "source": "paper 004, Table 1", "workload": "digits-class", "metric": "forget/acc",
     "test": "better", "goal": "oracle", "a": "scrub", "b": "original"},
    {"id": "within-yes", "claim": "finetune at 0.9", "source": "paper 004, Table 1",
     "paper_value": 0.9, "workload": "digits-class", "metric": "test/acc", "test": "within",
     "a": "finetune", "value": 0.9, "tolerance": 0.02},
    {"id": "within-no", "claim": "finetune at 0.5", "source": "paper 004, Table 1",
     "workload": "digits-class", "metric": "test/acc", "test": "within", "a": "finetune",
     "value": 0.5, "tolerance": 0.02},
    {"id": "drop", "claim": "finetune loses 0.05 from the original",
     "source": "paper 004, Table 1",
     "workload": "digits-class", "metric": "test/acc", "test": "within", "a": "finetune",
     "relative_to": "original", "value": -0.05, "tolerance": 0.02},
    {"id": "censored", "claim": "scrub relearns slower", "source": "paper 003, Table 6",
     "workload": "digits-class", "metric": "relearn/epochs", "test": "better", "goal": "higher",
     "a": "scrub", "b": "finetune"},
]


def _suite(tmp_path: Path, claims: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
    (tmp_path / "claims").mkdir(exist_ok=True)
    (tmp_path / "claims" / "v.yaml").write_text(yaml.safe_dump(
        {"schema_version": 1, "paper": "004", "claims": CLAIMS if claims is None else claims},
        sort_keys=False))
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "v", "seeds": [0, 1, 2], "relearn": {"max_epochs": 10},
        "claims": "claims/v.yaml", **extra,
        "report_metrics": ["test/acc", "forget/acc", "relearn/epochs"],
        "entries": [{"workload": "digits-class",
                     "method": ["finetune", "bad-teaching", "scrub"]}]}))
    return path


def _results() -> tuple[dict, dict]:
    def stats(acc: list[float], forget: list[float], relearn: list[float]) -> dict:
        return {"test/acc": aggregate(acc), "forget/acc": aggregate(forget),
                "relearn/epochs": aggregate(relearn)}

    summary = {
        "digits-class/finetune": stats([0.90, 0.91, 0.89], [0.50, 0.52, 0.48], [3, 4, 3]),
        "digits-class/bad-teaching": stats([0.60, 0.62, 0.61], [0.0, 0.01, 0.0], [5, 6, 5]),
        "digits-class/scrub": stats([0.85, 0.86, 0.84], [0.49, 0.53, 0.50], [10, 10, 9]),
    }
    refs = {"digits-class": {
        "original": {"test/acc": 0.95, "forget/acc": 1.0, "relearn/epochs": 0.0},
        "retrain": {"test/acc": 0.93, "forget/acc": 0.0, "relearn/epochs": 10.0}}}
    return summary, refs


def test_each_verdict_from_synthetic_results(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path))
    summary, refs = _results()
    got = {c.id: judge(c, suite, summary, refs) for c in suite.claims.claims}
    assert got["ft-beats-bt"].verdict == "reproduced"
    assert "finetune better than bad-teaching (p=" in got["ft-beats-bt"].reason
    assert got["bt-beats-ft"].verdict == "not reproduced"
    assert "finetune better than bad-teaching" in got["bt-beats-ft"].reason
    assert (got["tie"].verdict == "not reproduced"
            and "no significant difference" in got["tie"].reason)
    assert got["oracle"].verdict == "reproduced"          # 0.5 is closer to 0 than 1.0 is
    assert "(original) 1" in got["oracle"].ours
    assert (got["within-yes"].verdict == "reproduced"
            and got["within-no"].verdict == "not reproduced")
    assert (got["drop"].verdict == "reproduced"
            and "change from (original) -0.05" in got["drop"].ours)
    assert got["censored"].verdict == "not comparable" and "cap of 10" in got["censored"].reason


def test_not_comparable_reasons(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path))
    summary, refs = _results()
    claim = next(c for c in suite.claims.claims if c.id == "ft-beats-bt")
    one_seed = {**summary, "digits-class/bad-teaching": {"test/acc": aggregate([0.6])}}
    v = judge(claim, suite, one_seed, refs)
    assert v.verdict == "not comparable" and "a Welch test needs 2+" in v.reason
    v = judge(claim, suite, {k: v for k, v in summary.items() if "finetune" not in k}, refs)
    assert v.verdict == "not comparable" and "finetune has no test/acc" in v.reason
    nan_stat = Stat(float("nan"), float("nan"), 2, (0.6, float("nan")))   # a hand-edited file
    nan = {**summary, "digits-class/bad-teaching": {"test/acc": nan_stat}}
    v = judge(claim, suite, nan, refs)
    assert v.verdict == "not comparable" and "non-finite test/acc" in v.reason
    censored = next(c for c in suite.claims.claims if c.id == "censored")
    v = judge(censored.model_copy(update={"a": "bad-teaching", "b": "retrain"}), suite, summary,
              refs)
    assert v.verdict == "not comparable" and "retrain row's relearn/epochs is censored" in v.reason


def test_a_flagged_rival_is_left_out_and_named(tmp_path: Path) -> None:
    claims = [{**CLAIMS[0], "b": ["bad-teaching", "scrub"]}]
    suite = load_suite(_suite(tmp_path, claims, min_test_acc=0.7))
    summary, refs = _results()
    v = judge(suite.claims.claims[0], suite, summary, refs)
    # bad-teaching is under the floor but the claim is on accuracy, which the floor spares
    assert v.verdict == "reproduced" and "bad-teaching" in v.reason


def test_bench_paper_writes_the_verdict_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _suite(tmp_path)
    summary, refs = _results()
    run_dir = tmp_path / "results" / "v" / "run"
    run_dir.mkdir(parents=True)
    run_dir.joinpath("summary.json").write_text(json.dumps({
        "suite": "v", "status": "baseline", "seconds": 60.0, "run_id": "r", "errors": [],
        "references": refs, "entries": {e: {"config": {}, "metrics": m}
                                        for e, m in summary_to_json(summary).items()}}))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "paper", str(path), "--results", "results", "--regenerate"]) == 0
    text = (tmp_path / "results" / "v" / "README.md").read_text()
    assert "## Claims: verdicts" in text
    assert ("| `ft-beats-bt`: finetune keeps more accuracy than bad-teaching "
            "| FT first (paper 004, Table 1) |") in text
    assert "Counts: reproduced 4, not reproduced 3, not comparable 1." in text


@pytest.mark.parametrize("suite_name", sorted(p.stem for p in BUNDLED_SUITES.glob("paper-*.yaml")))
def test_every_paper_suite_has_a_checked_claims_file(suite_name: str) -> None:
    # Every claim names a workload of the file as written; a scale may leave one out (paper-000's
    # small scale runs no text), and its verdict then says "did not run at scale small".
    written = {e["workload"] for e in
               yaml.safe_load((BUNDLED_SUITES / f"{suite_name}.yaml").read_text())["entries"]}
    for scale in (None, "paper"):
        suite = load_suite(suite_name, scale=scale)
        assert suite.claims is not None and len(suite.claims.claims) >= 4
        assert suite.claims.paper == suite_name.split("-")[1]
        names = {e.workload.name for e in suite.entries}
        assert {c.workload for c in suite.claims.claims} <= names | written


# --------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("change, needle", [
    ({"workload": "digits-clas"}, "claims[0].workload: the suite runs no workload 'digits-clas'"),
    ({"metric": "test/accc"}, "claims[0].metric"),
    ({"metric": "mia/lr_auc"}, "claims[0].goal: missing"),
    ({"a": "finetun"}, "claims[0].a: 'finetun' is not an entry"),
    ({"b": ["bad-teaching", "sftc"]}, "claims[0].b: 'sftc' is not an entry"),
    ({"b": "finetune"}, "is also a"),
    ({"b": None}, "test: better needs b"),
    ({"a": "original", "b": "retrain"}, "both reference rows"),
    ({"source": "Table 1"}, "must name the paper"),
    ({"test": "equal"}, "claims.0.test"),
    ({"alpha": 1.5}, "claims.0.alpha"),
    ({"goal": "target"}, "goal: target needs target"),
    ({"value": 0.9}, "value/tolerance belong to test: within"),
    ({"test": "within", "b": None, "value": 0.9},
     "needs value: (the paper's number) and tolerance"),
    ({"colour": "red"}, "colour"),
])
def test_bad_claims_are_one_line_errors(tmp_path: Path, change: dict[str, Any],
                                        needle: str) -> None:
    claim = {**CLAIMS[0], **change}
    claim = {k: v for k, v in claim.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        load_suite(_suite(tmp_path, [claim]))
    msg = str(info.value)
    assert needle in msg and "\n" not in msg, msg


def test_duplicate_ids_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"claims\[1\].id: 'ft-beats-bt' repeats claims\[0\]"):
        load_suite(_suite(tmp_path, [CLAIMS[0], CLAIMS[0]]))
    path = _suite(tmp_path)
    (tmp_path / "claims" / "v.yaml").unlink()
    with pytest.raises(ConfigError, match="does not exist; give the claims file's path"):
        load_suite(path)
    (tmp_path / "claims" / "v.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a directory, not a file; give the claims file's"):
        load_suite(path)


def test_bench_paper_with_a_bad_claim_exits_2_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _suite(tmp_path, [{**CLAIMS[0], "metric": "nonsense/x"}])
    monkeypatch.chdir(tmp_path)
    rc = main(["bench", "paper", str(path), "--results", "results"])
    err = capsys.readouterr().err.strip().splitlines()
    assert (rc == 2 and len(err) == 1 and err[0].startswith("raysweep: error:")
            and "metric" in err[0])
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_a_tiny_paper_suite_end_to_end(bench_env: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # The real path on digits-class (about 90 s on 2 cores): paper values run by the default
    # row, the signal check recorded, a constant or broken row flagged, verdicts written.
    (bench_env / "claims").mkdir()
    (bench_env / "claims" / "tiny.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "paper": "004", "claims": [
            {"id": "ft-acc", "claim": "finetune keeps more accuracy than neuron masking",
             "source": "paper 004, Table 1", "workload": "digits-class", "metric": "test/acc",
             "test": "better", "a": "finetune", "b": "neuron-masking"}]}))
    suite = bench_env / "tiny.yaml"
    suite.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "tiny-paper", "seeds": [0, 1], "min_test_acc": 0.5,
        "report_metrics": ["test/acc", "forget/acc", "mia/lr_auc", "time/seconds"],
        "claims": "claims/tiny.yaml",
        "paper_defaults": [{"method": "finetune", "values": {"epochs": 1, "lr": 0.01},
                            "source": "paper 004, Results"}],
        "entries": [{"workload": "digits-class", "method": ["finetune", "neuron-masking"],
                     "max_epochs": 2}]}))
    rc = main(["bench", "paper", str(suite), "--results", "results", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err[-3000:]
    doc = json.loads((bench_env / "results" / "tiny-paper" / "run" / "summary.json").read_text())
    assert doc["entries"]["digits-class/finetune"]["config"]["lr"] == 0.01
    assert set(doc["references"]["digits-class"]["signal"]) >= {"forget", "mia"}
    text = (bench_env / "results" / "tiny-paper" / "README.md").read_text()
    assert "## Claims: verdicts" in text and "| `ft-acc`:" in text
    assert "| finetune | `mlp` | lr | `0.01` | `0.02` | paper 004, Results |" in text
    assert "Rankings by seed mean" in text
