"""The report from synthetic results: Markdown, self-contained HTML with plots, no MLflow."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from raysweep.bench.baseline import aggregate, compare
from raysweep.bench.report import ReportData, write_report
from raysweep.bench.suite import load_suite
from raysweep.bench.tracking import SuiteRunInfo

#: The tests' copy of the smoke suite on the tiny digits workload (the shipped one memorises).
SMOKE = str(Path(__file__).parent / "suites" / "test-smoke.yaml")


def test_report_files_tables_and_embedded_plots(tmp_path: Path) -> None:
    suite = load_suite(SMOKE)
    ids = [e.id for e in suite.entries]
    base = {i: {"forget/acc": aggregate([0.0, 0.02]),
                "test/acc_retain_classes": aggregate([0.96, 0.95]),
                "time/seconds": aggregate([1.0, 1.2])} for i in ids}
    cur = {i: dict(v) for i, v in base.items()}
    cur[ids[0]]["forget/acc"] = aggregate([0.9, 1.0])
    rows = compare(cur, base, {e.id: e.tolerances for e in suite.entries})
    hist = [(SuiteRunInfo(f"{k:032x}", 1.7e9 + k * 3600, st, "abc1234", ""),
             base if k < 2 else cur)
            for k, st in enumerate(["baseline", "passed", "regressed"])]
    data = ReportData(suite=suite, status="regressed", summary=cur, comparisons=rows,
                      baseline=base, baseline_label="previous run",
                      meta={"status": "regressed", "git": "abc"},
                      references={"digits-class": {"original": {"forget/acc": 1.0},
                                                   "retrain": {"forget/acc": 0.0}}},
                      history=hist, configs={ids[0]: {"selection_weighting": 1000}})
    paths = write_report(data, tmp_path / "rep")
    assert {"report.md", "report.html", "bars-digits-class.png", "trend.png"} <= set(paths)
    md = paths["report.md"].read_text()
    assert "## What got worse" in md and "| digits-class/ssd | forget/acc ↓ |" in md
    assert "(original)" in md and "![" in md and "bars-digits-class.png" in md
    html = paths["report.html"].read_text()
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(imgs) == 2 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert "class=\"bad\"" in html and "REGRESSED" in html
    assert "src='http" not in html and "<script" not in html      # self-contained
