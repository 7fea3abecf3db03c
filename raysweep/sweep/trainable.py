"""The Ray Tune function trainable: a thin adapter around the run engine.

The run itself (method, per-epoch evaluation, budgets, selection of the best epoch, the final
full evaluation) is :func:`raysweep.engine.run_trial`; its module docstring describes a run.
This module adds what Tune needs around it (see :func:`unlearning_trial`):

* The workload comes once through the object store via ``tune.with_parameters``; each trial
  runs with the threads and device its resources ask for.
* Every report of the engine becomes a ``tune.report`` with a ``tune.Checkpoint``:
  ``state.json`` (epochs done, method time, the best epoch's metrics, fingerprints of the
  weights) and ``best.pt`` (the best weights). A restored trial hands them back to the engine,
  which replays and continues; OptunaSearch tells Optuna the *last* result, so the searcher
  reads ``best/...``.
* Failures: Tune marks an errored trial ERROR and restarts it up to ``search.trial_retries``
  times, which is what a trial whose worker or node died needs. The method's own exception is
  deterministic under its seed, so the trial writes it to ``<plan.extra["failure_dir"]>/<trial
  id>`` first (atomically, never empty) and a restart re-raises it at once instead of running
  the method again. What the machine raises is not the method's (:func:`is_method_error`:
  ``OSError`` such as a full disk, out of memory, Ray's exceptions, checkpoint I/O as
  :class:`InfrastructureError`): no marker, so the restart runs the method again. On a cluster
  without shared storage the marker may not be visible: a method error's restart then runs and
  fails the same way.

The engine's names (``TrialPlan``, ``run_trial``, ``objective_values``, ...) stay importable
from here for existing callers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from raysweep.engine import (
    TrialFailure,
    TrialPlan,
    objective_values,
    on_device,
    run_trial,
)
from raysweep.sweep._result import tune_keys, tune_result
from raysweep.sweep.space import SweepSpec

__all__ = ["TrialPlan", "TrialFailure", "unlearning_trial", "run_trial", "objective_values",
           "STATE_FILE", "BEST_FILE", "make_plan", "InfrastructureError", "is_method_error",
           "write_marker", "read_marker", "on_device"]

STATE_FILE = "state.json"
BEST_FILE = "best.pt"


def make_plan(spec: SweepSpec, workload: Any, reference: dict[str, dict[str, float]]) -> TrialPlan:
    """The plan of a sweep on a prepared workload (time budget resolved to seconds)."""
    b = spec.budget
    # ASHA may stop a trial between epochs, before the full evaluation of its best epoch.
    per_epoch = "full" if spec.search.early_terminate is not None else spec.evaluation.per_epoch
    objective = spec.objective.for_task(getattr(workload, "task", "classify"))
    return TrialPlan(objectives=list(spec.objectives), objective_config=objective,
                     reference=reference, max_epochs=b.max_epochs, max_seconds=b.max_seconds,
                     max_time_ratio=b.max_time_ratio, max_cost_ratio=b.max_cost_ratio,
                     catboost=spec.evaluation.catboost,
                     eval_batch_size=spec.evaluation.batch_size, per_epoch_eval=per_epoch,
                     selection_val_rows=spec.evaluation.selection_val_rows,
                     precision=spec.precision,
                     cpus=spec.resources_per_trial.cpu, gpus=spec.resources_per_trial.gpu)


def unlearning_trial(
    config: dict[str, Any], workload: Any = None, plan: TrialPlan | None = None
) -> None:
    """The Ray Tune function trainable (wrap with ``tune.with_parameters(workload=, plan=)``)."""
    from ray import tune

    assert workload is not None and plan is not None, "use tune.with_parameters(workload=, plan=)"
    torch.set_num_threads(max(1, int(plan.cpus)))
    dev = torch.device("cuda" if plan.gpus > 0 and torch.cuda.is_available() else "cpu")
    marker = None
    if plan.extra.get("failure_dir"):
        marker = Path(plan.extra["failure_dir"]) / tune.get_context().get_trial_id()
        reason = read_marker(marker)
        if reason:
            raise TrialFailure(f"{reason} (raised by the first attempt; a method "
                               f"error is not retried)")
    resume_state = None
    resume_best = None
    prev_best: Path | None = None
    try:
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                resume_state = json.loads((Path(d) / STATE_FILE).read_text())
                if (Path(d) / BEST_FILE).exists():
                    keep = Path(tempfile.mkdtemp(prefix="rs-best-"))
                    (keep / BEST_FILE).write_bytes((Path(d) / BEST_FILE).read_bytes())
                    prev_best = keep / BEST_FILE
                    resume_best = load_best(keep)
    except Exception as exc:  # an unreadable checkpoint is the storage's fault, not the method's
        raise InfrastructureError(f"cannot read the trial's checkpoint: "
                                  f"{type(exc).__name__}: {exc}") from exc

    node = _node_id()
    keys = tune_keys(o.key for o in plan.objectives)

    def report(result: dict[str, Any], state: dict[str, Any] | None,
               best_state: dict[str, torch.Tensor] | None) -> None:
        try:
            _report(result, state, best_state)
        except Exception as exc:
            if _from_ray(exc):
                raise  # a stop or cancel from Tune travels as is
            # Writing the checkpoint (a full or read-only disk) or handing it to Tune failed:
            # the configuration is fine, so the trial may be retried.
            raise InfrastructureError(f"saving the epoch's checkpoint failed: "
                                      f"{type(exc).__name__}: {exc}") from exc

    def _report(result: dict[str, Any], state: dict[str, Any] | None,
                best_state: dict[str, torch.Tensor] | None) -> None:
        nonlocal prev_best
        if node:
            result = {**result, "rs/node": node}  # tracking tags the run with where it ran
        with tempfile.TemporaryDirectory(prefix="rs-ckpt-") as d:
            (Path(d) / STATE_FILE).write_text(json.dumps(state, default=float))
            if best_state is not None:
                torch.save(best_state, Path(d) / BEST_FILE)
                keep = Path(tempfile.mkdtemp(prefix="rs-best-"))
                torch.save(best_state, keep / BEST_FILE)
                if prev_best is not None:
                    _rmtree(prev_best.parent)
                prev_best = keep / BEST_FILE
            elif prev_best is not None:
                (Path(d) / BEST_FILE).write_bytes(prev_best.read_bytes())
            tune.report(tune_result(result, keys), checkpoint=tune.Checkpoint.from_directory(d))

    try:
        run_trial(config, workload, plan, report=report, resume_state=resume_state,
                  resume_best=resume_best, device=dev)
    except Exception as exc:
        if marker is not None and is_method_error(exc):
            write_marker(marker, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if prev_best is not None:
            _rmtree(prev_best.parent)


class InfrastructureError(RuntimeError):
    """A trial failed for a reason outside the method (storage, checkpoint I/O): retryable."""


def _from_ray(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] == "ray"


def is_method_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the method's own, deterministic failure (never retried).

    Not method errors: Ray's exceptions (a stopped, cancelled or lost trial), raysweep's
    :class:`InfrastructureError` (checkpoint I/O), and what the machine raises whoever runs
    (``OSError`` such as a full disk, ``MemoryError``, a device out of memory). Those are
    retried up to ``search.trial_retries``.
    """
    if _from_ray(exc) or isinstance(exc, (InfrastructureError, OSError, MemoryError)):
        return False
    oom = getattr(torch, "OutOfMemoryError", None)
    return not (oom is not None and isinstance(exc, oom))


def write_marker(marker: Path, reason: str) -> bool:
    """Record a method error for the trial's restarts: atomically (a temporary file renamed
    over the marker) and never empty. Returns whether it was written; a disk that cannot take
    it leaves no marker, and the restart then runs the method again."""
    text = (reason.strip() or "the method raised an exception with no message")[:2000]
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, marker)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False


def read_marker(marker: Path) -> str | None:
    """The recorded method error of a trial, or ``None``: an empty or unreadable marker (left
    by a version that wrote markers in place) is no evidence and is removed."""
    try:
        text = marker.read_text(errors="replace").strip()
    except OSError:
        return None
    if not text:
        with contextlib.suppress(OSError):
            marker.unlink()
        return None
    return text


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def load_best(checkpoint_dir: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The best weights stored in a trial checkpoint directory."""
    return torch.load(Path(checkpoint_dir) / BEST_FILE, map_location="cpu", weights_only=True)
