"""``run_suite``: run a suite, record it in MLflow, compare with a baseline, write the report.

Outcomes (``BenchResult.status`` → CLI exit code):

* ``baseline`` (0): nothing to compare with (first run of the suite); this run is the baseline.
* ``passed`` (0): every toleranced metric is within tolerance of the baseline.
* ``regressed`` (3): at least one metric got worse than its tolerance allows, or a metric the
  baseline has is missing now.
* ``failed`` (1): at least one entry × seed raised (a runtime failure, reported per run).

``summary.json`` (and ``--json``) states the protocol under ``protocol``: ``selection_split``
(val), ``report_split`` (test), ``evaluation_seeds``, ``tuning_seeds``, ``seed_scope`` (``mixed``
when entries differ) and per entry; every entry also carries its own ``seeds``,
``tuning_seeds`` and ``seed_scope``. The statistics are seed mean, std and n (the reports print
mean ± 95% CI; regression checks use the std).

Baseline references (``--baseline``): ``previous`` (default: the latest suite run in MLflow whose
status is ``baseline`` or ``passed``), an MLflow run id of a suite run, or a pinned file
(JSON/YAML written by ``raysweep bench baseline --pin``).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raysweep._console import info
from raysweep._provenance import git_sha
from raysweep._secrets import redact_uri
from raysweep._signals import sigterm_as_sigint
from raysweep.bench.baseline import (
    Comparison,
    Summary,
    aggregate,
    compare,
    read_pinned,
    regressions,
    summarize,
    summary_to_json,
    write_pinned,
)
from raysweep.errors import ConfigError
from raysweep.training import resolve_device

if TYPE_CHECKING:
    from raysweep.bench.suite import Entry, Suite
    from raysweep.workload import PreparedWorkload

__all__ = ["BenchResult", "ResolvedBaseline", "resolve_baseline", "run_suite", "pin_baseline",
           "default_out_dir", "EXIT_CODES"]

EXIT_CODES = {"baseline": 0, "passed": 0, "regressed": 3, "failed": 1}
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class ResolvedBaseline:
    summary: Summary | None      # None: nothing to compare with
    label: str                   # for humans: "previous run abc123 (2025-..., sha)"
    # ref, for the MLflow tag: "previous:<id>", "run:<id>", "file:<path>", "none"
    ref: str


@dataclass
class BenchResult:
    suite: str
    status: str
    run_id: str
    experiment_id: str
    summary: Summary
    comparisons: list[Comparison]
    baseline: ResolvedBaseline
    report_dir: Path | None
    errors: list[tuple[str, int, str]] = field(default_factory=list)
    seconds: float = 0.0
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    references: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    stop_epochs: dict[str, int] = field(default_factory=dict)  # tuned entry -> its best epoch
    finished: str = ""                # local time the run ended, "YYYY-MM-DD HH:MM"
    protocol: dict[str, Any] = field(default_factory=dict)   # Suite.protocol() + reference seeds

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)

    @property
    def regressions(self) -> list[Comparison]:
        return regressions(self.comparisons)

    def to_json(self) -> dict[str, Any]:
        from raysweep.bench.tracking import tracking_uri

        proto = {k: v for k, v in self.protocol.items() if k != "entries"}
        per_entry = self.protocol.get("entries") or {}
        return {
            "suite": self.suite, "status": self.status, "exit_code": self.exit_code,
            "run_id": self.run_id, "experiment_id": self.experiment_id,
            "tracking_uri": redact_uri(tracking_uri()),
            "baseline": {"ref": self.baseline.ref, "label": self.baseline.label},
            "report_dir": str(self.report_dir) if self.report_dir else None,
            "seconds": self.seconds, "finished": self.finished, "protocol": proto,
            "regressions": [c.to_json() for c in self.regressions],
            "comparisons": [c.to_json() for c in self.comparisons],
            "errors": [{"entry": e, "seed": s, "error": err} for e, s, err in self.errors],
            "entries": {e: {"config": self.configs.get(e, {}), "metrics": m,
                            **({"stop_epoch": self.stop_epochs[e]}
                               if e in self.stop_epochs else {}),
                            **({"seeds": per_entry[e]["evaluation_seeds"],
                                "tuning_seeds": per_entry[e]["tuning_seeds"],
                                "seed_scope": per_entry[e]["seed_scope"]}
                               if e in per_entry else {})}
                        for e, m in summary_to_json(self.summary).items()},
            "references": self.references,
        }


def resolve_baseline(suite: Suite, ref: str | None) -> ResolvedBaseline:
    """Turn ``--baseline`` into seed statistics (see the module docstring)."""
    from raysweep.bench import tracking

    if ref is None or ref == "previous":
        runs = tracking.suite_runs(suite.name, statuses=tracking.GOOD_STATUSES, limit=1)
        if not runs:
            return ResolvedBaseline(None, "none (first run of this suite)", "none")
        prev = runs[0]
        return ResolvedBaseline(tracking.summary_of(suite.name, prev.run_id),
                                f"previous run {prev.run_id[:8]} "
                                f"({prev.when}, {prev.git_sha[:7]})",
                                f"previous:{prev.run_id}")
    path = Path(ref)
    if path.is_file():
        summary, meta = read_pinned(path)
        pinned_suite = meta.get("suite")
        if pinned_suite and pinned_suite != suite.name:
            raise ConfigError(f"--baseline {ref}: pins suite {pinned_suite!r}, not {suite.name!r}")
        return ResolvedBaseline(summary, f"pinned values {path}", f"file:{path}")
    if _RUN_ID.match(ref):
        run, run_suite_name = tracking.find_suite_run(ref)
        if run_suite_name != suite.name:
            raise ConfigError(f"--baseline {ref}: a run of suite {run_suite_name!r}, "
                              f"not {suite.name!r}")
        return ResolvedBaseline(tracking.summary_of(suite.name, ref),
                                f"run {ref[:8]} ({run.when}, {run.git_sha[:7]})", f"run:{ref}")
    raise ConfigError(f"--baseline {ref!r}: expected 'previous', an MLflow run id (32 hex digits) "
                      f"or a pinned JSON/YAML file that exists")


def default_out_dir(suite: Suite, stamp: str | None = None) -> Path:
    return Path(".raysweep") / "bench" / suite.name / (stamp or time.strftime("%Y%m%d-%H%M%S"))


#: ``fq/*`` metric -> the forgetting-quality report row's field it takes.
FQ_METRICS = {"fq/quality": "forgetting_quality", "fq/score": "score",
              "fq/lira_auc": "lira_auc"}


def forgetting_quality_columns(suite: Suite, summary: dict[str, Any], *,
                               address: str | None = None,
                               device: str | None = None) -> dict[str, Any]:
    """With ``forgetting_quality:`` in the suite, score each workload's rows of a fixed config
    (``default`` and ``pinned``; a tuned config is known only per sweep) by
    forgetting quality from many oracles (:func:`raysweep.bench.forgetting.
    run_forgetting_quality`) and add the ``fq/*`` metrics to those rows of ``summary`` (one
    value per method: a population of ``k`` models, not a seed mean). Returns the reports by
    workload name ({} when the suite asks for none)."""
    spec = suite.config.forgetting_quality
    if spec is None:
        return {}
    from raysweep.bench.forgetting import run_forgetting_quality

    by_workload: dict[str, list[Entry]] = {}
    for e in suite.entries:
        if e.config_kind != "tuned" and (spec.workloads is None
                                           or e.workload.name in spec.workloads):
            by_workload.setdefault(e.workload.name, []).append(e)
    dev = str(resolve_device(device or suite.config.device))
    reports = {}
    for name, entries in by_workload.items():
        methods = list(dict.fromkeys(e.method for e in entries))
        report = run_forgetting_quality(
            entries[0].workload, methods=methods, k=spec.k,
            configs={e.method: e.config for e in entries}, seed=min(suite.config.seeds),
            device=dev, address=address)
        rows = {r["row"]: r for r in report.rows}
        for e in entries:
            row = rows.get(e.method) or {"error": "no row"}
            if row.get("error"):  # too many failed models: say so, the columns stay empty
                info(f"[yellow]forgetting quality of {e.id}: {row['error']}[/]")
            for key, field_name in FQ_METRICS.items():
                value = row.get(field_name)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    summary.setdefault(e.id, {})[key] = aggregate([value])
        reports[name] = report
    return reports


def run_suite(suite: Suite, *, baseline: str | None = None, address: str | None = None,
              out_dir: str | Path | None = None, device: str | None = None,
              tune: Callable[[Entry, PreparedWorkload], dict[str, Any]] | None = None,
              argv: list[str] | None = None) -> BenchResult:
    """Run every entry × seed, record it, compare, report. See the module docstring."""
    from raysweep.bench import tracking
    from raysweep.bench._run import execute
    from raysweep.bench.report import ReportData, write_report

    base = resolve_baseline(suite, baseline)   # before any training: a bad ref fails fast
    info(f"[bold]suite {suite.name}[/]: {len(suite.entries)} entries, {suite.runs()} runs; "
         f"baseline: {base.label}; MLflow {redact_uri(tracking.tracking_uri())}")
    sha = git_sha()
    recorder = tracking.SuiteRecorder(suite)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    recorder.start(git_sha=sha, baseline=base.ref, run_name=f"{suite.name}-{stamp}",
                   extra_tags={"raysweep.address": address or "in-process",
                               "raysweep.command": " ".join(argv or sys.argv)[:500]})
    try:
        with sigterm_as_sigint():  # a scheduler's SIGTERM ends the run KILLED, as Ctrl-C does
            ex = execute(suite, address=address, device=device, tune=tune)
        entries = {e.id: e for e in suite.entries}
        recorder.log_records(ex.records, entries, sha, ex.tuned)
        per_entry: dict[str, list[dict[str, float]]] = {e.id: [] for e in suite.entries}
        errors: list[tuple[str, int, str]] = []
        for rec in ex.records:
            if rec.error:
                errors.append((rec.entry, rec.seed, rec.error))
            else:
                per_entry[rec.entry].append(rec.metrics)
        summary = {k: v for k, v in summarize(per_entry).items() if v}
        fq_reports = forgetting_quality_columns(suite, summary, address=address, device=device)
        comparisons: list[Comparison] = []
        if base.summary is not None:
            comparisons = compare(summary, base.summary,
                                  {e.id: e.tolerances for e in suite.entries})
        if errors:
            status = "failed"
        elif regressions(comparisons):
            status = "regressed"
        elif base.summary is None:
            status = "baseline"
        else:
            status = "passed"
        out = Path(str(out_dir).format(suite=suite.name, timestamp=stamp)) if out_dir \
            else default_out_dir(suite, stamp)
        hist = tracking.history(suite.name, include=[recorder.run_id], limit=20)
        # The current run is still ``running`` in MLflow: show it with its final status.
        hist = [(h if h.run_id != recorder.run_id else replace(h, status=status), s)
                for h, s in hist]
        meta = {"status": status, "suite file": suite.source, "MLflow run": recorder.run_id,
                "experiment": f"{suite.experiment_name} ({recorder.experiment_id})",
                "tracking URI": redact_uri(tracking.tracking_uri()), "git": sha,
                "baseline": base.label,
                "runs": f"{len(ex.records)} ({len(errors)} failed)",
                "executed": address or "in-process", "wall time": f"{ex.seconds:.1f}s",
                "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        data = ReportData(suite=suite, status=status, summary=summary, comparisons=comparisons,
                          baseline=base.summary or {}, baseline_label=base.label,
                          references=ex.references, meta=meta, errors=errors, history=hist,
                          configs=ex.configs, reference_seeds=ex.reference_seeds)
        result = BenchResult(suite=suite.name, status=status, run_id=recorder.run_id,
                             experiment_id=recorder.experiment_id, summary=summary,
                             comparisons=comparisons, baseline=base, report_dir=out.resolve(),
                             errors=errors, seconds=ex.seconds, configs=ex.configs,
                             references=ex.references,
                             stop_epochs={e: t["best_epoch"] for e, t in ex.tuned.items()
                                          if t.get("best_epoch") is not None},
                             finished=time.strftime("%Y-%m-%d %H:%M"),
                             protocol={**suite.protocol(), "reference_seeds": ex.reference_seeds})
        write_report(data, out)
        if fq_reports:
            from raysweep.bench.forgetting import write_report as write_fq_report

            for name, fq in fq_reports.items():
                write_fq_report(fq, out / f"forgetting-quality-{name}.md")
        (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2,
                                                     default=_json_default))
        n_reg = len(regressions(comparisons))
        recorder.finish(status, {"bench/regressions": float(n_reg),
                                 "bench/failed_runs": float(len(errors)),
                                 "bench/runs": float(len(ex.records)),
                                 "bench/seconds": ex.seconds}, report_dir=out)
    except BaseException:
        recorder.abort()
        raise
    return result


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def pin_baseline(suite: Suite, out: str | Path, *, run_id: str | None = None) -> tuple[Path, str]:
    """Write the seed statistics of a suite run (default: the latest finished one) to ``out``."""
    from raysweep.bench import tracking

    if run_id:
        run, name = tracking.find_suite_run(run_id)
        if name != suite.name:
            raise ConfigError(f"--run {run_id}: a run of suite {name!r}, not {suite.name!r}")
    else:
        runs = tracking.suite_runs(suite.name, limit=1)
        if not runs:
            raise ConfigError(f"suite {suite.name!r} has no finished runs in MLflow at "
                              f"{tracking.tracking_uri()}; run: raysweep bench run {suite.source}")
        run = runs[0]
    summary = tracking.summary_of(suite.name, run.run_id)
    if not summary:
        raise ConfigError(f"run {run.run_id} of suite {suite.name!r} has no successful entry "
                          f"runs to pin")
    path = write_pinned(out, suite.name, summary, {"run_id": run.run_id, "git_sha": run.git_sha,
                                                   "status": run.status, "date": run.when})
    return path, run.run_id
