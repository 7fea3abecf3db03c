"""Suite runs in MLflow: one parent run per suite run, one child run per entry × seed.

Layout (experiment ``raysweep-bench/<suite>``):

* parent run (tag ``raysweep.kind = bench-suite``): tags ``raysweep.suite``,
  ``raysweep.git_sha``, ``raysweep.suite_digest``, ``raysweep.baseline`` (what it was compared
  with) and ``raysweep.bench.status``: ``running``, then ``baseline`` (nothing to compare with:
  this run is the baseline), ``passed``, ``regressed`` or ``failed`` (a run raised); metrics
  ``bench/regressions``, ``bench/failed_runs``, ``bench/seconds``; params ``seeds``
  (evaluation), ``tuning_seeds``, ``seed_scope``, ``selection_split`` (val) and ``report_split``
  (test); the report as artifacts.
* child run per entry × seed (tag ``raysweep.kind = bench-entry``, ``mlflow.parentRunId``):
  params ``entry``, ``seed``, ``method``, ``workload``, ``config_kind``, ``seed_scope``,
  ``workload_seed`` and ``workload_key`` (the seed its workload was prepared with, and that
  workload's cache key), ``config.<field>``; tags
  ``raysweep.suite``, ``raysweep.method``, ``raysweep.workload``, ``raysweep.entry``,
  ``raysweep.seed``, ``raysweep.git_sha``; every metric. Each is written with one ``log_batch``.

The child runs are the source of truth: a baseline or the trend plot reads them back
(:func:`summary_of`, :func:`history`), so nothing depends on artifact storage.

``previous`` means the latest suite run whose status is ``baseline`` or ``passed``: a run that
regressed never becomes the reference for the next one.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raysweep._quoting import tag_equals
from raysweep.bench.baseline import Summary, summarize
from raysweep.errors import ConfigError
from raysweep.sweep.catalog import pid_alive, tracking_uri  # one store rule, one liveness check

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from raysweep.bench._run import RunRecord
    from raysweep.bench.suite import Entry, Suite

__all__ = ["tracking_uri", "client", "SuiteRecorder", "SuiteRunInfo", "suite_runs", "summary_of",
           "history", "find_suite_run", "KIND_SUITE", "KIND_ENTRY", "GOOD_STATUSES"]

KIND_SUITE, KIND_ENTRY = "bench-suite", "bench-entry"
STATUS_TAG = "raysweep.bench.status"
PID_TAG = "raysweep.bench.pid"  # host:pid of the process writing a suite run
GOOD_STATUSES = ("baseline", "passed")
FINISHED_STATUSES = ("baseline", "passed", "regressed", "failed")
_MAX_PARAM = 500


def client() -> MlflowClient:
    """The suite store's client (retries a locked store, like every raysweep writer)."""
    from raysweep.sweep.tracking import mlflow_client

    # MLflow logs every sqlite migration on first use at INFO; keep stderr for our progress.
    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow_client(tracking_uri())


def _experiment_id(c: MlflowClient, name: str, *, create: bool) -> str | None:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    if not create:
        return None
    location = None
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # a concurrent creator won; read it back
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _clip(v: Any) -> str:
    s = v if isinstance(v, str) else str(v)
    return s if len(s) <= _MAX_PARAM else s[: _MAX_PARAM - 3] + "..."


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))}


@dataclass(frozen=True)
class SuiteRunInfo:
    run_id: str
    start_time: float        # seconds since the epoch
    status: str
    git_sha: str
    name: str

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.start_time))


class SuiteRecorder:
    """Writes one suite run: the parent at :meth:`start`, children in :meth:`log_records`."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.client = client()
        self.experiment_id: str = _experiment_id(self.client, suite.experiment_name,
                                                 create=True) or ""
        self.run_id: str = ""

    def start(self, *, git_sha: str, baseline: str, run_name: str,
              extra_tags: dict[str, str]) -> str:
        from mlflow.entities import Param

        self.close_abandoned()
        tags = {"raysweep.kind": KIND_SUITE, "raysweep.suite": self.suite.name,
                "raysweep.git_sha": git_sha, "raysweep.suite_digest": self.suite.digest(),
                "raysweep.baseline": baseline, STATUS_TAG: "running",
                PID_TAG: f"{socket.gethostname()}:{os.getpid()}", **extra_tags}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        proto = self.suite.protocol()
        params = {"suite_file": self.suite.source, "entries": len(self.suite.entries),
                  "runs": self.suite.runs(), "seeds": proto["evaluation_seeds"],
                  "tuning_seeds": proto["tuning_seeds"], "seed_scope": proto["seed_scope"],
                  "selection_split": proto["selection_split"],
                  "report_split": proto["report_split"],
                  "catboost": self.suite.config.catboost}
        self.client.log_batch(self.run_id, params=[Param(k, _clip(v)) for k, v in params.items()])
        return self.run_id

    def log_records(self, records: Iterable[RunRecord], entries: dict[str, Entry], git_sha: str,
                    tuned: dict[str, dict[str, Any]]) -> None:
        from mlflow.entities import Metric, Param

        for rec in records:
            entry = entries[rec.entry]
            tags = {"raysweep.kind": KIND_ENTRY, "mlflow.parentRunId": self.run_id,
                    "raysweep.suite": self.suite.name, "raysweep.method": entry.method,
                    "raysweep.workload": entry.workload.name, "raysweep.entry": entry.id,
                    "raysweep.seed": str(rec.seed), "raysweep.git_sha": git_sha,
                    "raysweep.config_hash": entry.config_hash()}
            if rec.node:
                tags["raysweep.node"] = rec.node
            if rec.error:
                tags["raysweep.error"] = _clip(rec.error)
            if entry.id in tuned and tuned[entry.id].get("sweep_id"):
                tags["raysweep.tuned_sweep"] = str(tuned[entry.id]["sweep_id"])
            child = self.client.create_run(self.experiment_id,
                                           run_name=f"{entry.id} seed {rec.seed}", tags=tags)
            params = {"entry": entry.id, "seed": rec.seed, "method": entry.method,
                      "workload": entry.workload.name, "config_kind": entry.config_kind,
                      "seed_scope": rec.seed_scope,
                      **({"workload_seed": rec.workload_seed} if rec.workload_seed is not None
                         else {}),
                      **({"workload_key": rec.workload_key} if rec.workload_key else {}),
                      **{f"config.{k}": v for k, v in rec.config.items()}}
            now = int(time.time() * 1000)
            self.client.log_batch(
                child.info.run_id,
                metrics=[Metric(k, v, now, 0) for k, v in _finite(rec.metrics).items()],
                params=[Param(k, _clip(v)) for k, v in params.items()])
            self.client.set_terminated(child.info.run_id, "FAILED" if rec.error else "FINISHED")

    def finish(self, status: str, metrics: dict[str, float],
               report_dir: Path | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, 0)
                                                    for k, v in _finite(metrics).items()])
        self.client.set_tag(self.run_id, STATUS_TAG, status)
        if report_dir is not None:
            try:
                self.client.log_artifacts(self.run_id, str(report_dir), artifact_path="report")
            except Exception as exc:  # artifact storage is optional; the runs are what matter
                from raysweep._console import info

                info(f"[yellow]could not store the report in MLflow "
                     f"({type(exc).__name__}: {exc})[/]")
        self.client.set_terminated(self.run_id, "FAILED" if status == "failed" else "FINISHED")

    def close_abandoned(self) -> list[str]:
        """End the RUNNING runs of this suite whose process died on this host (a SIGKILL, a
        lost machine): KILLED, status ``failed``, with the reason. They never become a
        baseline either way; this keeps MLflow from showing them as running forever."""
        flt = (f"{tag_equals('raysweep.kind', KIND_SUITE)} and "
               f"{tag_equals('raysweep.suite', self.suite.name)} and "
               f"attributes.status = 'RUNNING'")
        closed = []
        for run in self.client.search_runs([self.experiment_id], filter_string=flt,
                                           max_results=200):
            host, _, pid = run.data.tags.get(PID_TAG, "").rpartition(":")
            if host != socket.gethostname() or not pid.isdigit() or pid_alive(int(pid)):
                continue  # another machine's, an old run without the tag, or still running
            self.client.set_tag(run.info.run_id, STATUS_TAG, "failed")
            self.client.set_tag(run.info.run_id, "raysweep.error",
                                f"the process that ran this suite (pid {pid}) died before it "
                                f"finished")
            self.client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
        return closed

    def abort(self) -> None:
        if self.run_id:
            self.client.set_tag(self.run_id, STATUS_TAG, "failed")
            self.client.set_terminated(self.run_id, "KILLED")


def _info(run: Any) -> SuiteRunInfo:
    tags = run.data.tags
    return SuiteRunInfo(run.info.run_id, run.info.start_time / 1000.0, tags.get(STATUS_TAG, "?"),
                        tags.get("raysweep.git_sha", "?"), run.info.run_name or "")


def suite_runs(suite_name: str, *, statuses: Iterable[str] | None = FINISHED_STATUSES,
               limit: int = 50, c: MlflowClient | None = None) -> list[SuiteRunInfo]:
    """The suite's parent runs, newest first, filtered by ``raysweep.bench.status``."""
    c = c or client()
    exp = _experiment_id(c, f"raysweep-bench/{suite_name}", create=False)
    if exp is None:
        return []
    flt = tag_equals("raysweep.kind", KIND_SUITE)
    wanted = set(statuses) if statuses is not None else None
    out: list[SuiteRunInfo] = []
    token = None
    while len(out) < limit:
        page = c.search_runs([exp], filter_string=flt, order_by=["attributes.start_time DESC"],
                             max_results=200, page_token=token)
        for run in page:
            info = _info(run)
            if wanted is None or info.status in wanted:
                out.append(info)
        token = page.token
        if not token:
            break
    return out[:limit]


def find_suite_run(run_id: str, c: MlflowClient | None = None) -> tuple[SuiteRunInfo, str]:
    """A suite (parent) run by id; returns its info and its suite name."""
    c = c or client()
    try:
        run = c.get_run(run_id)
    except Exception:
        raise ConfigError(f"--baseline {run_id}: no MLflow run with this id at {tracking_uri()} "
                          f"(set MLFLOW_TRACKING_URI?)") from None
    kind = run.data.tags.get("raysweep.kind")
    if kind != KIND_SUITE:
        parent = run.data.tags.get("mlflow.parentRunId")
        hint = f"; its suite run is {parent}" if parent else ""
        raise ConfigError(f"--baseline {run_id}: not a bench suite run (kind {kind!r}){hint}")
    return _info(run), run.data.tags.get("raysweep.suite", "")


def _entry_runs(c: MlflowClient, exp: str, flt: str, limit: int) -> list[Any]:
    runs: list[Any] = []
    token = None
    while len(runs) < limit:
        page = c.search_runs([exp], filter_string=flt, order_by=["attributes.start_time DESC"],
                             max_results=min(1000, limit), page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def summary_of(suite_name: str, run_id: str, c: MlflowClient | None = None) -> Summary:
    """Seed statistics of every entry of one suite run, read from its child runs."""
    c = c or client()
    exp = _experiment_id(c, f"raysweep-bench/{suite_name}", create=False)
    if exp is None:
        return {}
    flt = (f"{tag_equals('raysweep.kind', KIND_ENTRY)} and "
           f"{tag_equals('mlflow.parentRunId', run_id, 'run id')}")
    return _summarize_children(_entry_runs(c, exp, flt, 100_000))


def _summarize_children(children: list[Any]) -> Summary:
    per_entry: dict[str, list[dict[str, float]]] = {}
    for r in children:
        if r.data.tags.get("raysweep.error"):
            continue
        per_entry.setdefault(r.data.tags.get("raysweep.entry", "?"), []).append(
            dict(r.data.metrics))
    return summarize(per_entry)


def history(suite_name: str, *, limit: int = 20, c: MlflowClient | None = None,
            include: Iterable[str] = ()) -> list[tuple[SuiteRunInfo, Summary]]:
    """The last ``limit`` finished suite runs (oldest first) with their summaries, for trends.

    ``include`` adds run ids regardless of status (the run being reported).
    """
    c = c or client()
    exp = _experiment_id(c, f"raysweep-bench/{suite_name}", create=False)
    if exp is None:
        return []
    wanted = set(include)
    parents = [p for p in suite_runs(suite_name, statuses=None, limit=limit * 3, c=c)
               if p.status in FINISHED_STATUSES or p.run_id in wanted][:limit]
    if not parents:
        return []
    ids = {p.run_id for p in parents}
    oldest = min(p.start_time for p in parents)
    flt = (f"{tag_equals('raysweep.kind', KIND_ENTRY)} and "
           f"attributes.start_time >= {int(oldest * 1000)}")
    children = _entry_runs(c, exp, flt, 100_000)
    grouped: dict[str, list[Any]] = {}
    for r in children:
        pid = r.data.tags.get("mlflow.parentRunId")
        if pid in ids:
            grouped.setdefault(pid, []).append(r)
    return [(p, _summarize_children(grouped.get(p.run_id, []))) for p in reversed(parents)]
