"""Leaderboards from tracked runs (pure Python; :mod:`raysweep.sweep.tracking` fetches the runs).

A leaderboard row is one *configuration* (method + sampled parameters) of one sweep, aggregated
over its seeds: every metric is the mean of the seeds' ``best/<metric>`` values (each trial
ranked by its best epoch, not its last) with ``<metric>:std`` beside it. By default only the best
configuration per workload x method is kept; the ``original`` and ``retrain`` reference rows of
each workload are always included.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from raysweep.errors import UserError
from raysweep.report import Column

__all__ = ["aggregate", "leaderboard", "pareto_front", "direction", "MAXIMIZE", "LEGEND", "legend",
           "leaderboard_columns", "parse_sort"]

#: Metrics where larger is better (everything else sorts ascending).
MAXIMIZE = frozenset({
    "test/acc", "retain/acc", "val/acc", "test/acc_retain_classes", "rel/retain_acc",
    "rel/test_acc", "test/precision_macro", "test/recall_macro", "test/f1_macro",
    "mia/catboost", "zrf", "heldout/acc/val", "heldout/acc/test",
})

#: The legend printed under every leaderboard: which split chose, which split is shown.
LEGEND = ("Obj (val) = the oracle-referenced objective on the val split, which selected and "
          "ranks each configuration (the oracle scores 0); every other column is measured on "
          "test (Acc_* in %, AUC = loss attack on D_f vs matched held-out samples, JS→RT = JS "
          "divergence to the oracle on D_f, Probe = feature probe, Cost/RT = sample-passes / "
          "the oracle's)")
REFERENCES = ("original", "retrain")


def direction(metric: str) -> str:
    return "max" if metric in MAXIMIZE else "min"


def parse_sort(text: str) -> tuple[str, str]:
    """``metric``, ``metric:asc|desc|min|max`` -> (metric, "min"|"max")."""
    name, _, how = text.partition(":")
    if not how:
        return name, direction(name)
    how = how.lower()
    if how in ("asc", "min"):
        return name, "min"
    if how in ("desc", "max"):
        return name, "max"
    raise UserError(f"--sort {text!r}: the suffix must be asc, desc, min or max")


def _best_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k[len("best/"):]: v for k, v in metrics.items() if k.startswith("best/")}


def aggregate(runs: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(configuration rows, reference rows)`` from run records (see ``tracking.fetch_runs``)."""
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    refs: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in runs:
        tags = r["tags"]
        kind = tags.get("raysweep.kind")
        workload = tags.get("raysweep.workload", "?")
        method = tags.get("raysweep.method", "?")
        if kind == "reference":
            key = (workload, method)
            if key not in refs or r["start"] > refs[key]["start"]:
                refs[key] = r
            continue
        if kind != "trial" or r["status"] != "FINISHED":
            continue
        ch = tags.get("raysweep.config_hash", r["run_id"])
        groups[(tags.get("raysweep.sweep_id", ""), workload, method, ch)].append(r)
    rows = []
    for (sweep, workload, method, _), members in groups.items():
        members = sorted(members, key=lambda m: int(m["tags"].get("raysweep.seed", 0)))
        per_key: dict[str, list[float]] = defaultdict(list)
        for m in members:
            for k, v in _best_metrics(m["metrics"]).items():
                if math.isfinite(v):
                    per_key[k].append(v)
        row: dict[str, Any] = {
            "workload": workload, "method": method, "kind": "trial", "sweep_id": sweep,
            "run_id": members[0]["run_id"], "run_ids": [m["run_id"] for m in members],
            "trial_id": members[0]["tags"].get("raysweep.trial_id", ""),
            "n_seeds": len(members),
            "seeds": [int(m["tags"].get("raysweep.seed", 0)) for m in members],
            "params": _params(members[0]),
            "sort_key": members[0]["tags"].get("raysweep.sort_key", "objective"),
            "selection_split": members[0]["tags"].get("raysweep.selection_split", "test (old)"),
            "no_signal_terms": members[0]["tags"].get("raysweep.no_signal_terms"),
        }
        for k, vals in per_key.items():
            row[k] = statistics.fmean(vals)
            if len(vals) > 1:
                row[k + ":std"] = statistics.stdev(vals)
        rows.append(row)
    ref_rows = []
    for (workload, method), r in sorted(refs.items(), key=lambda kv: (kv[0][0], REFERENCES.index(kv[0][1]) if kv[0][1] in REFERENCES else 9)):
        ref_rows.append({"workload": workload, "method": method, "kind": "reference",
                         "sweep_id": r["tags"].get("raysweep.sweep_id", ""), "run_id": r["run_id"],
                         "run_ids": [r["run_id"]], "n_seeds": 1, "params": {},
                         **_best_metrics(r["metrics"])})
    return rows, ref_rows


def _params(run: Mapping[str, Any]) -> dict[str, Any]:
    import json

    raw = run["tags"].get("raysweep.params_json")
    if raw:
        try:
            return dict(json.loads(raw))
        except ValueError:
            pass
    return {k: v for k, v in run["params"].items() if k not in ("method", "seed")}


def _sort_value(row: Mapping[str, Any], metric: str, mode: str) -> float:
    v = row.get(metric)
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return math.inf
    return v if mode == "min" else -v


def pareto_front(rows: Sequence[dict[str, Any]], metrics: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The rows no other row dominates on ``metrics`` ([(name, "min"|"max"), ...])."""
    def vec(r: Mapping[str, Any]) -> list[float] | None:
        out = []
        for m, mode in metrics:
            v = r.get(m)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return None
            out.append(v if mode == "min" else -v)
        return out

    cands = [(r, vec(r)) for r in rows]
    cands = [(r, v) for r, v in cands if v is not None]
    front = []
    for r, v in cands:
        dominated = any(all(a <= b for a, b in zip(w, v)) and any(a < b for a, b in zip(w, v))
                        for _, w in cands)
        if not dominated:
            front.append(r)
    return front


def leaderboard(runs: Iterable[Mapping[str, Any]], *, workload: str | None = None,
                method: str | None = None, sort: str | None = None,
                pareto: Sequence[str] | None = None, top: int | None = None,
                all_configs: bool = False) -> list[dict[str, Any]]:
    """Reference rows first, then the best configuration per workload x method (ranked)."""
    rows, refs = aggregate(runs)
    if workload:
        rows = [r for r in rows if r["workload"] == workload]
        refs = [r for r in refs if r["workload"] == workload]
    if method:
        rows = [r for r in rows if r["method"] == method]
    if sort:
        metric, mode = parse_sort(sort)
    else:
        keys = {r["sort_key"] for r in rows} or {"objective"}
        metric = "objective" if "objective" in keys or len(keys) > 1 else keys.pop()
        mode = "min" if metric == "objective" else direction(metric)
    if rows and not any(metric in r for r in rows):
        known = sorted({k for r in rows for k in r if "/" in k or k in ("objective", "zrf")})
        from raysweep.errors import did_you_mean

        raise UserError(f"--sort {metric!r}: no such metric in these runs"
                        f"{did_you_mean(metric, known)}")
    if pareto:
        specs = [parse_sort(p) for p in pareto]
        front = []
        for wl in sorted({r["workload"] for r in rows}):
            front += pareto_front([r for r in rows if r["workload"] == wl], specs)
        rows = front
    elif not all_configs:
        best: dict[tuple[str, str], dict[str, Any]] = {}
        for r in sorted(rows, key=lambda r: _sort_value(r, metric, mode)):
            best.setdefault((r["workload"], r["method"]), r)
        rows = list(best.values())
    rows.sort(key=lambda r: (r["workload"], _sort_value(r, metric, mode)))
    if top is not None:
        kept: dict[str, int] = defaultdict(int)
        limited = []
        for r in rows:
            if kept[r["workload"]] < top:
                limited.append(r)
                kept[r["workload"]] += 1
        rows = limited
    rank: dict[str, int] = defaultdict(int)
    for r in rows:
        rank[r["workload"]] += 1
        r["rank"] = rank[r["workload"]]
    out = []
    for wl in sorted({r["workload"] for r in rows} | {r["workload"] for r in refs}):
        out += [r for r in refs if r["workload"] == wl]
        out += [r for r in rows if r["workload"] == wl]
    for r in out:
        r["sort"] = f"{metric}:{mode}"
    return out


def legend(rows: Sequence[Mapping[str, Any]]) -> str:
    """:data:`LEGEND` plus the seeds, the selection split and the terms without signal."""
    trials = [r for r in rows if r.get("kind") == "trial"]
    seeds = sorted({s for r in trials for s in r.get("seeds", [])})
    splits = sorted({str(r.get("selection_split")) for r in trials})
    weak = sorted({t for r in trials for t in str(r.get("no_signal_terms") or "").split(",") if t})
    parts = [LEGEND + "."]
    if trials:
        parts.append(f"Selection split: {', '.join(splits)}; seeds: {seeds}.")
    if weak:
        parts.append(f"Objective terms without signal on this workload (noise): {', '.join(weak)}.")
    return " ".join(parts)


def leaderboard_columns(rows: Sequence[Mapping[str, Any]], sort_metric: str = "objective") -> list[Column]:
    class_forgetting = any("test/acc_retain_classes" in r for r in rows)
    acc_t = "test/acc_retain_classes" if class_forgetting else "test/acc"
    cols = []
    if len({r.get("workload") for r in rows}) > 1:
        cols.append(Column("Workload", "workload", "{}"))
    if any("objective" in r for r in rows):
        cols.append(Column("Obj (val)", "objective", "{:.4f}"))
    if any("objective/test" in r for r in rows):
        cols.append(Column("Obj (test)", "objective/test", "{:.4f}"))
    if sort_metric not in ("objective", "objective/test", acc_t, "retain/acc", "forget/acc",
                           "mia/auc/test", "dist/js", "cost/ratio"):
        cols.append(Column(sort_metric, sort_metric, "{:.4f}"))
    cols += [
        Column("Acc_t", acc_t, "{:.2f}", 100),
        Column("Acc_r", "retain/acc", "{:.2f}", 100),
        Column("Acc_f", "forget/acc", "{:.2f}", 100),
        Column("AUC (test)", "mia/auc/test", "{:.3f}"),
        Column("JS→RT", "dist/js", "{:.3f}"),
        Column("Probe (test)", "probe/test", "{:.3f}"),
        Column("Cost/RT", "cost/ratio", "{:.3f}"),
        Column("Epochs", "epochs", "{:.0f}"),
        Column("Seeds", "n_seeds", "{:.0f}"),
        _Prefix("Run", "run_id", "{}"),
    ]
    return cols


class _Prefix(Column):
    """A column showing the first 8 characters (MLflow run ids; any unique prefix works)."""

    def cell(self, row: dict[str, Any]) -> str:
        return str(row.get(self.key, ""))[:8]
