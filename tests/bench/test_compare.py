"""The regression check on synthetic numbers: tolerance, direction, relative vs absolute, σ."""

from __future__ import annotations

import math

import pytest

from raysweep.bench.baseline import (
    Stat,
    aggregate,
    compare,
    compare_one,
    read_pinned,
    regressions,
    summarize,
    write_pinned,
)
from raysweep.bench.suite import Tolerance
from raysweep.errors import ConfigError

LOWER = Tolerance(direction="lower_is_better", abs=0.05)
HIGHER = Tolerance(direction="higher_is_better", abs=0.03)


def s(*values: float) -> Stat:
    return aggregate(values)


def test_aggregate_mean_sample_std() -> None:
    st = aggregate([1.0, 2.0, 3.0])
    assert st.mean == 2.0 and st.std == pytest.approx(1.0) and st.n == 3
    assert aggregate([4.0]).std == 0.0
    assert aggregate([float("nan"), 1.0]).n == 1
    assert aggregate([]).n == 0


def test_summarize_groups_metrics_per_entry() -> None:
    out = summarize({"a": [{"x": 1.0, "y": 2.0}, {"x": 3.0}], "b": []})
    assert out["a"]["x"].mean == 2.0 and out["a"]["y"].n == 1 and out["b"] == {}


@pytest.mark.parametrize(("tol", "base", "cur", "status"), [
    # forget/acc must not rise more than 0.05 above the baseline
    (LOWER, s(0.10, 0.12), s(0.14, 0.16), "ok"),            # +0.04: within
    (LOWER, s(0.10, 0.12), s(0.20, 0.22), "regressed"),     # +0.10
    (LOWER, s(0.10, 0.12), s(0.01, 0.01), "improved"),      # -0.10
    # test accuracy must not drop more than 0.03
    (HIGHER, s(0.95, 0.95), s(0.93, 0.93), "ok"),
    (HIGHER, s(0.95, 0.95), s(0.90, 0.90), "regressed"),
    (HIGHER, s(0.95, 0.95), s(0.99, 0.99), "improved"),
    (HIGHER, s(0.95, 0.95), s(0.5,), "regressed"),
    # exactly at the limit passes
    (Tolerance(direction="higher_is_better", abs=0.25), s(1.0), s(0.75), "ok"),
])
def test_direction_and_absolute_tolerance(tol: Tolerance, base: Stat, cur: Stat,
                                          status: str) -> None:
    assert compare_one("e", "m", tol, base, cur).status == status


def test_relative_tolerance_scales_with_baseline() -> None:
    rel = Tolerance(direction="lower_is_better", rel=0.1)          # 10% of |baseline|
    assert compare_one("e", "t", rel, s(10.0), s(10.9)).status == "ok"
    assert compare_one("e", "t", rel, s(10.0), s(11.2)).status == "regressed"
    assert compare_one("e", "t", rel, s(1.0), s(1.2)).status == "regressed"
    both = Tolerance(direction="lower_is_better", abs=0.5, rel=0.1)  # the larger limit applies
    row = compare_one("e", "t", both, s(1.0), s(1.4))
    assert row.status == "ok" and row.allowed == pytest.approx(0.5)
    row = compare_one("e", "t", both, s(10.0), s(10.9))
    assert row.status == "ok" and row.allowed == pytest.approx(1.0)


def test_target_direction_measures_distance() -> None:
    tol = Tolerance(direction="target", target=0.5, abs=0.05)
    assert compare_one("e", "mia", tol, s(0.52), s(0.45)).status == "ok"        # 0.02 -> 0.05
    row = compare_one("e", "mia", tol, s(0.52), s(0.40))                        # 0.02 -> 0.10
    assert row.status == "regressed" and row.worse_by == pytest.approx(0.08)
    assert compare_one("e", "mia", tol, s(0.70), s(0.52)).status == "improved"


def test_sigma_and_min_sigma() -> None:
    base, cur = s(0.10, 0.30), s(0.30, 0.50)     # std 0.1414 each, delta +0.2
    row = compare_one("e", "m", LOWER, base, cur)
    assert row.status == "regressed"
    assert row.sigma == pytest.approx(0.2 / math.sqrt(0.02))
    noisy = Tolerance(direction="lower_is_better", abs=0.05, min_sigma=2.0)
    assert compare_one("e", "m", noisy, base, cur).status == "ok"               # 1.4σ < 2σ
    assert compare_one("e", "m", LOWER, s(0.1, 0.1), s(0.3, 0.3)).sigma == math.inf
    assert math.isnan(compare_one("e", "m", LOWER, Stat(0.1, float("nan"), 1),
                                  Stat(0.3, float("nan"), 1)).sigma)


def test_compare_reports_rows_missing_and_new() -> None:
    tols = {"ssd": {"forget/acc": LOWER, "test/acc": HIGHER, "zrf": HIGHER},
            "scrub": {"forget/acc": LOWER},
            "fresh": {"forget/acc": LOWER}}
    baseline = {"ssd": {"forget/acc": s(0.0, 0.0), "test/acc": s(0.9, 0.92)},
                "scrub": {"forget/acc": s(0.3, 0.3)}}
    current = {"ssd": {"forget/acc": s(1.0, 1.0), "test/acc": s(0.91, 0.91)},
               "scrub": {},
               "fresh": {"forget/acc": s(0.5)}}
    rows = compare(current, baseline, tols)
    by = {(r.entry, r.metric): r for r in rows}
    assert ("ssd", "zrf") not in by                               # absent on both sides: skipped
    assert by[("ssd", "forget/acc")].status == "regressed"
    assert by[("ssd", "forget/acc")].delta == pytest.approx(1.0)
    assert by[("ssd", "test/acc")].status == "ok"
    assert by[("scrub", "forget/acc")].status == "missing"        # crashed now: fails
    assert by[("fresh", "forget/acc")].status == "new"            # no baseline: never fails
    bad = regressions(rows)
    assert [(r.entry, r.metric) for r in bad] == [("ssd", "forget/acc"), ("scrub", "forget/acc")]
    js = bad[0].to_json()
    assert js["sigma"] == "inf" and js["baseline"]["mean"] == 0.0


def test_pinned_roundtrip_and_bare_numbers(tmp_path) -> None:
    summary = {"digits-class/ssd": {"forget/acc": s(0.0, 0.1)}}
    for name in ("pin.json", "pin.yaml"):
        p = write_pinned(tmp_path / name, "smoke", summary, {"run_id": "abc"})
        back, meta = read_pinned(p)
        assert back["digits-class/ssd"]["forget/acc"].mean == pytest.approx(0.05)
        assert back["digits-class/ssd"]["forget/acc"].n == 2
        assert meta["suite"] == "smoke" and meta["source"]["run_id"] == "abc"
    hand = tmp_path / "hand.yaml"
    hand.write_text("entries:\n  digits-class/ssd:\n    forget/acc: 0.02\n")
    back, _ = read_pinned(hand)
    assert back["digits-class/ssd"]["forget/acc"].mean == 0.02
    row = compare_one("digits-class/ssd", "forget/acc", LOWER,
                      back["digits-class/ssd"]["forget/acc"], s(0.5, 0.5))
    assert row.status == "regressed" and not math.isnan(row.sigma)   # std known on one side
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries:\n  x:\n    forget/acc: high\n")
    with pytest.raises(ConfigError, match=r"entries\.x\.forget/acc: expected a number"):
        read_pinned(bad)
    with pytest.raises(ConfigError, match="needs an 'entries' mapping"):
        (tmp_path / "empty.json").write_text("{}")
        read_pinned(tmp_path / "empty.json")
