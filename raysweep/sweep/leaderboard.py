"""Leaderboards from tracked runs (pure Python; :mod:`raysweep.sweep.tracking` fetches the runs).

A leaderboard row is one *configuration* (method + sampled parameters) of one sweep, aggregated
over its seeds: every metric is the mean of the seeds' ``best/<metric>`` values (each trial
ranked by its best epoch, not its last) with ``<metric>:std`` beside it. By default only the best
configuration per workload x method is kept; the ``original`` and ``retrain`` reference rows of
each workload are always included.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from raysweep.errors import UserError, did_you_mean
from raysweep.metrics.registry import maximize_keys
from raysweep.report import METRICS, Column, column_legend, metric_column

__all__ = ["aggregate", "leaderboard", "pareto_front", "direction", "MAXIMIZE", "LEGEND", "legend",
           "leaderboard_columns", "parse_sort", "resolve_metric", "metric_keys"]

#: Metrics where larger is better (everything else sorts ascending): the registry's ``max`` keys.
MAXIMIZE = maximize_keys()

#: The legend's first sentence: which split chose, which split is shown.
LEGEND = ("Obj (val) selected and ranks each configuration; every other metric column is "
          "measured on test")
REFERENCES = ("original", "retrain")
#: Row keys that are bookkeeping, not metrics (never offered as --sort / --pareto keys).
_NOT_METRICS = frozenset({"n_trials", "rank", "seeds", "n_seeds", "budget_stopped"})


def metric_keys(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The metric keys present in ``rows`` (what ``--sort`` and ``--pareto`` accept)."""
    keys = {k for r in rows for k, v in r.items()
            if not k.endswith(":std") and k not in _NOT_METRICS
            and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return sorted(keys)


def resolve_metric(name: str, available: Sequence[str], option: str = "--sort") -> str:
    """A metric key from a key or a column label (``Acc_t``, ``Obj (val)``; any case), checked
    against the keys present; an unknown name is a :class:`UserError` listing the valid ones."""
    if name in available:
        return name
    low = name.lower()
    by_label = [m.key for m in METRICS.values()
                if low in (m.label.lower(), m.header.lower()) and m.key in available]
    if by_label:
        return by_label[0]

    labels = sorted({METRICS[k].label for k in available if k in METRICS})
    raise UserError(
        f"{option} {name!r}: no such metric in these runs"
        f"{did_you_mean(name, available)}; valid keys: {', '.join(available) or 'none'}"
        + (f" (or a column label: {', '.join(labels)})" if labels else "")
    )


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


def aggregate(
    runs: Iterable[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
            # Repeats of one seed (a space with nothing to search, run num_samples times) are
            # not independent seeds: count distinct seeds, and the trials apart.
            "n_seeds": len({int(m["tags"].get("raysweep.seed", 0)) for m in members}),
            "n_trials": len(members),
            "seeds": [int(m["tags"].get("raysweep.seed", 0)) for m in members],
            "budget_stopped": sum(1 for m in members if m["tags"].get("raysweep.stopped")),
            "objective_def": members[0]["tags"].get("raysweep.objective", ""),
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
    for (workload, method), r in sorted(
        refs.items(),
        key=lambda kv: (kv[0][0], REFERENCES.index(kv[0][1]) if kv[0][1] in REFERENCES else 9),
    ):
        ref_rows.append({"workload": workload, "method": method, "kind": "reference",
                         "sweep_id": r["tags"].get("raysweep.sweep_id", ""), "run_id": r["run_id"],
                         "run_ids": [r["run_id"]], "n_seeds": 1, "params": {},
                         "objective_def": r["tags"].get("raysweep.objective", ""),
                         **_best_metrics(r["metrics"])})
    return rows, ref_rows


def _params(run: Mapping[str, Any]) -> dict[str, Any]:
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


def pareto_front(
    rows: Sequence[dict[str, Any]], metrics: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The rows no other row dominates on ``metrics`` ([(name, "min"|"max"), ...])."""
    def vec(r: Mapping[str, Any]) -> list[float] | None:
        out = []
        for m, mode in metrics:
            v = r.get(m)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return None
            out.append(v if mode == "min" else -v)
        return out

    cands = [(r, v) for r in rows if (v := vec(r)) is not None]
    front = []
    for r, v in cands:
        dominated = any(all(a <= b for a, b in zip(w, v)) and any(a < b for a, b in zip(w, v))
                        for _, w in cands)
        if not dominated:
            front.append(r)
    return front


def _choose(option: str, value: str, known: Iterable[str]) -> None:
    """An unknown ``--workload`` / ``--method`` is an error naming the valid choices."""
    choices = sorted(set(known))
    if value not in choices:
        raise UserError(f"{option} {value!r}: no runs of it here{did_you_mean(value, choices)}; "
                        f"valid: {', '.join(choices) or 'none (run a sweep first)'}")


def _objective_groups(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Objective definition -> the sweeps that used it (trial rows only)."""
    groups: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.get("kind") == "trial":
            groups[str(r.get("objective_def") or "(not recorded)")].add(str(r.get("sweep_id")))
    return {k: sorted(v) for k, v in groups.items()}


def leaderboard(runs: Iterable[Mapping[str, Any]], *, workload: str | None = None,
                method: str | None = None, sort: str | None = None,
                pareto: Sequence[str] | None = None, top: int | None = None,
                all_configs: bool = False) -> list[dict[str, Any]]:
    """Reference rows first, then the best configuration per workload x method (ranked).

    Names are checked: an unknown workload, method, ``sort`` or ``pareto`` metric raises a
    :class:`~raysweep.errors.UserError` that lists the valid ones. Rows of sweeps whose
    objectives differ are never ranked by the objective together: that raises too, naming the
    sweeps and the fix (``--sweep``, or ``sort`` by a metric that means the same everywhere).
    """
    rows, refs = aggregate(runs)
    if workload:
        _choose("--workload", workload, [r["workload"] for r in rows + refs])
        rows = [r for r in rows if r["workload"] == workload]
        refs = [r for r in refs if r["workload"] == workload]
    if method:
        _choose("--method", method, [r["method"] for r in rows])
        rows = [r for r in rows if r["method"] == method]
    available = metric_keys(rows)
    if sort:
        name, mode = parse_sort(sort)
        metric = resolve_metric(name, available, "--sort") if rows else name
        if ":" not in sort:
            mode = direction(metric)
    else:
        keys = {r["sort_key"] for r in rows} or {"objective"}
        metric = "objective" if "objective" in keys or len(keys) > 1 else keys.pop()
        mode = "min" if metric == "objective" else direction(metric)
    if rows and not any(metric in r for r in rows):
        resolve_metric(metric, available, "--sort")
    objectives = _objective_groups(rows)
    ranks_by_objective = metric.startswith("objective") or (
        pareto is not None and any(p.split(":")[0].startswith("objective") for p in pareto))
    if len(objectives) > 1 and ranks_by_objective:
        which = "; ".join(f"{', '.join(sweeps)}: {obj}" for obj, sweeps in objectives.items())
        raise UserError(f"these runs come from sweeps with different objectives ({which}); "
                        f"their objective values do not compare: pick one with --sweep ID, or "
                        f"rank by a metric measured the same way everywhere (e.g. --sort "
                        f"test/acc or --sort mia/auc/test)")
    if pareto:
        specs = []
        for p in pareto:
            name, pmode = parse_sort(p)
            key = resolve_metric(name, available, "--pareto") if rows else name
            specs.append((key, pmode if ":" in p else direction(key)))
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


def mixed_objectives(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the trial rows were scored under more than one objective definition."""
    return len(_objective_groups(rows)) > 1


def legend(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column] | None = None) -> str:
    """The line under a leaderboard: what chose and what is shown, each column's meaning (from
    the metric declarations), the seeds, the objective, and the terms without signal."""
    trials = [r for r in rows if r.get("kind") == "trial"]
    seeds = sorted({s for r in trials for s in r.get("seeds", [])})
    splits = sorted({str(r.get("selection_split")) for r in trials})
    weak = sorted({t for r in trials for t in str(r.get("no_signal_terms") or "").split(",") if t})
    cols = list(columns) if columns is not None else leaderboard_columns(rows)
    parts = [LEGEND + "."]
    meanings = column_legend(cols)
    if meanings:
        parts.append(meanings + ".")
    objectives = _objective_groups(rows)
    if len(objectives) == 1:
        parts.append(f"Objective: {next(iter(objectives))}.")
    elif len(objectives) > 1:
        parts.append("Obj columns hidden: these sweeps use different objectives ("
                     + "; ".join(f"{', '.join(s)}: {o}" for o, s in objectives.items()) + ").")
    if trials:
        parts.append(f"Selection split: {', '.join(splits)}; seeds: {seeds}.")
    if any(r.get("n_trials", r.get("n_seeds", 1)) > r.get("n_seeds", 1) for r in trials):
        parts.append("Some configurations ran more than once per seed (nothing to search): "
                     "Seeds counts distinct seeds.")
    if weak:
        parts.append(
            f"Objective terms without signal on this workload (noise): {', '.join(weak)}."
        )
    return " ".join(parts)


def leaderboard_columns(
    rows: Sequence[Mapping[str, Any]], sort_metric: str = "objective"
) -> list[Column]:
    """The leaderboard's columns, labelled from :data:`raysweep.report.METRICS`."""
    class_forgetting = any("test/acc_retain_classes" in r for r in rows)
    acc_t = "test/acc_retain_classes" if class_forgetting else "test/acc"
    cols = []
    if len({r.get("workload") for r in rows}) > 1:
        cols.append(Column("Workload", "workload", "{}"))
    if len({r.get("sweep_id") for r in rows if r.get("kind") == "trial"}) > 1:
        cols.append(Column("Sweep", "sweep_id", "{}", help="the sweep the configuration ran in"))
    if not mixed_objectives(rows):
        for key in ("objective", "objective/test"):
            if any(key in r for r in rows):
                cols.append(metric_column(key))
    quality: tuple[str, ...] = (acc_t, "retain/acc", "forget/acc", "mia/auc/test", "dist/js",
                                "probe/test")
    if any("forget/verbatim" in r for r in rows):   # language models (raysweep.lm.metrics)
        quality = ("forget/verbatim", "forget/acc", "retain/acc", "forget/ppl", "test/ppl",
                   "mia/auc/test", "mia/mink_auc/test", "dist/js")
    shown = ("objective", "objective/test", *quality, "cost/ratio", "epochs")
    if sort_metric not in shown:
        cols.append(metric_column(sort_metric))
    cols += [metric_column(k) for k in (*quality, "cost/ratio", "epochs", "n_seeds")]
    if any(r.get("budget_stopped") for r in rows):
        cols.append(metric_column("budget_stopped"))
    cols.append(_Prefix("Run", "run_id", "{}", help="MLflow run id (first 8 characters; "
                        "--format csv/json print it whole)"))
    return cols


class _Prefix(Column):
    """A column showing the first 8 characters (MLflow run ids; any unique prefix works)."""

    def cell(self, row: dict[str, Any]) -> str:
        return str(row.get(self.key, ""))[:8]
