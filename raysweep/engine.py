"""The run engine: one unlearning run, from a prepared workload and a config to its metrics.

Every caller runs a method through :func:`run_trial` (or :func:`run_once`, its one-shot form):
a Ray Tune trial (:mod:`raysweep.sweep.trainable`, the thin Tune adapter: checkpoints, failure
markers), a suite run (:func:`raysweep.bench._run.run_one`), ``raysweep unlearn`` and the
benchmarks of evaluation cost and edits. So a metric, a budget or a failure means the same
thing wherever it is reported. This module imports neither Ray nor MLflow.

One run (``plan.select == "best"``, what a sweep trial does):

1. Copy the original model (the workload is shared by every run; nothing is reloaded).
2. Run the method with :func:`raysweep.methods.run_method`. After each epoch the callback
   evaluates what selection reads (D_f and val, :meth:`PreparedWorkload.evaluate_selection`:
   the same values the full evaluation gives), computes the objective(s), reports the epoch
   (``report(result, state, best_weights)``: the adapter turns it into a checkpoint) and
   decides whether the budget allows another epoch. When the method ends, the epoch that
   selection picked is evaluated in full (every split, every metric) and reported once more
   with ``rs/final``: its ``best/<metric>`` are what leaderboards show.
   ``evaluation.per_epoch: full`` evaluates everything after every epoch instead (what ASHA
   and an objective on a metric outside the selection set get).
3. The budgets are enforced here, not trusted to the method: the epoch budget through
   ``max_epochs``; the cost budget (``max_cost_ratio``: sample-passes counted by
   :class:`raysweep.methods.PassCounter` over the oracle's) and the time budget (``max_seconds``
   or ``max_time_ratio`` x retrain time) stop the run at the first epoch that ends past them.
   Cost and time count only the method's own work: evaluation is excluded. The retrain time a
   ratio divides by is measured here, at the start of the run, under the run's own threads
   and device (:func:`retrain_seconds_here`), never taken from the prepare run.
4. Selection reads the val split only: the objective is computed on val (``objective``) and,
   for reporting, on test (``objective/test``, never used to choose). Every report carries the
   running best: ``best/<metric>`` are the metrics of the best epoch so far (by the val
   objective) and ``best_epoch`` its number (for several objectives, "best" is the last epoch
   within budget). An epoch that ends past the time budget is never the best unless no epoch
   made it.
5. Non-finite model outputs raise :class:`TrialFailure` with the reason; the method's own
   exceptions travel as they are, among them run_method's ``MethodDivergedError`` for a
   non-finite training statistic (it checks every EpochEnd before ``on_epoch`` sees it).

``plan.select == "last"`` (a suite run, ``raysweep unlearn``): nothing is evaluated between
epochs; the weights the method ends with (or the epoch budget stops it at) are evaluated once,
in full, and reported as ``best/*`` with ``rs/final``. :func:`run_once` returns those metrics
and the model.

Resume: the state reported with each epoch (epochs done, method time, the best epoch's
metrics, a fingerprint of the weights after each epoch) and the best weights let a restarted
run continue. Methods are generators whose optimiser state is not saved, so a resumed run
replays its completed epochs deterministically (same seed; evaluation never touches the
method's RNG) without evaluating or reporting them, checks the replay against the stored
fingerprints, and continues. A run whose state says it finished just returns.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from raysweep.methods import EpochEnd, get_method, make_config, run_method
from raysweep.methods._lm import kept_weights, restore_weights
from raysweep.training import autocast, make_loader

if TYPE_CHECKING:
    from raysweep.sweep.space import ObjectiveSpec

__all__ = ["TrialPlan", "TrialFailure", "Reporter", "RunOutcome", "run_trial", "run_once",
           "objective_values", "eval_batch_size", "selection_covers", "retrain_seconds_here",
           "on_device"]


class TrialFailure(RuntimeError):
    """A trial that cannot produce a valid result (diverged, non-finite outputs)."""


@dataclass
class TrialPlan:
    """Everything about a run besides its config: objectives, budgets, evaluation (small,
    picklable; a sweep builds it with :func:`raysweep.sweep.trainable.make_plan`)."""

    objectives: list[ObjectiveSpec]
    objective_config: Any                     # raysweep.metrics.ObjectiveConfig
    reference: dict[str, dict[str, float]]    # "original" / "retrain" metrics
    max_epochs: int | None = None
    max_seconds: float | None = None
    max_time_ratio: float | None = None
    max_cost_ratio: float | None = None
    catboost: bool = False
    eval_batch_size: int | None = None        # None: chosen for the device (eval_batch_size())
    precision: str = "fp32"                   # the method's compute (evaluation stays fp32)
    per_epoch_eval: str = "selection"         # "selection" | "full" (see the module docstring)
    selection_val_rows: int | None = None     # per-epoch selection on this many val rows
    select: str = "best"                      # "best" | "last" (see the module docstring)
    time_ratio: bool = True                   # measure the retrain time (time/ratio) here
    cpus: float = 1.0
    gpus: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def eval_batch_size(device: torch.device, requested: int | None = None) -> int:
    """The inference batch size: ``requested``, else one that suits the device.

    On CPU small batches stay in cache (batches of 64-128 ran 1.5-2x faster than 512 on the
    embedded workloads); accelerators want large ones.
    """
    if requested:
        return int(requested)
    return 128 if device.type == "cpu" else 1024


def selection_covers(plan: TrialPlan) -> bool:
    """Whether every objective reads only keys recorded at every epoch (the selection
    evaluation's, :func:`raysweep.metrics.evaluate_selection`, plus cost and time: the keys
    declared ``per_epoch`` in :mod:`raysweep.metrics.registry`)."""
    from raysweep.metrics.registry import per_epoch_keys

    every_epoch = per_epoch_keys()
    return all(o.metric == "composite" or o.metric in every_epoch for o in plan.objectives)


def objective_values(metrics: dict[str, float], plan: TrialPlan) -> dict[str, float]:
    """The value of every objective (keys :attr:`ObjectiveSpec.key`); non-finite -> worst.

    The composite is read on val (what selection uses) and reported on test as
    ``objective/test`` beside it.
    """
    out: dict[str, float] = {}
    for o in plan.objectives:
        if o.metric == "composite":
            v = plan.objective_config.score(metrics, split="val")
            try:  # reporting only: a term test cannot compute never fails the trial
                t = plan.objective_config.score(metrics, split="test")
                out["objective/test"] = float(t)
            except KeyError:
                pass  # an epoch's selection evaluation reads no test split
        else:
            v = float(metrics.get(o.metric, float("nan")))
            if o.target is not None:
                v = abs(v - o.target)
        if not math.isfinite(v):
            v = float("inf") if o.mode == "min" else float("-inf")
        out[o.key] = float(v)
    return out


def _better(a: dict[str, float], b: dict[str, float] | None, plan: TrialPlan) -> bool:
    if b is None:
        return True
    if plan.multi_objective:
        return True  # the last epoch within budget
    o = plan.objectives[0]
    return a[o.key] < b[o.key] if o.mode == "min" else a[o.key] > b[o.key]


def _fingerprint(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(sum(p.detach().double().abs().sum().item() for p in model.parameters()))


def retrain_seconds_here(workload: Any, device: torch.device, steps: int = 8) -> float:
    """Seconds that retraining from scratch would take under this process's conditions.

    Runs ``steps`` training steps (after two warm-up steps) of the workload's architecture
    through the recipe's own data loader and batch size, on this device with this process's
    thread count, and scales the median step time to the oracle's epochs x |D_r|. A wall-time
    ratio that divides a trial's time by a retrain time measured elsewhere (another thread
    count, another load) is not a ratio.
    """
    model = workload.build_model("original").to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    retain = workload.splits["retain"]
    bs = max(1, min(int(workload.config.train.batch_size), len(retain)))
    times: list[float] = []
    with _Isolated(model):
        while len(times) < steps + 2:
            for x, y in make_loader(retain, bs, shuffle=True, seed=0):
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
                opt.step()
                times.append((time.perf_counter() - t0) / len(y))
                if len(times) >= steps + 2:
                    break
    per_example = float(np.median(times[2:]))
    return per_example * len(retain) * int(workload.config.train.epochs)


class _Isolated:
    """Evaluate without disturbing the method: RNG states and module modes are restored."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.rng = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                    torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def __exit__(self, *exc: Any) -> None:
        for m, training in self.modes:
            m.train(training)
        random.setstate(self.rng[0])
        np.random.set_state(self.rng[1])
        torch.set_rng_state(self.rng[2])
        if self.rng[3] is not None:
            torch.cuda.set_rng_state_all(self.rng[3])


#: ``report(result, state, best_weights)``: the epoch's metrics, the state to resume from, and
#: the best weights so far when they changed this epoch.
Reporter = Callable[
    [dict[str, Any], "dict[str, Any] | None", "dict[str, torch.Tensor] | None"], None]


def run_trial(config: dict[str, Any], workload: Any, plan: TrialPlan, *,
              report: Reporter, resume_state: dict[str, Any] | None = None,
              resume_best: dict[str, torch.Tensor] | None = None,
              device: torch.device | None = None,
              progress: Callable[[EpochEnd, float], None] | None = None) -> dict[str, Any]:
    """Run one unlearning run; ``report(result, state, best_weights)`` is called per epoch,
    and once more for the full evaluation of the chosen epoch (``rs/final``).

    ``config`` is ``{"method": name, name: {params}, "seed": s}`` (a sweep trial's config).
    ``resume_best`` are the best weights stored with ``resume_state``. ``progress(event,
    seconds)`` sees each epoch as the method yields it (console progress). Returns the last
    result (also when the run resumed an already finished one).
    """
    return _execute(config, workload, plan, report=report, resume_state=resume_state,
                    resume_best=resume_best, device=device, progress=progress)[0]


@dataclass
class RunOutcome:
    """What :func:`run_once` returns: the chosen epoch's metrics and the model it ended with."""

    metrics: dict[str, float]
    model: torch.nn.Module


def run_once(workload: Any, method: str, config: dict[str, Any], seed: int, *,
             device: torch.device, max_epochs: int | None = None, catboost: bool = False,
             objective_config: Any = None,
             progress: Callable[[EpochEnd, float], None] | None = None) -> RunOutcome:
    """Run ``method`` with ``config`` once and evaluate the weights it ends with, in full.

    The metrics are those of :meth:`PreparedWorkload.evaluate` plus ``epochs`` (the epochs the
    method ran, which ``max_epochs`` may cut short), the cost (``cost/passes``, ``cost/ratio``)
    and the composite objective (``objective`` on val, ``objective/test``; absent when the
    workload cannot compute one of its terms), and ``time/ratio``: the method's time over a
    retrain time measured here, in this process, before the method runs
    (:func:`retrain_seconds_here`), so both sides share threads, device and load.
    """
    from raysweep.metrics import ObjectiveConfig
    from raysweep.sweep.space import ObjectiveSpec

    plan = TrialPlan(objectives=[ObjectiveSpec()], reference={},
                     objective_config=objective_config or ObjectiveConfig(),
                     max_epochs=max_epochs, catboost=catboost,
                     select="last", time_ratio=True)
    result, model = _execute({"method": method, method: dict(config), "seed": seed}, workload,
                             plan, report=lambda *_: None, device=device, progress=progress)
    return RunOutcome({k[len("best/"):]: float(v) for k, v in result.items()
                       if k.startswith("best/")}, model)


def _execute(config: dict[str, Any], workload: Any, plan: TrialPlan, *,
             report: Reporter, resume_state: dict[str, Any] | None = None,
             resume_best: dict[str, torch.Tensor] | None = None,
             device: torch.device | None = None,
             progress: Callable[[EpochEnd, float], None] | None = None,
             ) -> tuple[dict[str, Any], torch.nn.Module]:
    t_start = time.perf_counter()
    # The objective sums the workload task's terms (a language model's are not a classifier's).
    task = getattr(workload, "task", "classify")
    if getattr(plan.objective_config, "task", task) != task:
        plan = dataclasses.replace(plan, objective_config=plan.objective_config.for_task(task))
    method = config["method"]
    params = dict(config.get(method) or {})
    seed = int(config.get("seed", 0))
    mcfg = make_config(method, params)
    info = get_method(method)
    dev = device or torch.device("cpu")
    data = on_device(workload.unlearn_data(batch_size=workload.config.train.batch_size), dev)
    # A time budget relative to retraining needs the retrain time whatever ``time_ratio`` says.
    retrain_seconds = (retrain_seconds_here(workload, dev)
                       if plan.time_ratio or plan.max_time_ratio is not None else None)
    retrain_passes = float(workload.retrain_cost.passes)
    max_seconds = plan.max_seconds
    if plan.max_time_ratio is not None and retrain_seconds is not None:
        max_seconds = plan.max_time_ratio * retrain_seconds
    ctx = workload.context(dev, seed=seed)
    model = copy.deepcopy(ctx.original).to(dev)
    for p in model.parameters():
        p.requires_grad_(True)

    state: dict[str, Any] = dict(resume_state or {})
    if state.get("done") and (state.get("final") or plan.per_epoch_eval == "full"
                              or resume_best is None):
        return dict(state.get("result") or {}), model
    done_epochs = int(state.get("epoch", 0))
    stored_prints: list[float] = list(state.get("fingerprints", []))
    prints: list[float] = stored_prints[:done_epochs]
    best: dict[str, Any] | None = state.get("best")
    method_seconds = float(state.get("method_seconds", 0.0))
    trial_seconds0 = float(state.get("trial_seconds", 0.0))
    last: dict[str, Any] = dict(state.get("result") or {})
    last_state: dict[str, Any] = dict(state)
    best_state: dict[str, torch.Tensor] | None = resume_best
    bs = eval_batch_size(dev, plan.eval_batch_size)
    # A trial of one epoch (a one-shot method, an epoch budget of 1) has nothing to select
    # among: one full evaluation is cheaper than a selection pass plus a full one.
    single = info.one_shot or plan.max_epochs == 1
    last_only = plan.select == "last"
    mode = {"selection": (plan.per_epoch_eval == "selection" and not single
                          and selection_covers(plan))}
    eval_seconds0 = float(state.get("eval_seconds", 0.0))
    clock = {"eval": 0.0, "mark": 0.0, "seen": 0}  # eval time; method time at last epoch

    # The selection outputs (D_f, val) of the best epoch so far: the final full evaluation of
    # those weights reuses them and runs only D_r and test.
    kept_outputs: dict[str, Any] = {}

    def full_metrics(m: torch.nn.Module, epoch: int,
                     known: dict[str, Any] | None = None) -> dict[str, float]:
        from raysweep.metrics import SPLITS

        known = known or {}
        with _Isolated(m), autocast(dev, "fp32"):  # metrics in full precision, always
            rest = workload.forward_full(m, data, dev, batch_size=bs,
                                         splits=[s for s in SPLITS if s not in known])
            outputs = type(rest)({**known, **rest.splits})
            _check_finite(outputs, method, epoch)
            return workload.evaluate(outputs, seconds=method_seconds, catboost=plan.catboost,
                                     seed=seed, retrain_seconds=retrain_seconds)

    def selection_metrics(m: torch.nn.Module, epoch: int) -> dict[str, float]:
        with _Isolated(m), autocast(dev, "fp32"):
            outputs = workload.forward_selection(m, dev, batch_size=bs, seed=seed,
                                                 val_rows=plan.selection_val_rows)
            _check_finite(outputs, method, epoch)
            whole_val = len(outputs["val"]) == len(data.val)
            kept_outputs["last"] = {k: outputs[k] for k in (("forget", "val") if whole_val
                                                             else ("forget",))}
            return workload.evaluate_selection(outputs, seconds=method_seconds, seed=seed,
                                               retrain_seconds=retrain_seconds,
                                               val_rows=plan.selection_val_rows)

    def finish() -> tuple[dict[str, Any], torch.nn.Module]:
        """Evaluate the chosen epoch's weights in full and report them as ``best/*``."""
        assert best is not None and (best_state is not None or last_only)
        t_eval = time.perf_counter()
        if last_only:  # the method's own final weights, evaluated where they are
            final_model = model
        else:
            assert best_state is not None
            final_model = restore_weights(copy.deepcopy(model), best_state)
        metrics = full_metrics(final_model, int(best["epoch"]), kept_outputs.get("best"))
        kept = {k: v for k, v in best["metrics"].items()
                if k.startswith(("cost/", "time/")) or k in ("epochs",)}
        metrics.update(kept)
        full_best = {**metrics, **(_lenient_objectives(metrics, plan) if last_only
                                   else objective_values(metrics, plan))}
        eval_seconds = eval_seconds0 + clock["eval"] + time.perf_counter() - t_eval
        result = {**last, **{f"best/{k}": v for k, v in full_best.items()},
                  "rs/final": 1.0, "rs/eval_seconds": eval_seconds,
                  "rs/trial_seconds": trial_seconds0 + time.perf_counter() - t_start}
        final_state = {**last_state, "best": {**best, "metrics": full_best}, "done": True,
                       "final": True, "result": result, "eval_seconds": eval_seconds,
                       "trial_seconds": result["rs/trial_seconds"]}
        report(result, final_state, None)
        return result, final_model

    if state.get("done"):  # stopped after its last epoch, before the full evaluation
        return finish()

    def on_epoch(event: EpochEnd, elapsed: float) -> bool:
        nonlocal best, method_seconds, last, last_state, best_state
        clock["seen"] += 1
        epoch = int(clock["seen"])
        if progress is not None:
            progress(event, elapsed)
        own = elapsed - clock["eval"]  # the method's own time in this process so far
        if epoch <= done_epochs:       # replaying an epoch finished before the resume
            if epoch <= len(stored_prints) and not math.isclose(
                    _fingerprint(model), stored_prints[epoch - 1], rel_tol=1e-4):
                state.setdefault("replay_mismatch", []).append(epoch)
            clock["mark"] = own
            return False
        method_seconds += own - clock["mark"]
        clock["mark"] = own
        t_eval = time.perf_counter()
        if last_only:  # nothing to choose among: only the final weights are evaluated
            metrics: dict[str, float] = {}
        else:
            metrics = (selection_metrics if mode["selection"] else full_metrics)(model, epoch)
        prints.append(_fingerprint(model))
        metrics["epochs"] = float(epoch)
        if retrain_seconds is not None:
            metrics["time/retrain_seconds_here"] = retrain_seconds
        if event.cost is not None:
            metrics.update(event.cost.as_metrics())
            metrics["cost/ratio"] = event.cost.passes / retrain_passes
        objectives = {} if last_only else objective_values(metrics, plan)
        over = ((max_seconds is not None and method_seconds > max_seconds)
                or (plan.max_cost_ratio is not None
                    and metrics.get("cost/ratio", 0.0) > plan.max_cost_ratio))
        candidate = {**metrics, **objectives}
        best_weights = None
        if last_only:
            best = {"epoch": epoch, "metrics": candidate, "over_budget": over}
        elif best is None or (not over and (best.get("over_budget")
                                            or _better(candidate, best["metrics"], plan))):
            best = {"epoch": epoch, "metrics": candidate, "over_budget": over}
            best_weights = kept_weights(model)
            best_state = best_weights
            if mode["selection"]:
                kept_outputs["best"] = kept_outputs.get("last")
        train_stats = {f"train/{k}": float(v) for k, v in event.metrics.items()}
        result = {**metrics, **objectives, **train_stats, "epoch": epoch,
                  "best_epoch": best["epoch"], "budget/over": float(over),
                  "rs/method_seconds": method_seconds,
                  **{f"best/{k}": v for k, v in best["metrics"].items()}}
        clock["eval"] += time.perf_counter() - t_eval
        stop = over or (plan.max_epochs is not None and epoch >= plan.max_epochs)
        result["rs/trial_seconds"] = trial_seconds0 + time.perf_counter() - t_start
        result["rs/eval_seconds"] = eval_seconds0 + clock["eval"]
        # "done" lets a resumed trial return at once; only certain when the budget stopped it
        # or the method is one-shot (other methods may yield more epochs than they declare).
        new_state = {"epoch": epoch, "method_seconds": method_seconds, "best": best,
                     "fingerprints": list(prints), "trial_seconds": result["rs/trial_seconds"],
                     "done": bool(stop or info.one_shot), "result": result,
                     "replay_mismatch": state.get("replay_mismatch", []),
                     "eval_seconds": eval_seconds0 + clock["eval"]}
        last, last_state = result, new_state
        report(result, new_state, best_weights)
        return stop

    with autocast(dev, "fp32" if info.full_precision else plan.precision):
        run_method(method, model, data, mcfg, ctx, max_epochs=plan.max_epochs,
                   on_epoch=on_epoch)
    if not last:
        raise TrialFailure(f"{method}: the method yielded no epoch")
    if best is not None and (last_only or (mode["selection"] and best_state is not None)):
        return finish()
    return last, model


def _lenient_objectives(metrics: dict[str, float], plan: TrialPlan) -> dict[str, float]:
    """:func:`objective_values` for reporting only: a composite term the workload cannot
    compute leaves the objective out (on val, on test, or both) instead of failing the run."""
    with contextlib.suppress(KeyError):
        return objective_values(metrics, plan)
    out: dict[str, float] = {}
    with contextlib.suppress(KeyError):  # the val objective failed; test may still be computable
        out["objective/test"] = float(plan.objective_config.score(metrics, split="test"))
    return out


def on_device(data: Any, device: torch.device, share: float = 0.25) -> Any:
    """``data`` moved to an accelerator for the whole trial when it takes at most ``share`` of
    the device's free memory (else it stays on the host and batches are copied as they go)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return data
    free, _total = torch.cuda.mem_get_info(device)
    return data.to(device) if data.nbytes() <= share * free else data


def _check_finite(outputs: Any, method: str, epoch: int) -> None:
    bad = outputs.nonfinite_splits()
    if bad:
        raise TrialFailure(f"{method}: non-finite model outputs on {', '.join(bad)} "
                           f"at epoch {epoch} (diverged)")


