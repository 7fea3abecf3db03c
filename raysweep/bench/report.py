"""The suite report: Markdown + self-contained HTML with plots.

Written to ``<out>/report.md`` (plots beside it as PNG files) and ``<out>/report.html`` (the same
content, plots embedded as base64 PNG, no external assets), plus ``<out>/summary.json`` (the
machine-readable result, the same document ``bench run --json`` prints).

Plots (matplotlib, Agg):

* ``bars-<workload>.png``: for each key metric a bar per entry at its seed mean, error bars of
  the 95% confidence interval of the mean, the seeds as dots, and the baseline mean as a black
  tick; bars of regressed metrics are red.
* ``trend.png``: each key metric's seed mean per entry over the suite's past runs in MLflow
  (oldest to newest, the current run last), band: the 95% CI, so drift shows before it crosses a
  tolerance.

Seed statistics print as mean ± 95% CI half-width (Student t: ``t.ppf(0.975, n-1) * sd /
sqrt(n)``; one seed: no interval, printed as ``(n=1, no CI)``). The regression check and its σ
column use the seed standard deviation (:func:`raysweep.bench.baseline.compare`). Every report
states its protocol (:func:`protocol_rows`): the selection split (val), the report split (test),
the evaluation and tuning seeds and the seed scope.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raysweep.bench.baseline import Comparison, Stat, Summary

if TYPE_CHECKING:
    from raysweep.bench.suite import Suite
    from raysweep.bench.tracking import SuiteRunInfo

__all__ = ["ReportData", "write_report", "fmt_stat", "fmt_num", "comparison_rows", "result_rows",
           "protocol_rows", "STAT_LABEL", "STAT_LEGEND"]

#: How seed statistics are labelled in titles, headers and legends.
STAT_LABEL = "seed mean ± 95% CI"
STAT_LEGEND = ("Cells: seed mean ± half-width of the 95% confidence interval of the mean "
               "(Student t: t(0.975, n-1) · sd / √n over the n seeds); `(n=1, no CI)`: a single "
               "seed, no interval. Regression checks (σ, min_sigma) use the seed standard "
               "deviation.")


@dataclass
class ReportData:
    suite: Suite
    status: str
    summary: Summary
    comparisons: list[Comparison]
    baseline: Summary
    baseline_label: str
    references: dict[str, dict[str, dict[str, float]]]
    meta: dict[str, Any]
    errors: list[tuple[str, int, str]] = field(default_factory=list)   # entry, seed, error
    history: list[tuple[SuiteRunInfo, Summary]] = field(default_factory=list)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference_seeds: dict[str, list[int]] = field(default_factory=dict)  # workload -> its seeds


def fmt_num(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "∞"
    return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.3e}"


def fmt_stat(s: Stat | None) -> str:
    """``mean ± 95% CI half-width``; ``mean (n=1, no CI)`` for one seed; the mean alone when
    the spread is unknown (a hand-pinned value)."""
    if s is None or s.n == 0:
        return "-"
    ci = s.ci95
    if ci is not None:
        return f"{fmt_num(s.mean)} ± {fmt_num(ci, 2)}"
    if s.n == 1:
        return f"{fmt_num(s.mean)} (n=1, no CI)"
    return fmt_num(s.mean)


def _err(s: Stat) -> float | None:
    """The error bar of a seed statistic in a plot: its 95% CI half-width."""
    return s.ci95


def protocol_rows(suite: Suite, reference_seeds: Mapping[str, list[int]] | None = None
                  ) -> list[list[str]]:
    """What a report states about its protocol: splits, seeds, seed scope."""
    proto = suite.protocol()
    seeds = ", ".join(map(str, proto["evaluation_seeds"]))
    per_entry = dict(proto["entries"].items())
    if len({tuple(p["evaluation_seeds"]) for p in per_entry.values()}) > 1:
        seeds += " (per entry: " + "; ".join(
            f"{eid}: {', '.join(map(str, p['evaluation_seeds']))}"
            for eid, p in per_entry.items()) + ")"
    tuning = proto["tuning_seeds"]
    tuning_text = (", ".join(map(str, tuning)) + " (the tuned entries' sweeps; never an "
                   "evaluation seed)") if tuning else "none (no tuned entries)"
    scope = proto["seed_scope"]
    scope_text = {
        "method": "method (a seed varies the unlearning run only; each workload is its file's, "
                  "prepared once)",
        "full": "full (a seed s also redraws the workload with seed s: data subset, forget set, "
                "original and oracle; a tuned entry tunes on the workload of its first tuning "
                "seed)",
    }.get(scope, "mixed (per entry: " + "; ".join(
        f"{eid}: {p['seed_scope']}" for eid, p in per_entry.items()) + ")")
    rows = [["selection split", f"{proto['selection_split']} (a tuned config is chosen on the "
                                "sweep's `objective`, metric keys ending in /val)"],
            ["report split", f"{proto['report_split']} (held-out metrics are reported on test: "
                             "keys ending in /test, `objective/test`; test never selects)"],
            ["evaluation seeds", seeds],
            ["tuning seeds", tuning_text],
            ["seed scope", scope_text]]
    multi = {w: s for w, s in (reference_seeds or {}).items() if len(s) > 1}
    if multi:
        rows.append(["reference rows", "; ".join(
            f"{w}: mean over workload seeds {', '.join(map(str, s))}" for w, s in multi.items())])
    return rows


def _signed(v: float) -> str:
    if math.isnan(v):
        return "-"
    return ("+" if v >= 0 else "") + fmt_num(v, 3)


def comparison_rows(rows: list[Comparison]) -> list[list[str]]:
    """Cells of the comparison table: entry, metric, baseline, current, delta, σ, allowed,
    status."""
    out = []
    for r in rows:
        sigma = "-" if math.isnan(r.sigma) else ("∞" if math.isinf(r.sigma) else f"{r.sigma:.1f}σ")
        better = {"higher_is_better": "↑", "lower_is_better": "↓",
                  "target": "→"}.get(r.direction, "")
        out.append([r.entry, f"{r.metric} {better}", fmt_stat(r.baseline), fmt_stat(r.current),
                    _signed(r.delta), sigma, fmt_num(r.allowed, 3), r.status.upper()
                    if r.failed else r.status])
    return out


COMPARISON_HEADERS = ["entry", "metric", "baseline (± 95% CI)", "current (± 95% CI)", "Δ", "σ",
                      "allowed", "status"]


def result_rows(suite: Suite, summary: Summary, references: dict[str, dict[str, dict[str, float]]],
                metrics: list[str]) -> list[tuple[str, list[list[str]]]]:
    """Per workload: rows for original, retrain and every entry with mean ± 95% CI per metric."""
    out = []
    for wname in dict.fromkeys(e.workload.name for e in suite.entries):
        rows = []
        for ref in ("original", "retrain"):
            vals = references.get(wname, {}).get(ref, {})
            rows.append([f"({ref})", *(fmt_num(vals.get(m)) for m in metrics)])
        for e in suite.entries:
            if e.workload.name != wname:
                continue
            stats = summary.get(e.id, {})
            rows.append([e.id, *(fmt_stat(stats.get(m)) for m in metrics)])
        out.append((wname, rows))
    return out


# ---------------------------------------------------------------------------------------- plots

def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (reports are files; no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def file_slug(text: str) -> str:
    """``text`` as a file-name part (a workload name in an image's name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _bars(data: ReportData, wname: str, metrics: list[str]) -> bytes | None:
    plt = pyplot()
    entries = [e for e in data.suite.entries if e.workload.name == wname]
    metrics = [m for m in metrics if any(m in data.summary.get(e.id, {}) for e in entries)]
    if not entries or not metrics:
        return None
    failed = {(c.entry, c.metric) for c in data.comparisons if c.failed}
    ncol = min(3, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    width = max(3.2, 0.55 * len(entries) + 1.6)
    fig, axes = plt.subplots(nrow, ncol, figsize=(width * ncol, 3.3 * nrow), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        xs = list(range(len(entries)))
        for x, e in zip(xs, entries):
            s = data.summary.get(e.id, {}).get(metric)
            if s is None:
                continue
            color = "#d62728" if (e.id, metric) in failed else "#1f77b4"
            ax.bar(x, s.mean, color=color, alpha=0.75, width=0.7,
                   yerr=_err(s), capsize=4, ecolor="#333333")
            if s.values:
                jitter = [x + (i - (len(s.values) - 1) / 2) * 0.08 for i in range(len(s.values))]
                ax.scatter(jitter, s.values, s=10, color="black", zorder=3)
            b = data.baseline.get(e.id, {}).get(metric)
            if b is not None and b.n:
                ax.hlines(b.mean, x - 0.4, x + 0.4, colors="black", linewidth=2, zorder=4)
        ax.set_title(metric, fontsize=10)
        ax.set_xticks(xs)
        ax.set_xticklabels([e.label for e in entries], rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{wname}: {STAT_LABEL} (n=1: no interval; dots: seeds, black tick: baseline, "
                 f"red: regressed)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _trend(data: ReportData, metrics: list[str]) -> bytes | None:
    plt = pyplot()
    hist = data.history
    if not hist:
        return None
    metrics = [m for m in metrics
               if any(m in s.get(e.id, {}) for _, s in hist for e in data.suite.entries)]
    if not metrics:
        return None
    ncol = min(2, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol, 3.3 * nrow), squeeze=False)
    labels = [f"{info.when}\n{info.git_sha[:7]}" for info, _ in hist]
    xs = list(range(len(hist)))
    for ax, metric in zip(axes.flat, metrics):
        for e in data.suite.entries:
            raw = [(x, s.get(e.id, {}).get(metric)) for x, (_, s) in zip(xs, hist)]
            pts = [(x, st) for x, st in raw if st is not None and st.n]
            if not pts:
                continue
            px = [x for x, _ in pts]
            py = [st.mean for _, st in pts]
            line = ax.plot(px, py, marker="o", markersize=3, linewidth=1.2, label=e.id)[0]
            lo = [st.mean - (_err(st) or 0.0) for _, st in pts]
            hi = [st.mean + (_err(st) or 0.0) for _, st in pts]
            ax.fill_between(px, lo, hi, color=line.get_color(), alpha=0.12, linewidth=0)
        for x, (info, _) in zip(xs, hist):
            if info.status == "regressed":
                ax.axvline(x, color="#d62728", alpha=0.25, linewidth=6)
        ax.set_title(metric, fontsize=10)
        step = max(1, len(xs) // 8)
        ax.set_xticks(xs[::step])
        ax.set_xticklabels(labels[::step], fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=7,
                   frameon=False)
    fig.suptitle(f"{data.suite.name}: seed means over the last {len(hist)} runs "
                 f"(band: ± 95% CI; red: regressed runs)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.02 * math.ceil(len(names) / 4), 1, 1))
    return _png(fig)


def _png(fig: Any) -> bytes:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# -------------------------------------------------------------------------------------- writers

def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(headers: list[str], rows: list[list[str]], bad_col: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cls = ""
        if bad_col is not None and r[bad_col] in ("REGRESSED", "MISSING"):
            cls = ' class="bad"'
        elif bad_col is not None and r[bad_col] == "improved":
            cls = ' class="good"'
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_VERDICT = {
    "baseline": "No baseline to compare with: this run is the baseline.",
    "passed": "Passed: every metric is within tolerance of the baseline.",
    "regressed": "REGRESSION: metrics got worse than the baseline allows.",
    "failed": "FAILED: some runs raised errors.",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;\
max-width:1200px;
padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.4em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
tr.bad td{background:#fde2e2} tr.good td{background:#e5f6e5}
.verdict{font-weight:bold;padding:0.5em 0.8em;border-radius:4px;display:inline-block}
.v-regressed,.v-failed{background:#fde2e2;color:#a40000} \
.v-passed{background:#e5f6e5;color:#1b5e20}
.v-baseline{background:#e8eef9;color:#1a3d7c}
img{max-width:100%;border:1px solid #eee;margin:0.4em 0}
code{background:#f5f5f5;padding:1px 4px}
"""


def write_report(data: ReportData, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, the PNG plots and ``summary.json`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = data.suite.report_metrics()
    images: list[tuple[str, str, bytes]] = []   # (title, file name, png)
    for wname in dict.fromkeys(e.workload.name for e in data.suite.entries):
        png = _bars(data, wname, metrics)
        if png:
            images.append((f"Per-method results: {wname}", f"bars-{file_slug(wname)}.png", png))
    png = _trend(data, metrics)
    if png:
        images.append((f"Trend over the last {len(data.history)} runs", "trend.png", png))
    paths: dict[str, Path] = {}
    for _, name, blob in images:
        (out / name).write_bytes(blob)
        paths[name] = out / name

    regressed = [c for c in data.comparisons if c.failed]
    meta_rows = [[k, str(v)] for k, v in data.meta.items()]
    proto_rows = protocol_rows(data.suite, data.reference_seeds)
    results = result_rows(data.suite, data.summary, data.references, metrics)
    # A value the suite took from a paper (paper_defaults) is shown with where the paper says it.
    sources = {e.id: e.sources for e in data.suite.entries if e.sources}
    cfg_headers = ["entry", "config"] + (["paper values (source)"] if sources else [])
    cfg_rows = [[eid, json.dumps(cfg, sort_keys=True)]
                + (["; ".join(f"{k}: {src}" for k, src in sources.get(eid, {}).items())]
                   if sources else [])
                for eid, cfg in data.configs.items()]

    # Markdown
    md = [f"# Regression suite `{data.suite.name}`", "",
          f"**{_VERDICT.get(data.status, data.status)}**",
          "", _md_table(["run", ""], meta_rows), "", "## Protocol", "",
          _md_table(["", ""], proto_rows), ""]
    if regressed:
        md += ["## What got worse", "",
               _md_table(COMPARISON_HEADERS, comparison_rows(regressed)), ""]
    if data.errors:
        md += (["## Failed runs", ""]
               + [f"- `{e}` seed {s}: {err}" for e, s, err in data.errors] + [""])
    md += [f"## Results ({STAT_LABEL})", "", STAT_LEGEND, ""]
    for wname, rows in results:
        md += [f"### {wname}", "", _md_table(["entry", *metrics], rows), ""]
    if data.comparisons:
        md += [f"## Comparison with the baseline ({data.baseline_label})", "",
               _md_table(COMPARISON_HEADERS, comparison_rows(data.comparisons)), "",
               "Δ = current − baseline seed mean; σ = |Δ| / pooled seed std (the intervals in "
               "the baseline and current columns are 95% CIs of the mean); a metric regresses "
               "when it moves in its worse direction (↑ higher is better, ↓ lower is better, "
               "→ closer to a target) by more than *allowed*.", ""]
    md += ["## Plots", ""]
    for title, name, _ in images:
        md += [f"### {title}", "", f"![{title}]({name})", ""]
    if cfg_rows:
        md += ["## Configs run", "", _md_table(cfg_headers, cfg_rows), ""]
    (out / "report.md").write_text("\n".join(md))
    paths["report.md"] = out / "report.md"

    # HTML (self-contained)
    h = ["<!doctype html><html><head><meta charset='utf-8'>",
         f"<title>raysweep bench: {html.escape(data.suite.name)}</title>"
         f"<style>{_CSS}</style></head><body>",
         f"<h1>Regression suite <code>{html.escape(data.suite.name)}</code></h1>",
         f"<p class='verdict v-{html.escape(data.status)}'>"
         f"{html.escape(_VERDICT.get(data.status, data.status))}</p>",
         _html_table(["run", ""], meta_rows), "<h2>Protocol</h2>",
         _html_table(["", ""], proto_rows)]
    if regressed:
        h += ["<h2>What got worse</h2>",
              _html_table(COMPARISON_HEADERS, comparison_rows(regressed), 7)]
    if data.errors:
        h += (["<h2>Failed runs</h2><ul>"]
              + [f"<li><code>{html.escape(e)}</code> seed {s}: {html.escape(err)}</li>"
                 for e, s, err in data.errors] + ["</ul>"])
    h += [f"<h2>Results ({STAT_LABEL})</h2>", f"<p>{html.escape(STAT_LEGEND)}</p>"]
    for wname, rows in results:
        h += [f"<h3>{html.escape(wname)}</h3>", _html_table(["entry", *metrics], rows)]
    if data.comparisons:
        h += [f"<h2>Comparison with the baseline ({html.escape(data.baseline_label)})</h2>",
              _html_table(COMPARISON_HEADERS, comparison_rows(data.comparisons), 7)]
    h += ["<h2>Plots</h2>"]
    for title, _, blob in images:
        b64 = base64.b64encode(blob).decode("ascii")
        h += [f"<h3>{html.escape(title)}</h3>",
              f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>"]
    if cfg_rows:
        h += ["<h2>Configs run</h2>", _html_table(cfg_headers, cfg_rows)]
    h += ["</body></html>"]
    (out / "report.html").write_text("\n".join(h))
    paths["report.html"] = out / "report.html"
    return paths
