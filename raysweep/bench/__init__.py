"""Regression suites: run (workload, method, config, seeds) sets, compare with a baseline, report.

``raysweep bench run SUITE.yaml`` is the entry point (:func:`run_suite`); suites are described in
:mod:`raysweep.bench.suite`, the regression check in :mod:`raysweep.bench.baseline`, the MLflow
layout in :mod:`raysweep.bench.tracking` and the report in :mod:`raysweep.bench.report`.
"""

from __future__ import annotations

from raysweep.bench._run import RunRecord, execute, run_one
from raysweep.bench.baseline import Comparison, Stat, aggregate, compare, read_pinned, write_pinned
from raysweep.bench.runner import BenchResult, pin_baseline, resolve_baseline, run_suite
from raysweep.bench.suite import Entry, Suite, SuiteConfig, Tolerance, load_suite

__all__ = [
    "BenchResult", "Comparison", "Entry", "RunRecord", "Stat", "Suite", "SuiteConfig", "Tolerance",
    "aggregate", "compare", "execute", "load_suite", "pin_baseline", "read_pinned",
    "resolve_baseline", "run_one", "run_suite", "write_pinned",
]
