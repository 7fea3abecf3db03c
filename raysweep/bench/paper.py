"""Paper-reproduction reports: default vs tuned, per method, as Markdown tables and plots.

A paper suite (``search_spaces/suites/paper-*.yaml``) has, for every method on every workload, an
entry at the method's paper defaults (``<workload>/<method>``) and a ``config: tuned`` entry
under the same epoch budget (``<workload>/<method>@tuned``). :func:`write_paper_report` turns the
``summary.json`` that ``raysweep bench run`` writes into ``<out>/README.md``:

* one table per workload (scenario): the original and retrained references, then for every method
  a ``default`` and a ``tuned`` row with the seed mean ± 95% CI half-width (Student t; one seed:
  no interval) of each of the suite's ``report_metrics`` (the paper's columns);
* ``<workload>.png``: per metric, the default and tuned bars of every method side by side (error
  bars: the 95% CI of the mean; dots: the seeds; dashed line: the retrained model);
* ``across-workloads.png`` when the suite has several workloads: each metric's seed mean per
  method and config across the workloads (e.g. forget fraction or number of forgotten classes);
* flags (:mod:`raysweep.bench.flags`): censored, no-signal, constant-predictor and below-floor
  values carry a marker (legend under the stats legend) and a flags column, and each workload's
  rankings (best first by seed mean, per column with a known direction, :data:`METRIC_GOALS`)
  leave them out;
* the verdict table of the suite's claims file (:mod:`raysweep.bench.claims`) and the paper
  values the ``default`` rows ran, each with its source (the suite's ``paper_defaults``);
* the configs the tuned entries ran, and the failed runs;
* the protocol: selection split (val), report split (test), evaluation and tuning seeds, seed
  scope.

``raysweep bench paper SUITE...`` runs the suites and writes these reports (see the CLI); the same
function regenerates them from a saved ``summary.json`` without training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raysweep.bench.baseline import Stat, Summary, summary_from_json
from raysweep.bench.claims import judge, verdict_table_markdown
from raysweep.bench.flags import FLAG_LEGEND, Flags, compute_flags, reference_cell_flags
from raysweep.bench.report import (
    STAT_LABEL,
    STAT_LEGEND,
    file_slug,
    fmt_num,
    fmt_stat,
    protocol_rows,
    pyplot,
)
from raysweep.methods import get_method
from raysweep.metrics.registry import METRICS

if TYPE_CHECKING:
    from raysweep.bench.claims import Verdict
    from raysweep.bench.suite import Suite

__all__ = ["PaperRow", "paper_rows", "paper_tables_markdown", "write_paper_report",
           "load_summary_json", "METRIC_LABELS", "METRIC_GOALS", "rankings_markdown",
           "paper_defaults_markdown", "verdicts"]

# Metric key -> the paper's column name (arrow: which way is better; "→ oracle": the retrained
# oracle's value is the target, which is 0 for class forgetting and not for random forgetting).
METRIC_LABELS: dict[str, str] = {
    "test/acc_retain_classes": "Acc_t (retained classes) ↑",
    "test/acc": "test acc ↑",
    "rel/retain_acc": "RelAcc_r (% of original) ↑",  # Acc_r is absolute (raysweep.report)
    "rel/forget_acc": "RelAcc_f (% of original) → oracle",
    "zrf": "ZRF ↑",
    "mia/member_rate": "MIA (member rate) → oracle",
    "mia/lr_auc": "MIA AUC (→0.5)",
    "mia/catboost": "CatBoost MIA",
    "sape/acc_err_oracle": "AccErr vs oracle ↓",
    "sape/acc_dis": "AccDis ↓",
    "sape/acc_err_original": "AccErr vs original ↓",
    "js/original": "JS to original",
    "forget/acc": "forget acc",
    "retain/acc": "retain acc ↑",
    "time/seconds": "time (s) ↓",
    "relearn/epochs": "relearn (epochs) ↑",
    "time/ratio": "time / retrain ↓",
}


@dataclass
class PaperRow:
    method: str
    config: str                       # default | pinned | tuned | (reference)
    entry: str
    stats: dict[str, Stat | None] = field(default_factory=dict)


def load_summary_json(path: str | Path) -> dict[str, Any]:
    """``summary.json`` of a bench run -> {summary, references, configs, errors, meta}."""
    doc = json.loads(Path(path).read_text())
    entries = doc.get("entries") or {}
    summary = summary_from_json({e: v.get("metrics") or {} for e, v in entries.items()},
                                f"{path}: entries")
    return {"summary": summary, "references": doc.get("references") or {},
            "reference_seeds": (doc.get("protocol") or {}).get("reference_seeds") or {},
            "configs": {e: ({**(v.get("config") or {}), "(stopped at epoch)": v["stop_epoch"]}
                            if v.get("stop_epoch") is not None else v.get("config") or {})
                        for e, v in entries.items()},
            "errors": doc.get("errors") or [], "doc": doc}


def paper_rows(suite: Suite, summary: Summary,
               references: Mapping[str, Mapping[str, Mapping[str, float]]],
               metrics: list[str]) -> list[tuple[str, list[PaperRow]]]:
    """Per workload: reference rows, then each method's default row followed by its tuned row."""
    out: list[tuple[str, list[PaperRow]]] = []
    for wname in dict.fromkeys(e.workload.name for e in suite.entries):
        rows: list[PaperRow] = []
        for ref in ("original", "retrain"):
            vals = references.get(wname, {}).get(ref, {})
            if vals:
                rows.append(PaperRow(f"({ref})", "reference", ref, {
                    m: (Stat(float(vals[m]), float("nan"), 1, (float(vals[m]),))
                        if vals.get(m) is not None else None) for m in metrics}))
        entries = [e for e in suite.entries if e.workload.name == wname]
        order = {"default": 0, "pinned": 1, "tuned": 2}
        methods = list(dict.fromkeys(e.method for e in entries))
        for method in methods:
            for e in sorted((x for x in entries if x.method == method),
                            key=lambda x: order[x.config_kind]):
                stats = summary.get(e.id, {})
                rows.append(PaperRow(method, e.config_kind, e.id,
                                     {m: stats.get(m) for m in metrics}))
        out.append((wname, rows))
    return out


def _cell(s: Stat | None, *, reference: bool = False) -> str:
    if s is None:
        return "-"
    # A reference row is one model (the original, the oracle), not a seed statistic.
    return fmt_num(s.mean) if reference else fmt_stat(s)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join(["---"] * 2 + ["--:"] * (len(headers) - 2)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def paper_tables_markdown(suite: Suite, summary: Summary, references: Mapping[str, Any],
                          metrics: list[str] | None = None, flags: Flags | None = None
                          ) -> list[tuple[str, str]]:
    """Per workload: (name, Markdown table) with method / config / n / flags / one column per
    metric; a flagged cell carries its marker (:data:`raysweep.bench.flags.FLAG_LEGEND`)."""
    metrics = metrics or suite.report_metrics()
    flags = flags if flags is not None else compute_flags(suite, summary, references)
    # Drop columns no row has (e.g. Acc_t on retained classes for random forgetting).
    out = []
    for wname, rows in paper_rows(suite, summary, references, metrics):
        cols = [m for m in metrics if any(r.stats.get(m) is not None for r in rows)]
        # The flags column comes last, so that a row reads as before when nothing is flagged.
        headers = ["method", "config", "seeds",
                   *(METRIC_LABELS.get(m, m) + f" `{m}`" for m in cols), "flags"]
        body = []
        for r in rows:
            ref = r.config == "reference"
            n = max((s.n for s in r.stats.values() if s is not None), default=0)
            cells = []
            for m in cols:
                text = _cell(r.stats.get(m), reference=ref)
                mark = (reference_cell_flags(suite, references, wname, r.entry, m) if ref
                        else flags.markers(r.entry, m))
                cells.append(f"{text} {mark}" if mark and text != "-" else text)
            body.append([r.method, r.config, "-" if ref else str(n), *cells,
                         "" if ref else flags.markers(r.entry)])
        out.append((wname, _md_table(headers, body)))
    return out


#: Which way each paper column is better, for the rankings: higher, lower, oracle (closer to the
#: retrained model's value) or a number (closer to it), as declared in
#: :mod:`raysweep.metrics.registry`. Columns without a direction (JS to the original: paper 004
#: reads it both ways) are not ranked.
METRIC_GOALS: dict[str, str | float] = {k: m.goal for k, m in METRICS.items()
                                        if m.goal is not None}


def _rank_score(mean: float, goal: str | float, retrain: float | None) -> float | None:
    if goal == "higher":
        return mean
    if goal == "lower":
        return -mean
    centre = retrain if goal == "oracle" else float(goal)
    return None if centre is None else -abs(mean - centre)


def rankings_markdown(suite: Suite, wname: str, rows: list[PaperRow],
                      references: Mapping[str, Any], flags: Flags, metrics: list[str]) -> str:
    """Per ranked column: the rows best first by seed mean, flagged ones left out (and named)."""
    retrain = references.get(wname, {}).get("retrain", {})
    lines = []
    for m in metrics:
        goal = METRIC_GOALS.get(m)
        if goal is None:
            continue
        ranked: list[tuple[float, str]] = []
        left_out: list[str] = []
        for r in rows:
            s = r.stats.get(m)
            if r.config == "reference" or s is None or s.n == 0 or not math.isfinite(s.mean):
                continue
            label = r.method if r.config == "default" else f"{r.method} ({r.config})"
            if flags.of(r.entry, m):
                left_out.append(f"{label} {flags.markers(r.entry) + flags.markers(r.entry, m)}")
                continue
            score = _rank_score(s.mean, goal, retrain.get(m))
            if score is not None:
                ranked.append((score, label))
        if not ranked and not left_out:
            continue
        order = " > ".join(label for _, label in sorted(ranked, key=lambda t: -t[0])) or "none"
        how = {"higher": "↑", "lower": "↓", "oracle": "→ retrain"}.get(str(goal), f"→ {goal}")
        line = f"* `{m}` ({how}): {order}"
        if left_out:
            line += f" (left out: {', '.join(left_out)})"
        lines.append(line)
    return "\n".join(lines)


def paper_defaults_markdown(suite: Suite) -> str:
    """The paper's hyperparameters the default rows ran, each with its source."""
    rows: list[list[str]] = []
    seen: set[tuple[str, str, str]] = set()
    for e in suite.entries:
        if e.config_kind == "tuned":
            continue
        fields = get_method(e.method).config.model_fields
        for k, src in e.sources.items():
            key = (e.workload.model.name, e.method, k)
            if key in seen:
                continue
            seen.add(key)
            default = fields[k].default if k in fields else None
            rows.append([e.method, f"`{e.workload.model.name}`", k, f"`{e.config[k]!r}`",
                         f"`{default!r}`", src])
    if not rows:
        return ""
    return _md_table(["method", "model", "field", "paper value", "method default", "source"], rows)


def verdicts(suite: Suite, summary: Summary, references: Mapping[str, Any],
             flags: Flags | None = None) -> list[Verdict]:
    """Every claim of the suite's claims file judged on these results (none without a file)."""
    if suite.claims is None:      # checked by load_suite, before anything ran
        return []

    flags = flags if flags is not None else compute_flags(suite, summary, references)
    return [judge(c, suite, summary, references, flags) for c in suite.claims.claims]


# ---------------------------------------------------------------------------------------- plots

_COLORS = {"default": "#7f7f7f", "pinned": "#bcbd22", "tuned": "#1f77b4"}


def _bars(suite: Suite, wname: str, rows: list[PaperRow], metrics: list[str], path: Path) -> bool:
    plt = pyplot()
    methods = list(dict.fromkeys(r.method for r in rows if r.config != "reference"))
    metrics = [m for m in metrics
               if any(r.stats.get(m) is not None for r in rows if r.config != "reference")]
    if not methods or not metrics:
        return False
    retrain = next((r for r in rows if r.entry == "retrain"), None)
    ncol = min(3, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    width = max(3.6, 0.7 * len(methods) + 1.4)
    fig, axes = plt.subplots(nrow, ncol, figsize=(width * ncol, 3.4 * nrow), squeeze=False)
    kinds = [k for k in ("default", "pinned", "tuned") if any(r.config == k for r in rows)]
    bw = 0.8 / max(1, len(kinds))
    for ax, metric in zip(axes.flat, metrics):
        for ki, kind in enumerate(kinds):
            for x, method in enumerate(methods):
                r = next((r for r in rows if r.method == method and r.config == kind), None)
                s = r.stats.get(metric) if r else None
                if s is None or s.n == 0:
                    continue
                xpos = x - 0.4 + bw * (ki + 0.5)
                ax.bar(xpos, s.mean, width=bw * 0.95, color=_COLORS[kind], alpha=0.85,
                       yerr=s.ci95, capsize=3, ecolor="#333333",
                       label=(kind if x == 0
                              or not ax.get_legend_handles_labels()[1].count(kind) else None))
                if s.values:
                    ax.scatter([xpos] * len(s.values), s.values, s=8, color="black", zorder=3)
        oracle = retrain.stats.get(metric) if retrain is not None else None
        if oracle is not None:
            ax.axhline(oracle.mean, color="#2ca02c", linestyle="--", linewidth=1,
                       label="retrain (reference)")
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=9)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    fig.legend(list(uniq.values()), list(uniq.keys()), loc="upper right", fontsize=8,
               frameon=False)
    fig.suptitle(f"{suite.name}: {wname} - paper default vs tuned "
                 f"({STAT_LABEL}, n=1: no interval; dots: seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.92, 0.95))
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return True


def _across(suite: Suite, tables: list[tuple[str, list[PaperRow]]], metrics: list[str],
            path: Path) -> bool:
    if len(tables) < 2:
        return False
    plt = pyplot()
    wnames = [w for w, _ in tables]
    metrics = [m for m in metrics if sum(any(r.stats.get(m) is not None and r.config != "reference"
                                             for r in rows) for _, rows in tables) >= 2]
    if not metrics:
        return False
    series = list(dict.fromkeys((r.method, r.config) for _, rows in tables for r in rows
                                if r.config != "reference"))
    ncol = min(2, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.4 * ncol, 3.4 * nrow), squeeze=False)
    cmap = plt.get_cmap("tab10")
    methods = list(dict.fromkeys(m for m, _ in series))
    for ax, metric in zip(axes.flat, metrics):
        for method, kind in series:
            xs, ys, es = [], [], []
            for x, (_, rows) in enumerate(tables):
                r = next((r for r in rows if r.method == method and r.config == kind), None)
                s = r.stats.get(metric) if r else None
                if s is not None and s.n:
                    xs.append(x)
                    ys.append(s.mean)
                    es.append(s.ci95 or 0.0)
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", markersize=3, capsize=2, linewidth=1.1,
                            color=cmap(methods.index(method) % 10),
                            linestyle="-" if kind == "tuned" else ":",
                            label=f"{method} ({kind})")
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=9)
        ax.set_xticks(range(len(wnames)))
        ax.set_xticklabels(wnames, rotation=20, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7,
               frameon=False)
    fig.suptitle(f"{suite.name}: across workloads ({STAT_LABEL}; solid: tuned, dotted: paper "
                 f"default)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05 + 0.025 * math.ceil(len(labels) / 4), 1, 0.96))
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return True


# -------------------------------------------------------------------------------------- writer

def write_paper_report(suite: Suite, summary: Summary, references: Mapping[str, Any],
                       out_dir: str | Path, *, configs: Mapping[str, Any] | None = None,
                       errors: list[Any] | None = None,
                       meta: Mapping[str, Any] | None = None, plots: bool = True,
                       reference_seeds: Mapping[str, list[int]] | None = None) -> Path:
    """Write ``<out_dir>/README.md`` (and the PNG plots); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = suite.report_metrics()
    tables = paper_rows(suite, summary, references, metrics)
    flags = compute_flags(suite, summary, references)
    md_tables = dict(paper_tables_markdown(suite, summary, references, metrics, flags))
    judged = verdicts(suite, summary, references, flags)
    scale = suite.scale or "as written"
    scale_desc = suite.config.scales.get(suite.scale or "", None)
    md = [f"# `{suite.name}`: paper defaults vs tuned", "",
          f"{suite.config.description}", "",
          f"* **scale: `{scale}`**"
          + (f" - {scale_desc.description}" if scale_desc and scale_desc.description else ""),
          f"* suite file: `{_rel(suite.source)}`; evaluation seeds: {_seeds(suite)}",
          f"* every method runs at the paper's own hyperparameters (`default`; listed with their "
          f"sources below, the method's defaults where the paper states none) and at the best "
          f"configuration of a "
          f"small TPE sweep (`tuned`, {_tune_desc(suite)}) under the same epoch budget "
          f"(`max_epochs` of the entry = the sweep's `budget.max_epochs`)"]
    for k, v in protocol_rows(suite, reference_seeds):
        md.append(f"* {k}: {v}")
    for k, v in (meta or {}).items():
        md.append(f"* {k}: {v}")
    ref_note = ("the mean over the evaluation seeds' workloads" if any(
        len(s) > 1 for s in (reference_seeds or {}).values()) else "seed of the workload")
    md += ["", f"{STAT_LEGEND} `-`: not defined for this workload. Reference rows: the original "
               f"model and the retrained oracle ({ref_note}). {FLAG_LEGEND}", ""]
    if judged:
        md += ["## Claims: verdicts", "",
               f"Generated from `{suite.config.claims}` (next to the suite file) and these "
               f"results: `better` claims by a Welch t-test over the evaluation seeds "
               f"(two-sided; against a reference row, a one-sample t-test), `within` claims by "
               f"the distance of our seed mean to the paper's number; flagged values are not "
               f"comparable.", "", verdict_table_markdown(judged), ""]
    defaults = paper_defaults_markdown(suite)
    if defaults:
        md += ["## The papers' hyperparameters (the `default` rows)", "",
               "Suite-level `paper_defaults`: each value overrides the method's own default in "
               "the `default` rows of the model named; any field not listed keeps the method's "
               "default.", "", defaults, ""]
    for wname, rows in tables:
        md += [f"## {wname}", "", _workload_line(suite, wname), "", md_tables[wname], ""]
        ranking = rankings_markdown(suite, wname, rows, references, flags, metrics)
        if ranking:
            md += ["Rankings by seed mean (flagged values left out):", "", ranking, ""]
        if plots and _bars(suite, wname, rows, metrics, out / f"{file_slug(wname)}.png"):
            md += [f"![{wname}]({file_slug(wname)}.png)", ""]
    if plots and _across(suite, tables, metrics, out / "across-workloads.png"):
        md += ["## Across workloads", "", "![across workloads](across-workloads.png)", ""]
    tuned = [(e.id, (configs or {}).get(e.id)) for e in suite.entries if e.config_kind == "tuned"]
    if any(c for _, c in tuned):
        md += ["## Configurations the tuned entries ran", "",
               _md_table(["entry", "config"],
                         [[eid, "`" + json.dumps(c, sort_keys=True, default=str) + "`"]
                          for eid, c in tuned if c]), ""]
    if errors:
        md += ["## Failed runs", ""]
        for err in errors:
            if isinstance(err, Mapping):
                md.append(f"- `{err.get('entry')}` seed {err.get('seed')}: {err.get('error')}")
            else:
                md.append(f"- {err}")
        md.append("")
    path = out / "README.md"
    path.write_text("\n".join(md))
    return path


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _seeds(suite: Suite) -> str:
    seeds = sorted({s for e in suite.entries for s in e.seeds})
    return ", ".join(map(str, seeds))


def _tune_desc(suite: Suite) -> str:
    specs = {(e.tune.num_samples, e.tune.algorithm, tuple(e.tune.seeds))
             for e in suite.entries if e.tune}
    if not specs:
        return "no tuned entries"
    return "; ".join(f"{n} trials, {alg}, tuning seed(s) {', '.join(map(str, seeds))}"
                     for n, alg, seeds in sorted(specs))


def _workload_line(suite: Suite, wname: str) -> str:
    e = next(e for e in suite.entries if e.workload.name == wname)
    w = e.workload
    d = w.dataset
    size = f"train_size {d.train_size or 'full'}, test_size {d.test_size or 'full'}"
    if d.image_size:
        size += f", image_size {d.image_size}"
    budgets = sorted({x.max_epochs for x in suite.entries
                      if x.workload.name == wname and x.max_epochs})
    return (f"`{w.dataset.name}` ({size}), model `{w.model.name}`, scenario "
            f"`{json.dumps(w.scenario.model_dump(mode='json', exclude_none=True))}`, "
            f"original trained {w.train.epochs} epochs; epoch budget per method: "
            f"{', '.join(map(str, budgets)) or 'none'}")
