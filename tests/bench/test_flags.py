"""Flags instead of prose: censored, no-signal, constant-predictor and below-floor values are
marked in the paper tables and left out of rankings. Synthetic results; nothing trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from raysweep.bench import load_suite
from raysweep.bench.baseline import aggregate
from raysweep.bench.flags import compute_flags, is_constant_predictor
from raysweep.bench.paper import (
    paper_rows,
    paper_tables_markdown,
    rankings_markdown,
    write_paper_report,
)

METRICS = ["test/acc_retain_classes", "test/acc", "forget/acc", "mia/lr_auc", "relearn/epochs"]


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path / "cache"))


def _suite(tmp_path: Path, **extra: Any):
    path = tmp_path / "flags.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "flags", "seeds": [0, 1],
        "relearn": {"max_epochs": 10}, "report_metrics": METRICS, **extra,
        "entries": [{"workload": "digits-class",
                     "method": ["finetune", "bad-teaching", "scrub", "retrain"]}]}))
    return load_suite(path)


def _row(acc: float, *, constant: bool = False, relearn: tuple[float, float] = (3, 4),
         forget: float = 0.1, mia: float = 0.55) -> dict[str, Any]:
    k = 10
    vals = {"test/acc_retain_classes": [acc, acc + 0.01], "test/acc": [acc, acc + 0.01],
            "forget/acc": [forget, forget + 0.01], "mia/lr_auc": [mia, mia + 0.01],
            "relearn/epochs": list(relearn)}
    if constant:   # one predicted class: recall 1/k, precision acc/k (scikit-learn, macro)
        vals["test/acc"] = [acc, acc]
        vals["test/recall_macro"] = [1 / k, 1 / k]
        vals["test/precision_macro"] = [acc / k, acc / k]
    else:
        vals["test/recall_macro"] = [acc, acc + 0.01]
        vals["test/precision_macro"] = [acc + 0.02, acc + 0.03]
    return {m: aggregate(v) for m, v in vals.items()}


def _results(suite, *, original_acc: float = 0.9, signal: dict | None = None):
    summary = {
        "digits-class/finetune": _row(0.85),
        "digits-class/bad-teaching": _row(0.1, constant=True, forget=0.0),
        "digits-class/scrub": _row(0.8, relearn=(10, 4)),
        "digits-class/retrain": _row(0.88),
    }
    ref = dict.fromkeys(METRICS, original_acc)
    refs = {"digits-class": {"original": ref,
                             "retrain": {**ref, "forget/acc": 0.0, "relearn/epochs": 10.0},
                             **({"signal": signal} if signal is not None else {})}}
    return summary, refs


def test_constant_predictor_identity() -> None:
    assert is_constant_predictor(0.391, 0.391 / 3, 1 / 3)
    assert is_constant_predictor(0.1, 0.01, 0.1)
    assert not is_constant_predictor(0.4, 0.13, 0.34)          # close, but not one class
    assert not is_constant_predictor(0.9, 0.9, 0.9)
    assert not is_constant_predictor(float("nan"), 0.1, 0.1)
    assert not is_constant_predictor(1.0, 1.0, 1.0)            # k = 1: a single-class test set


def test_each_flag_is_marked_and_left_out_of_rankings(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    summary, refs = _results(suite, signal={"mia": 0.0, "forget": 1.0, "heldout": 1.0})
    flags = compute_flags(suite, summary, refs)
    assert [f.code for f in flags.of("digits-class/bad-teaching")] == ["constant"]
    assert [f.code for f in flags.of("digits-class/scrub", "relearn/epochs")] == ["censored"]
    assert flags.of("digits-class/scrub", "forget/acc") == []
    assert [f.code for f in flags.of("digits-class/finetune", "mia/lr_auc")] == ["no-signal"]
    assert flags.of("digits-class/finetune", "forget/acc") == []
    summary2, refs2 = _results(suite, signal={"heldout": 0.0})
    assert compute_flags(suite, summary2, refs2).of("digits-class/finetune", "test/acc") == []

    table = dict(paper_tables_markdown(suite, summary, refs))["digits-class"]
    bt = next(x for x in table.splitlines() if x.startswith("| bad-teaching |"))
    assert bt.rstrip().endswith("| ᵏ |")                               # the row's flag column
    scrub = next(x for x in table.splitlines() if x.startswith("| scrub |"))
    assert "7 ± 38 ᶜ" in scrub                                          # the censored cell
    assert "ˢ" in scrub and "ˢ" not in table.splitlines()[2]           # not on the original's row
    oracle = next(x for x in table.splitlines() if x.startswith("| (retrain) |"))
    assert "10 ᶜ" in oracle                                            # the oracle never relearned

    rows = dict(paper_rows(suite, summary, refs, METRICS))["digits-class"]
    ranking = rankings_markdown(suite, "digits-class", rows, refs, flags, METRICS)
    acc_line = next(x for x in ranking.splitlines() if x.startswith("* `test/acc` "))
    assert acc_line.split(": ", 1)[1].startswith("retrain > finetune > scrub")
    assert "left out: bad-teaching ᵏ" in acc_line
    relearn = next(x for x in ranking.splitlines() if x.startswith("* `relearn/epochs` "))
    assert "scrub ᶜ" in relearn.split("left out: ")[1] and "finetune" in relearn
    assert not any(x.startswith("* `mia/lr_auc` ") and "finetune >" in x
                   for x in ranking.splitlines())


def test_a_workload_whose_original_is_under_the_floor_flags_every_row(tmp_path: Path) -> None:
    suite = _suite(tmp_path, min_test_acc=0.5)
    summary, refs = _results(suite, original_acc=0.35)
    flags = compute_flags(suite, summary, refs)
    for eid in summary:
        assert "floor" in {f.code for f in flags.of(eid, "test/acc")}, eid
    text = write_paper_report(suite, summary, refs, tmp_path / "out", plots=False).read_text()
    assert "min_test_acc" in text and "ᶠ" in text
    assert "left out: finetune ᶠ" in text


def test_a_row_under_the_floor_still_ranks_on_accuracy_not_on_forgetting(tmp_path: Path) -> None:
    suite = _suite(tmp_path, min_test_acc=0.5)
    summary, refs = _results(suite)
    summary["digits-class/finetune"] = _row(0.3, forget=0.0)
    flags = compute_flags(suite, summary, refs)
    assert flags.of("digits-class/finetune", "test/acc") == []           # accuracy is measured
    assert [f.code for f in flags.of("digits-class/finetune", "forget/acc")] == ["floor"]
    rows = dict(paper_rows(suite, summary, refs, METRICS))["digits-class"]
    ranking = rankings_markdown(suite, "digits-class", rows, refs, flags, METRICS)
    forget = next(x for x in ranking.splitlines() if x.startswith("* `forget/acc` "))
    assert "left out: finetune ᶠ" in forget
    acc = next(x for x in ranking.splitlines() if x.startswith("* `test/acc` "))
    assert acc.split(" (left out")[0].endswith("finetune")               # ranked, last


def test_nothing_flagged_means_no_markers(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    summary, refs = _results(suite, signal={"mia": 1.0, "forget": 1.0})
    summary["digits-class/bad-teaching"] = _row(0.7)
    summary["digits-class/scrub"] = _row(0.8)
    flags = compute_flags(suite, summary, refs)
    assert flags.rows == {} and flags.cells == {}
    table = dict(paper_tables_markdown(suite, summary, refs))["digits-class"]
    assert not any(m in table for m in "ˢᵏᶠ")
    assert [x.split(" |")[0] for x in table.splitlines() if "ᶜ" in x] == ["| (retrain)"]
