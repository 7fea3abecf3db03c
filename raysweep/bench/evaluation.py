"""``raysweep bench eval``: what evaluation costs inside a trial, and whether cheaper
per-epoch evaluation picks the same epochs.

Configurations are drawn at random from a sweep's search space (the README's quickstart by
default). Each runs as a sweep trial (:func:`raysweep.engine.run_trial`, one thread,
as a trial runs) under three per-epoch evaluation modes, one after the other so that the
machine's load falls on all three alike:

* ``full``: every split and every metric after every epoch (what raysweep did before);
* ``selection``: D_f and all of val after every epoch, the chosen epoch in full at the end
  (the default; exactly the values ``full`` gives, so the picks must agree);
* ``subset``: as ``selection`` on a fixed stratified subset of ``--val-rows`` val rows.

Methods are deterministic under their seed and evaluation never touches their RNG, so the three
runs of a configuration train the same weights. Per mode the report gives the share of the
trial's wall time spent evaluating (``rs/eval_seconds / rs/trial_seconds``, summed over
configurations) and, against ``full``, the share of configurations whose chosen epoch is the same
and the objective lost when it is not (the full val objective of the epoch picked, minus that of
the epoch ``full`` picked).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysweep._console import info
from raysweep._provenance import machine
from raysweep.engine import run_trial
from raysweep.sweep.space import active, condition_order, load_sweep
from raysweep.sweep.trainable import make_plan

__all__ = ["MODES", "EvalBenchReport", "run_eval_bench", "sample_config", "write_report",
           "report_from_json"]

MODES: tuple[str, ...] = ("full", "selection", "subset")


@dataclass
class EvalBenchReport:
    settings: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "rows": self.rows, "summary": self.summary}


def sample_config(space: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One configuration drawn uniformly (log-uniformly on log scales) from a method's space;
    conditional parameters are drawn only when their condition holds."""
    chosen: dict[str, Any] = {}
    for name in condition_order(space):
        p = space[name]
        if not active(p, chosen):
            continue
        values = p.discrete_values(max_points=10_000)
        if values is not None and p.distribution in ("constant", "categorical"):
            chosen[name] = values[int(rng.integers(len(values)))]
            continue
        lo, hi = p.bounds()
        if p.log:
            x = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            x = float(rng.uniform(lo, hi))
        if p.step:
            x = lo + round((x - lo) / p.step) * p.step
        chosen[name] = round(x) if p.is_int else x
    return chosen


def run_eval_bench(sweep_path: str, *, configs: int = 10, val_rows: int = 400, seed: int = 0,
                   command: str = "raysweep bench eval") -> EvalBenchReport:
    """Run ``configs`` configurations of the sweep's space under the three modes."""
    from raysweep.workload import load_workload_config, prepare

    spec = load_sweep(sweep_path)
    workload = prepare(load_workload_config(spec.workload))
    assert workload is not None  # only ``cached_only`` returns None
    refs = workload.reference_metrics(catboost=spec.evaluation.catboost)
    torch.set_num_threads(1)  # as a trial with resources_per_trial.cpu = 1 runs
    plans = {}
    for mode in MODES:
        ev = {"per_epoch": "full" if mode == "full" else "selection",
              "selection_val_rows": val_rows if mode == "subset" else None}
        plans[mode] = make_plan(spec.model_copy(update={
            "evaluation": spec.evaluation.model_copy(update=ev)}), workload, refs)
    report = EvalBenchReport(settings={
        "command": command, "sweep": str(sweep_path), "workload": workload.name,
        "configs": configs, "val_rows": val_rows, "val_size": len(workload.splits["val"]),
        "seed": seed, "threads": 1, "budget": spec.budget.model_dump(exclude_none=True),
        "machine": machine(f"torch {torch.__version__}")})
    rng = np.random.default_rng(seed)
    spaces = spec.spaces()
    methods = sorted(spaces)
    trial_seed = spec.seeds[0]
    t0 = time.perf_counter()
    for i in range(configs):
        method = methods[int(rng.integers(len(methods)))]
        params = sample_config(spaces[method] or {}, rng)
        row: dict[str, Any] = {"method": method, "params": params}
        for mode in MODES:
            last = run_trial({"method": method, method: params, "seed": trial_seed}, workload,
                             plans[mode], report=lambda *a: None)
            row[mode] = {"best_epoch": int(last["best_epoch"]), "epochs": int(last["epoch"]),
                         "objective": float(last["best/objective"]),
                         "eval_seconds": float(last["rs/eval_seconds"]),
                         "trial_seconds": float(last["rs/trial_seconds"]),
                         "method_seconds": float(last["rs/method_seconds"])}
        report.rows.append(row)
        info(f"  [{i + 1}/{configs}] {method:<9} epochs {row['full']['epochs']}  best epoch "
             + "  ".join(f"{m} {row[m]['best_epoch']}" for m in MODES)
             + "  eval share " + "  ".join(
                 f"{m} {row[m]['eval_seconds'] / row[m]['trial_seconds']:.2f}" for m in MODES)
             + f"  ({time.perf_counter() - t0:.0f}s)")
    report.summary = summarise(report.rows)
    return report


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per mode: eval share of trial time (pooled), agreement with ``full``, mean regret."""
    out: dict[str, dict[str, float]] = {}
    for mode in MODES:
        ev = sum(r[mode]["eval_seconds"] for r in rows)
        tr = sum(r[mode]["trial_seconds"] for r in rows)
        multi = [r for r in rows if r["full"]["epochs"] > 1]
        agree = [r[mode]["best_epoch"] == r["full"]["best_epoch"] for r in multi]
        regret = [r[mode]["objective"] - r["full"]["objective"] for r in multi]
        out[mode] = {"eval_share": ev / tr if tr else math.nan,
                     "eval_seconds": ev, "trial_seconds": tr,
                     "multi_epoch_configs": float(len(multi)),
                     "agreement": float(np.mean(agree)) if agree else math.nan,
                     "mean_regret": float(np.mean(regret)) if regret else math.nan,
                     "max_regret": float(np.max(regret)) if regret else math.nan}
    return out


def _reading(report: EvalBenchReport) -> str:
    """One generated paragraph: what the table shows, and nothing else."""
    f, sel, sub = (report.summary[m] for m in MODES)
    n = int(f["multi_epoch_configs"])
    return (f"Against full evaluation ({f['eval_share']:.0%} of trial time), per-epoch selection "
            f"evaluation spent {sel['eval_share']:.0%} and picked the same epoch in "
            f"{sel['agreement']:.0%} of the {n} multi-epoch configurations (it computes the same "
            f"values, so any difference would be a bug); the {report.settings['val_rows']}-row "
            f"val subset spent {sub['eval_share']:.0%} and picked the same epoch in "
            f"{sub['agreement']:.0%}, losing {sub['mean_regret']:.4f} of val objective on average "
            f"(at most {sub['max_regret']:.4f}). One-epoch configurations (one-shot methods) are "
            "evaluated once, in full, in every mode.")


def write_report(report: EvalBenchReport, path: str | Path) -> Path:
    """The markdown page (with the JSON beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s = report.settings
    lines = [
        "# What evaluation costs inside a trial",
        "",
        f"Generated by `{s['command']}` on {s['machine']}; workload `{s['workload']}` "
        f"(val: {s['val_size']} rows), sweep `{s['sweep']}`, {s['configs']} configurations "
        f"drawn at random from its space (seed {s['seed']}), one thread per trial, budget "
        f"{s['budget']}. The machine was shared with other work, so read the shares as ratios "
        "within one run, not as absolute times.",
        "",
        "Modes: **full** evaluates every split and metric after every epoch (raysweep before "
        "this change); **selection** evaluates D_f and all of val after each epoch and the "
        "chosen epoch in full at the end (the default); **subset** does the same on a fixed "
        f"stratified subset of {s['val_rows']} val rows (`evaluation.selection_val_rows`).",
        "",
        "| mode | eval share of trial time | eval s | trial s | same epoch as full "
        "| mean / max objective lost |",
        "|---|---|---|---|---|---|",
    ]
    for mode, v in report.summary.items():
        n = int(v["multi_epoch_configs"])
        lines.append(f"| {mode} | {v['eval_share']:.1%} | {v['eval_seconds']:.1f} | "
                     f"{v['trial_seconds']:.1f} | {v['agreement']:.0%} of {n} | "
                     f"{v['mean_regret']:.4f} / {v['max_regret']:.4f} |")
    lines += ["", _reading(report)]
    lines += ["", "\"Same epoch\" counts configurations with more than one epoch; the objective "
              "lost is the full val objective of the epoch a mode picked minus that of the epoch "
              "full picked.", "", "## Configurations", "",
              "| method | epochs | best epoch (full / selection / subset) | objective "
              "(full / selection / subset) | eval share (full / selection / subset) |",
              "|---|---|---|---|---|"]
    for r in report.rows:
        lines.append(
            f"| {r['method']} | {r['full']['epochs']} | "
            + " / ".join(str(r[m]["best_epoch"]) for m in MODES) + " | "
            + " / ".join(f"{r[m]['objective']:.4f}" for m in MODES) + " | "
            + " / ".join(f"{r[m]['eval_seconds'] / r[m]['trial_seconds']:.2f}" for m in MODES)
            + " |")
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(report.to_json(), indent=2, default=str))
    return path


def report_from_json(path: str | Path) -> EvalBenchReport:
    """A report read back from the JSON that :func:`write_report` wrote beside its page."""
    doc = json.loads(Path(path).read_text())
    return EvalBenchReport(settings=doc["settings"], rows=doc["rows"], summary=doc["summary"])
