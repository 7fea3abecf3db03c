"""MLflow tracking of sweeps: runs, batched metrics, checkpoints, leaderboard queries.

Layout (one MLflow experiment, ``tracking.experiment``, default ``raysweep``):

* a **parent run** per sweep (tags ``raysweep.kind=sweep``, ``raysweep.sweep_id``; the resolved
  spec as the ``sweep.json`` artifact);
* a **child run per trial** (``mlflow.parentRunId``; tags ``raysweep.sweep_id``,
  ``raysweep.trial_id``, ``raysweep.method``, ``raysweep.workload``, ``raysweep.git_sha``,
  ``raysweep.seed``, ``raysweep.config_hash``): the method's full config as params, every
  metric per epoch (``step`` = epoch), ``best/<metric>`` once at the end (MLflow's tables show
  the *latest* value of a metric, so the best epoch's values get their own keys), and the best
  checkpoint (``checkpoint/best.pt``) of the best configuration of each method;
* two **reference runs** per sweep, ``original`` and ``retrain`` (``raysweep.kind=reference``),
  so that every leaderboard has them.

Everything is written with ``MlflowClient.log_batch`` from the driver (one call per result,
not one per key: ``MLflowLoggerCallback`` costs 0.2-0.6 s per result on SQLite here). Child
runs are keyed by trial id: after ``raysweep resume`` the callback re-attaches to the run it
created before instead of opening a duplicate.

The default store is embedded: ``sqlite:///mlflow.db`` in the working directory with artifacts
in ``./mlartifacts``, created in the driver before any trial starts; ``MLFLOW_TRACKING_URI``
selects any other store (a tracking server on a cluster: never SQLite on NFS).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune import Callback

from raysweep._provenance import commit_of, git_sha
from raysweep._quoting import read_tags, tag_equals, tag_filter
from raysweep._secrets import redact_uri
from raysweep.errors import UserError
from raysweep.sweep._lock import file_lock
from raysweep.sweep._result import full_result
from raysweep.sweep.catalog import tracking_uri

__all__ = [
    "tracking_uri",
    "Tracker",
    "MlflowTrialCallback",
    "git_sha",
    "config_hash",
    "fetch_runs",
    "RunRecord",
    "mlflow_ui_hint",
    "default_store_exists",
    "StoreUnavailable",
]

_TUNE_KEYS = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id",
              "date", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip",
              "config", "time_since_restore", "iterations_since_restore", "experiment_tag",
              "should_checkpoint", "episodes_total", "timesteps_total"}
_MAX_METRICS, _MAX_PARAMS = 1000, 100


def default_store_exists(uri: str) -> bool:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).exists()
    return True


def mlflow_ui_hint(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        rel = os.path.relpath(db) if db.is_absolute() else str(db)
        shown = f"sqlite:///{rel}" if not rel.startswith("..") else uri
        return f"mlflow ui --backend-store-uri {shown}"
    if uri.startswith(("http://", "https://")):
        return f"open {redact_uri(uri)}"
    return f"mlflow ui --backend-store-uri {redact_uri(uri)}"


def config_hash(method: str, params: Mapping[str, Any]) -> str:
    blob = json.dumps({"method": method, "params": dict(params)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


class StoreUnavailable(RuntimeError):
    """The MLflow store stayed locked past the retry budget (``RAYSWEEP_MLFLOW_RETRY_S``)."""


_LOCKED = ("database is locked", "database table is locked", "database schema is locked")
_INITIALISED: set[str] = set()


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(k in text for k in _LOCKED)


def _retry_budget() -> float:
    try:
        return max(0.0, float(os.environ.get("RAYSWEEP_MLFLOW_RETRY_S", "120")))
    except ValueError:
        return 120.0


class _RetryingClient:
    """An ``MlflowClient`` whose calls are retried with backoff while SQLite says "database is
    locked" (another process writing: a second sweep, ``mlflow ui``, a backup). A failed
    statement was rolled back, so a retry never writes twice. Past the budget the call raises
    :class:`StoreUnavailable` with one line; the sweep is then resumable."""

    def __init__(self, client: Any, uri: str) -> None:
        self._client = client
        self._uri = uri

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_client", "_uri"):
            raise AttributeError(name)
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            budget = _retry_budget()
            deadline = time.monotonic() + budget
            delay = 0.25
            while True:
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:
                    if not _is_locked(exc):
                        raise
                    if time.monotonic() + delay > deadline:
                        raise StoreUnavailable(
                            f"MLflow store {_redact(self._uri)} stayed locked for {budget:g}s "
                            f"({name}); stop whatever holds it (another writer, a stuck "
                            f"process) or raise RAYSWEEP_MLFLOW_RETRY_S") from None
                    time.sleep(delay)
                    delay = min(5.0, delay * 2)

        return call


def _redact(uri: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", uri)


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if not uri.startswith("sqlite:///") or uri in _INITIALISED:
        return _RetryingClient(MlflowClient(tracking_uri=uri), uri)
    # The first connection to a new SQLite store creates and migrates its schema; two
    # processes doing that at once make one of them fail mid-migration. A file lock serialises
    # first uses (every later one finds the schema done). It lives in the temp dir, keyed by
    # the database's path, so that reading a store never writes beside it (SQLite stores are
    # local to one machine, so a machine-local lock is enough).

    db = Path(uri[len("sqlite:///"):]).resolve()
    key = hashlib.sha1(str(db).encode()).hexdigest()[:16]
    with file_lock(Path(tempfile.gettempdir()) / f"raysweep-mlflow-{key}.lock"):
        client = _RetryingClient(MlflowClient(tracking_uri=uri), uri)
        client.search_experiments(max_results=1)
    _INITIALISED.add(uri)
    return client


def mlflow_client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri`` that retries a locked store and serialises the first
    use of a new SQLite store (what every writer in raysweep uses, suites included)."""
    return _client(uri)


def _finite_metrics(values: Mapping[str, Any], step: int, ts: int,
                    prefix: str = "") -> list[Any]:
    from mlflow.entities import Metric

    out = []
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(float(v)):
            continue
        out.append(Metric(prefix + k, float(v), ts, step))
    return out


def _batched(
    client: Any,
    run_id: str,
    metrics: Sequence[Any] = (),
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> None:
    from mlflow.entities import Param, RunTag

    ps = [Param(k, _param_str(v)) for k, v in (params or {}).items()]
    ts = [RunTag(k, redact_uri(str(v))[:5000]) for k, v in (tags or {}).items()]
    metrics = list(metrics)
    while metrics or ps or ts:
        client.log_batch(run_id, metrics=metrics[:_MAX_METRICS], params=ps[:_MAX_PARAMS],
                         tags=ts[:_MAX_PARAMS])
        metrics, ps, ts = metrics[_MAX_METRICS:], ps[_MAX_PARAMS:], ts[_MAX_PARAMS:]


def _param_str(v: Any) -> str:
    s = json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else str(v)
    return s[:6000]


class Tracker:
    """The driver-side handle of one sweep's MLflow records."""

    def __init__(self, uri: str, experiment: str, sweep_id: str) -> None:
        self.uri = uri
        self.experiment = experiment
        self.sweep_id = sweep_id
        self._c: Any = None
        self.experiment_id: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_c": None}

    @property
    def client(self) -> Any:
        if self._c is None:
            self._c = _client(self.uri)
        return self._c

    # -- experiment and parent run -------------------------------------------------------------
    def ensure_experiment(self) -> str:
        if self.experiment_id:
            return self.experiment_id
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            artifact_location = None
            if self.uri.startswith("sqlite:///"):
                root = Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts"
                artifact_location = root.resolve().as_uri()
            try:
                self.experiment_id = self.client.create_experiment(
                    self.experiment, artifact_location=artifact_location)
            except Exception:  # created concurrently by another sweep
                exp = self.client.get_experiment_by_name(self.experiment)
                if exp is None:
                    raise
                self.experiment_id = exp.experiment_id
        else:
            self.experiment_id = exp.experiment_id
        return self.experiment_id

    def find_run(self, **tags: str) -> str | None:
        flt = tag_filter(tags)  # quoted: ids may come from the command line
        runs = self.client.search_runs([self.ensure_experiment()], filter_string=flt,
                                       max_results=5)
        return runs[0].info.run_id if runs else None

    def start_parent(self, *, name: str, tags: Mapping[str, Any], params: Mapping[str, Any],
                     spec_json: str) -> str:
        existing = self.find_run(**{"raysweep.sweep_id": self.sweep_id, "raysweep.kind": "sweep"})
        if existing:
            self.client.update_run(existing, status="RUNNING")
            return existing
        run = self.client.create_run(self.ensure_experiment(), run_name=name, tags={
            "raysweep.sweep_id": self.sweep_id, "raysweep.kind": "sweep", **tags})
        run_id = run.info.run_id
        _batched(self.client, run_id, params=params)
        self.client.log_text(run_id, spec_json, "sweep.json")
        return run_id

    def finish_parent(self, run_id: str, status: str, metrics: Mapping[str, float] | None = None,
                      tags: Mapping[str, Any] | None = None) -> None:
        if metrics:  # once: a resumed sweep that ends again logs only what changed
            logged = self.client.get_run(run_id).data.metrics
            metrics = {k: v for k, v in metrics.items() if logged.get(k) != v}
        if metrics or tags:
            _batched(self.client, run_id, _finite_metrics(metrics or {}, 0, _now()), tags=tags)
        self.client.set_terminated(run_id, status=status)

    def log_references(
        self,
        parent_id: str,
        references: Mapping[str, Mapping[str, float]],
        objectives: Mapping[str, Mapping[str, float]],
        tags: Mapping[str, Any],
    ) -> None:
        """``original`` and ``retrain`` as finished child runs (metrics also as ``best/``)."""
        for name, metrics in references.items():
            if self.find_run(**{"raysweep.sweep_id": self.sweep_id, "raysweep.kind": "reference",
                                "raysweep.method": name}):
                continue
            run = self.client.create_run(self.ensure_experiment(), run_name=name, tags={
                **tags, "mlflow.parentRunId": parent_id, "raysweep.sweep_id": self.sweep_id,
                "raysweep.kind": "reference", "raysweep.method": name})
            values = {**metrics, **objectives.get(name, {})}
            ts = _now()
            _batched(self.client, run.info.run_id,
                     _finite_metrics(values, 0, ts) + _finite_metrics(values, 0, ts, "best/"))
            self.client.set_terminated(run.info.run_id, status="FINISHED")

    def drop_orphans(self, known_trial_ids: set[str] | None) -> list[str]:
        """Delete child runs of unfinished trials that Tune no longer knows (started after its
        last snapshot before a crash; the restored search suggests them again under new ids).

        ``None`` (the snapshot could not be read) drops nothing. A FINISHED run is a result
        and is never deleted: it is tagged ``raysweep.orphan`` instead.
        """
        if known_trial_ids is None:
            return []
        dropped = []
        flt = tag_filter({"raysweep.sweep_id": self.sweep_id, "raysweep.kind": "trial"})
        for r in self.client.search_runs([self.ensure_experiment()], filter_string=flt,
                                         max_results=5000):
            tid = r.data.tags.get("raysweep.trial_id")
            if not tid or tid in known_trial_ids:
                continue
            if r.info.status == "FINISHED":
                self.client.set_tag(r.info.run_id, "raysweep.orphan",
                                    "finished after the snapshot the sweep resumed from")
                continue
            self.client.delete_run(r.info.run_id)
            dropped.append(tid)
        return dropped

    def log_checkpoint(self, run_id: str, checkpoint_dir: str | os.PathLike[str]) -> None:
        self.client.log_artifacts(run_id, str(checkpoint_dir), "checkpoint")
        self.client.set_tag(run_id, "raysweep.checkpoint", "checkpoint/best.pt")

    def log_model(self, run_id: str, model: Any, input_example: Any) -> str:
        """Log ``model`` (a ``torch.nn.Module`` in eval mode on the CPU) as the run's MLflow
        model ``model``, with a signature inferred from ``input_example`` (a small batch,
        a tensor) and its logits; returns the model URI ``runs:/<run_id>/model``.

        The module is traced to TorchScript when the trace gives the same logits, so that
        ``mlflow models serve`` and the Model Registry need neither raysweep nor its model
        classes, and the loaded module behaves as one (``.eval()``, any batch size; MLflow's
        default ``torch.export`` format loads as a graph whose ``.eval()`` raises). A module
        that does not trace is pickled as it is (loading it then needs raysweep).
        """
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        x = input_example.detach().cpu()
        with torch.no_grad():
            logits = model(x)
            logged = model
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TorchScript's deprecation notices
                    traced = torch.jit.trace(model, x, check_trace=False)
                if torch.allclose(traced(x), logits, atol=1e-6, rtol=1e-5):
                    logged = traced
            except Exception:
                pass
        signature = infer_signature(x.numpy(), logits.detach().cpu().numpy())
        pins = [f"torch=={torch.__version__.split('+')[0]}"]  # inferring loads the model again
        # Saved to a folder and uploaded as the run's "model" artifacts through this tracker's
        # client: the fluent log_model would re-open the trial's run (and mark it FAILED on
        # an error) and leave MLflow's process-wide tracking URI pointing at this store.
        quiet = logging.getLogger("mlflow.pytorch")  # its pickle caution: these are ours
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with tempfile.TemporaryDirectory(prefix="raysweep-model-") as tmp, \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                local = Path(tmp) / "model"
                # "pickle" is MLflow's name for torch.save / torch.jit.save.
                mlflow.pytorch.save_model(logged, str(local), signature=signature,
                                          input_example=x.numpy(), pip_requirements=pins,
                                          serialization_format="pickle")
                self.client.log_artifacts(run_id, str(local), "model")
        finally:
            quiet.setLevel(level)
        self.client.set_tag(run_id, "raysweep.model", f"runs:/{run_id}/model")
        return f"runs:/{run_id}/model"


def _now() -> int:
    return int(time.time() * 1000)


class MlflowTrialCallback(Callback):
    """A Tune callback that logs each trial as a child run, one ``log_batch`` per result."""

    def __init__(self, tracker: Tracker, parent_id: str, tags: Mapping[str, Any],
                 log_checkpoints: bool = False, fresh: bool = False) -> None:
        self.tracker = tracker
        # A fresh sweep's trials have no runs yet: no search per new trial (a driver-side
        # query that grows with the store). After a resume every first use looks one up.
        self.fresh = fresh
        self.parent_id = parent_id
        self.tags = dict(tags)
        self.log_checkpoints = log_checkpoints
        self.runs: dict[str, str] = {}
        self.last_step: dict[str, int] = {}
        # Params of a run this driver created, written with its first result (one transaction
        # less per trial); runs found again after a resume may hold best/* already.
        self.pending_params: dict[str, dict[str, Any]] = {}
        self.created: set[str] = set()
        self.nodes: dict[str, list[str]] = {}  # Ray node ids a trial reported from, in order

    def get_state(self) -> dict[str, Any]:
        return {"runs": dict(self.runs), "last_step": dict(self.last_step)}

    def set_state(self, state: dict[str, Any]) -> None:
        # Runs are looked up again on first use (and their logged epochs with them).
        self.fresh = False
        self.last_step.update(state.get("last_step", {}))

    def run_id(self, trial: Any) -> str:
        tid = trial.trial_id
        if tid in self.runs:
            return self.runs[tid]
        t = self.tracker
        existing = (None if self.fresh else
                    t.find_run(**{"raysweep.sweep_id": t.sweep_id, "raysweep.trial_id": tid}))
        if existing:  # re-attach after a resume: never a duplicate run
            self.runs[tid] = existing
            if not t.client.get_run(existing).data.params:  # created, then the driver died
                _batched(t.client, existing, params=self._params(trial))
            # Epochs logged before a crash but after Tune's last snapshot come again: skip them.
            history = t.client.get_metric_history(existing, "epoch")
            self.last_step[tid] = max((int(m.step) for m in history), default=0)
            t.client.update_run(existing, status="RUNNING")
            return existing
        from raysweep.sweep.search import trial_params

        cfg = trial.config
        method, params = trial_params(cfg)
        seed = int(cfg.get("seed", 0))
        rs = cfg.get("rs") or {}
        run = t.client.create_run(t.ensure_experiment(), run_name=f"{method}-{tid}", tags={
            **self.tags, "mlflow.parentRunId": self.parent_id, "raysweep.sweep_id": t.sweep_id,
            "raysweep.kind": "trial", "raysweep.trial_id": tid, "raysweep.method": method,
            "raysweep.seed": seed, "raysweep.group": rs.get("group", tid),
            "raysweep.optuna_trial": rs.get("optuna_trial", ""),
            "raysweep.config_hash": config_hash(method, params),
            "raysweep.params_json": json.dumps(params, sort_keys=True)})
        run_id = run.info.run_id
        self.pending_params[tid] = self._params(trial)
        self.created.add(tid)
        self.runs[tid] = run_id
        return run_id

    @staticmethod
    def _params(trial: Any) -> dict[str, Any]:
        """The run's params: the method, the seed and the method's whole config."""
        from raysweep.methods import make_config
        from raysweep.sweep.search import trial_params

        method, params = trial_params(trial.config)
        full = make_config(method, params).model_dump(mode="json")
        return {"method": method, "seed": int(trial.config.get("seed", 0)), **full}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.run_id(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        result = full_result(result)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        run_id = self.run_id(trial)
        if step <= self.last_step.get(trial.trial_id, 0):
            return  # already logged before a crash
        per_epoch = {k: v for k, v in result.items()
                     if k not in _TUNE_KEYS and not k.startswith(("best/", "rs/"))}
        per_epoch["rs/method_seconds"] = result.get("rs/method_seconds", float("nan"))
        _batched(self.tracker.client, run_id, _finite_metrics(per_epoch, step, _now()),
                 params=self.pending_params.pop(trial.trial_id, None))
        self.last_step[trial.trial_id] = step
        if result.get("rs/node"):
            nodes = self.nodes.setdefault(trial.trial_id, [])
            if result["rs/node"] not in nodes:
                nodes.append(result["rs/node"])

    def _final(self, trial: Any, status: str, tags: Mapping[str, Any] | None = None) -> None:
        run_id = self.run_id(trial)
        last = full_result(trial.last_result)
        best = {k: v for k, v in last.items() if k.startswith("best/")}
        extra: dict[str, Any] = {
            k: last[k] for k in ("best_epoch", "rs/trial_seconds", "rs/method_seconds",
                                 "rs/eval_seconds") if k in last}
        all_tags = dict(tags or {})
        if "best_epoch" in last:
            all_tags["raysweep.best_epoch"] = int(last["best_epoch"])
        nodes = self.nodes.get(trial.trial_id) or (
            [last["rs/node"]] if last.get("rs/node") else []
        )
        if nodes:  # where it ran; several when a lost node's trial was restarted elsewhere
            all_tags["raysweep.node"] = nodes[-1]
            if len(nodes) > 1:
                all_tags["raysweep.nodes"] = ",".join(nodes)
        if last.get("budget/over"):  # stopped by the time budget: say so, not only in a metric
            all_tags["raysweep.stopped"] = (
                "time budget exceeded: the method ran "
                f"{float(last.get('rs/method_seconds', 0)):.1f}s "
                f"by epoch {int(last.get('epoch', 0))} (budget.max_seconds / max_time_ratio)"
            )
        # A trial finalised before a crash and finalised again after the resume (its
        # checkpoint said done) must not log its best/* twice; a run created by this driver
        # has logged none yet.
        logged: Mapping[str, float] = {}
        if trial.trial_id not in self.created:
            logged = self.tracker.client.get_run(run_id).data.metrics
        final = {k: v for k, v in {**best, **extra}.items() if k not in logged}
        _batched(self.tracker.client, run_id, _finite_metrics(final, 0, _now()), tags=all_tags,
                 params=self.pending_params.pop(trial.trial_id, None))
        self.created.discard(trial.trial_id)  # finalised again (a retry): look first
        if self.log_checkpoints and status == "FINISHED" and trial.checkpoint is not None:
            with contextlib.suppress(Exception):
                self.tracker.log_checkpoint(run_id, trial.checkpoint.path)
        self.tracker.client.set_terminated(run_id, status=status)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._final(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._final(trial, "FAILED", {"raysweep.error": error_reason(trial)})


# "InjectedFault: ...", "ray.exceptions.RayTaskError(ValueError): ...", not "Failure # 1 (...)"
# The exception's class is CamelCase or module-qualified: Ray's "ip: 127.0.0.1", "pid: 42",
# "class_name: ImplicitFunc" lines under a dead actor's message are not the reason.
_EXC_LINE = re.compile(r"^(?:(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*|[A-Z]\w*)(?:\([\w.]*\))?: \S")


def error_reason(trial: Any) -> str:
    """The last line of a trial's error trace (``TrialFailure: ...``), or a generic text."""
    text = ""
    try:  # the driver-side copy is written before callbacks run; storage is synced later
        local = getattr(trial, "error_file", None)
        if local and Path(local).is_file():
            text = Path(local).read_text(errors="replace")
        else:
            text = trial.get_error() or ""
    except Exception:
        pass
    reason = _reason_line(text)
    return (reason + _where(trial, reason))[:2000]


def _reason_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for ln in reversed(lines):  # the innermost exception: "pkg.mod.AnyName: message"
        if _EXC_LINE.match(ln):
            return ln
    for ln in reversed(lines):
        if ("Error" in ln or "Failure" in ln or "Exception" in ln) and not ln.startswith(
            "Failure #"
        ):
            return ln
    return lines[-1] if lines else "trial failed (no error text)"


_DIED = re.compile(r"actor died|worker died|ActorDiedError|ActorUnavailable|NodeDied|"
                   r"node .* (dead|died)|OutOfMemoryError|unexpected system error|"
                   r"WorkerCrashedError", re.I)


def _where(trial: Any, reason: str) -> str:
    """Where a trial's worker died: Ray's own message names only an ip (127.0.0.1 for every
    local process), so add the node id, host and pid the trial last reported from. Only for a
    death (the reason line says so), not for the method's own exceptions."""
    if not _DIED.search(reason):
        return ""
    last = full_result(getattr(trial, "last_result", None))
    parts = []
    if last.get("rs/node"):
        parts.append(f"node {str(last['rs/node'])[:12]}")
    if last.get("hostname"):
        parts.append(f"host {last['hostname']}")
    if last.get("pid"):
        parts.append(f"worker pid {last['pid']}")
    if not parts:
        return " (the worker died before its first report)"
    return f" (last report from {', '.join(parts)})"


# -- queries -----------------------------------------------------------------------------------

class RunRecord(dict):
    """One MLflow run flattened: ``run_id``, ``status``, ``start``, ``tags``, ``params``,
    ``metrics``."""


def fetch_runs(
    uri: str,
    experiment: str = "raysweep",
    *,
    sweep_id: str | None = None,
    kinds: Iterable[str] = ("trial", "reference"),
    run_id: str | None = None,
) -> list[RunRecord]:
    """Runs of the experiment (optionally one sweep), paged through ``search_runs``."""
    if not default_store_exists(uri):
        raise UserError(f"no MLflow store at {uri}: run a sweep first, or set "
                        f"MLFLOW_TRACKING_URI to the store that has your sweeps")
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"MLflow experiment {experiment!r} not found in {uri}")
    flt = []
    if sweep_id:
        flt.append(tag_equals("raysweep.sweep_id", sweep_id, "sweep id"))
    out: list[RunRecord] = []
    token = None
    kinds = set(kinds)
    while True:
        page = client.search_runs([exp.experiment_id], filter_string=" and ".join(flt),
                                  max_results=1000, page_token=token)
        for r in page:
            tags = read_tags(r.data.tags)
            if tags.get("raysweep.kind") not in kinds:
                continue
            out.append(RunRecord(run_id=r.info.run_id, status=r.info.status,
                                 start=r.info.start_time, experiment_id=exp.experiment_id,
                                 tags=tags, params=dict(r.data.params),
                                 metrics=dict(r.data.metrics)))
        token = page.token
        if not token:
            break
    return out


def get_run(uri: str, run_id: str) -> RunRecord:
    client = _client(uri)
    r = client.get_run(run_id)
    return RunRecord(run_id=r.info.run_id, status=r.info.status, start=r.info.start_time,
                     experiment_id=r.info.experiment_id, tags=read_tags(r.data.tags),
                     params=dict(r.data.params), metrics=dict(r.data.metrics))


def list_artifacts(uri: str, run_id: str, path: str | None = None) -> list[str]:
    return [a.path for a in _client(uri).list_artifacts(run_id, path)]


def find_trial_run(uri: str, experiment: str, ref: str) -> RunRecord:
    """A trial run by MLflow run id (or unique prefix) or by Tune trial id."""
    for rec in fetch_runs(uri, experiment, kinds=("trial", "reference")):
        if rec["run_id"] == ref or rec["tags"].get("raysweep.trial_id") == ref:
            return rec
    matches = [rec for rec in fetch_runs(uri, experiment, kinds=("trial", "reference"))
               if rec["run_id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(
            f"run id prefix {ref!r} is ambiguous ({len(matches)} runs); give more characters"
        )
    raise UserError(f"no trial {ref!r} in MLflow experiment {experiment!r} at {uri} (give an "
                    f"MLflow run id or a Tune trial id, as shown by raysweep leaderboard)")


def log_unlearn_run(uri: str, experiment: str, *, workload: str, method: str,
                    config: Mapping[str, Any], seed: int, metrics: Mapping[str, Any],
                    max_epochs: int | None = None) -> str:
    """One ``raysweep unlearn --mlflow`` result as a finished run (tag ``raysweep.kind:
    unlearn``): the method's full config and seed as params, its metrics, the source tags.
    Returns the run id."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    sha = git_sha()
    run = client.create_run(exp_id, run_name=f"{method}-unlearn", tags={
        "raysweep.kind": "unlearn", "raysweep.method": method, "raysweep.workload": workload,
        "raysweep.seed": str(seed), "raysweep.git_sha": sha, "mlflow.source.type": "LOCAL",
        "mlflow.source.name": "raysweep unlearn",
        **({"mlflow.source.git.commit": commit_of(sha)} if commit_of(sha) else {})})
    _batched(client, run.info.run_id, _finite_metrics(metrics, 0, _now()),
             params={"method": method, "seed": seed, "max_epochs": max_epochs, **config})
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def log_leaderboard(uri: str, run_id: str, table: Any, texts: Mapping[str, str]) -> None:
    """A sweep's final leaderboard on its parent run: ``table`` (a DataFrame) as the MLflow table
    ``leaderboard.json`` (the UI's artifact view reads it) and each ``texts`` file beside it."""
    client = _client(uri)
    client.log_table(run_id, data=table, artifact_file="leaderboard.json")
    for name, text in texts.items():
        client.log_text(run_id, text, name)
