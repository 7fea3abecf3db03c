"""``raysweep bench forgetting-quality``: forgetting quality from many oracles, on Ray.

The NeurIPS 2023 unlearning challenge's evaluation and a U-LiRA-style attack
(:mod:`raysweep.metrics.forgetting_quality`) compare *populations*: K originals trained on D,
K retrain-from-scratch oracles trained on D_r, and for every method K unlearned models, the i-th
unlearned from the i-th original. Every model is one Ray task (a cluster trains them in
parallel; the prepared workload, i.e. the data splits, travels once through the object store,
and an unlearning task starts as soon as its original is done; the tasks go through
:class:`raysweep.sweep.tasks.TaskPool`, so this module never imports Ray). Seeds vary the
initialisation and the batch order and come from disjoint streams per role (:func:`model_seed`),
so no oracle is ever replayed as a ``retrain`` unlearned model; the data splits (and a random
forget set) stay those of the workload's own seed.

Per forget example each task returns the logit-scaled confidence of the true class; the driver
computes, per method, the challenge's forgetting quality (and its finite-K ceiling, the
permutation null), the utility-adjusted score and the attack's AUC / advantage, and the
``original`` row (no unlearning at all) as the lower anchor. Results go to a markdown page
(JSON beside it) and to MLflow (experiment ``raysweep-bench/forgetting-quality``: a parent run,
one child run per row).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from raysweep._console import info
from raysweep._provenance import git_sha, machine
from raysweep.bench import tracking
from raysweep.config import WorkloadConfig
from raysweep.errors import UserError
from raysweep.methods import make_config
from raysweep.methods._base import UnlearnContext
from raysweep.metrics.forgetting_quality import (
    BUCKET_WIDTH,
    DELTA,
    N_BUCKETS,
    forgetting_quality,
    lira_attack,
    logit_confidence,
    permutation_null,
    utility_score,
)
from raysweep.sweep.tasks import TaskPool
from raysweep.training import predict_logits, resolve_device, train_model

if TYPE_CHECKING:
    from raysweep.workload import PreparedWorkload

__all__ = ["DEFAULT_METHODS", "SCALES", "EXPERIMENT", "ModelStats", "ForgettingReport",
           "model_seed", "run_forgetting_quality", "write_report", "log_to_mlflow"]

#: Fine-tuning (a weak baseline), SCRUB (distillation), SSD (one shot) and ``retrain``, the
#: sanity row: exact unlearning, which must score at the permutation null.
DEFAULT_METHODS: tuple[str, ...] = ("finetune", "scrub", "ssd", "retrain")

#: ``--scale`` presets (the workload and K; explicit options win). ``small``: the embedded
#: digits workload, K sized for about 15 minutes on 2 CPU cores. ``paper``: the challenge's
#: protocol (random forgetting of 10%, 512 models per population) for a cluster.
SCALES: dict[str, dict[str, Any]] = {
    "small": {"workload": "digits-class", "k": 32},
    "paper": {"workload": "fmnist-random10-conv", "k": 512},
}

EXPERIMENT = "raysweep-bench/forgetting-quality"
KIND = "bench-forgetting-quality"
_STREAMS = {"original": 1, "oracle": 2, "unlearned": 3}
MAX_K = 98_999   # streams are 100_000 apart; room for 1,000 per-epoch seeds above the last


def model_seed(base: int, role: str, index: int) -> int:
    """The training seed of model ``index`` of ``role`` (original, oracle, unlearned).

    Disjoint per role for any ``index`` up to :data:`MAX_K`: a ``retrain`` unlearned model never
    shares its seed (hence its initialisation and batch order) with an oracle. Methods that
    derive per-epoch seeds as ``seed + epoch`` stay inside their role's stream (streams are
    100,000 apart and epochs at most 1,000), though neighbouring models of one role may then
    share one epoch's batch order.
    """
    return base * 1_000_003 + _STREAMS[role] * 100_000 + index


@dataclass
class ModelStats:
    """What one model task returns: the per-forget-example statistic and the utility."""

    role: str                          # original, oracle, or a method name
    index: int
    seed: int
    confidence: np.ndarray | None = None   # (N_f,) logit-scaled confidence of the true class
    retain_acc: float = math.nan
    test_acc: float = math.nan         # test rows of retained classes under class forgetting
    seconds: float = 0.0
    node: str = ""
    error: str | None = None


def _confidence(m: ModelStats) -> np.ndarray:
    """The statistic of a model that trained (``error`` is None): always set then."""
    assert m.confidence is not None
    return m.confidence


# -- Ray tasks (plain functions; :func:`run_forgetting_quality` wraps them) -------------------

def _prepare(workload_json: dict[str, Any], device: str) -> PreparedWorkload:
    from raysweep.workload import prepare

    prepared = prepare(WorkloadConfig.model_validate(workload_json), device=device, quiet=True)
    assert prepared is not None   # only ``cached_only`` returns None
    return prepared


def _stats(prepared: PreparedWorkload, model: Any, device: Any, st: ModelStats) -> ModelStats:
    bs = prepared.config.eval_batch_size
    logits, labels = predict_logits(model, prepared.splits["forget"], device=device, batch_size=bs)
    st.confidence = logit_confidence(logits, labels).astype(np.float32)
    logits, labels = predict_logits(model, prepared.splits["retain"], device=device, batch_size=bs)
    st.retain_acc = float((logits.argmax(1) == labels).mean())
    logits, labels = predict_logits(model, prepared.splits["test"], device=device, batch_size=bs)
    # Under class forgetting the oracle cannot classify the forgotten classes: the utility it
    # is compared on is the accuracy on the classes that remain.
    keep = ~np.isin(labels, prepared.forget_classes) if prepared.forget_classes else \
        np.ones(len(labels), bool)
    st.test_acc = float((logits[keep].argmax(1) == labels[keep]).mean())
    return st


def _failed(st: ModelStats, exc: BaseException) -> ModelStats:
    st.error = f"{type(exc).__name__}: {exc}"
    if os.environ.get("RAYSWEEP_DEBUG"):
        st.error += "\n" + traceback.format_exc()
    return st


def _train(prepared: PreparedWorkload, role: str, index: int, seed: int,
           device: str) -> tuple[dict[str, Any] | None, ModelStats]:
    """Train an original (on D) or an oracle (on D_r) from scratch with the workload's recipe."""
    st = ModelStats(role, index, seed, node=socket.gethostname())
    try:
        dev = resolve_device(device)
        s = prepared.splits
        data = s["retain"] if role == "oracle" else TensorDataset(
            torch.cat([s["retain"].tensors[0], s["forget"].tensors[0]]),
            torch.cat([s["retain"].tensors[1], s["forget"].tensors[1]]))
        model = prepared.model_spec.build(pretrained=True, seed=seed)
        st.seconds = train_model(model, data, prepared.config.train, device=dev, seed=seed)
        _stats(prepared, model, dev, st)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        return (state if role == "original" else None), st
    except Exception as exc:  # recorded; the population goes on without this model
        return None, _failed(st, exc)


def _unlearn(prepared: PreparedWorkload, original_state: dict[str, Any] | None, method: str,
             index: int, seed: int, device: str,
             config: dict[str, Any] | None = None) -> ModelStats:
    """Run ``method`` with ``config`` (its fields; the rest at their defaults) on original
    ``index``."""
    from raysweep.methods import run_method

    st = ModelStats(method, index, seed, node=socket.gethostname())
    if original_state is None:
        st.error = f"original {index} failed to train"
        return st
    try:
        dev = resolve_device(device)
        original = prepared.model_spec.build(pretrained=False, seed=seed)
        original.load_state_dict(original_state)
        original = original.to(dev).eval()
        ctx = UnlearnContext(original=original, model_spec=prepared.model_spec, device=dev,
                             seed=seed, train_recipe=prepared.config.train,
                             is_text=prepared.kind == "text")
        model = copy.deepcopy(original)
        for p in model.parameters():
            p.requires_grad_(True)
        data = prepared.unlearn_data(batch_size=prepared.config.train.batch_size)
        t0 = time.perf_counter()
        run_method(method, model, data, make_config(method, config or {}), ctx)
        st.seconds = time.perf_counter() - t0
        return _stats(prepared, model, dev, st)
    except Exception as exc:  # recorded; the method's row goes on without this model
        return _failed(st, exc)


# -- the report -------------------------------------------------------------------------------

@dataclass
class ForgettingReport:
    """One row per population compared with the oracles, plus what was run and where."""

    settings: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    oracle: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.failures) or any(r.get("error") for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "oracle": self.oracle, "rows": self.rows,
                "failures": self.failures, "mlflow_run_id": self.run_id}

    def to_markdown(self) -> str:
        return _markdown(self)


def _row(name: str, pop: list[ModelStats], oracles: list[ModelStats], *, delta: float,
         width: float, seed: int, min_models: int) -> dict[str, Any]:
    ok = [m for m in pop if m.error is None]
    row: dict[str, Any] = {"row": name, "models": len(ok), "failed_models": len(pop) - len(ok),
                           "mean_seconds": float(np.mean([m.seconds for m in ok])) if ok else None}
    if len(ok) < min_models or len(oracles) < min_models:
        row["error"] = (f"{len(ok)} {name} and {len(oracles)} oracle models trained; the "
                        f"attacks need at least {min_models} of each")
        return row
    u = np.stack([_confidence(m) for m in ok], axis=1)          # (N_f, K)
    r = np.stack([_confidence(m) for m in oracles], axis=1)
    fq = forgetting_quality(u, r, delta=delta, width=width)
    null = permutation_null(u, r, rounds=20, seed=seed, delta=delta, width=width)
    lira = lira_attack(u, r, seed=seed)
    retain = float(np.mean([m.retain_acc for m in ok]))
    test = float(np.mean([m.test_acc for m in ok]))
    retain_o = float(np.mean([m.retain_acc for m in oracles]))
    test_o = float(np.mean([m.test_acc for m in oracles]))
    retain_ratio = retain / retain_o if retain_o > 0 else math.nan
    test_ratio = test / test_o if test_o > 0 else math.nan
    finite = fq.epsilons[np.isfinite(fq.epsilons)]
    row.update({
        "forgetting_quality": fq.score, "permutation_null": null,
        "quality_over_null": fq.score / null if null > 0 else math.nan,
        "retain_acc": retain, "test_acc": test, "retain_ratio": retain_ratio,
        "test_ratio": test_ratio,
        "score": (utility_score(fq.score, retain_ratio=retain_ratio, test_ratio=test_ratio)
                  if math.isfinite(retain_ratio) and math.isfinite(test_ratio) else math.nan),
        "eps_median": float(np.median(fq.epsilons)),
        "eps_inf_share": float(np.mean(np.isinf(fq.epsilons))),
        "eps_finite_max": float(finite.max()) if len(finite) else None,
        "bucket_histogram": fq.histogram(N_BUCKETS),
        "lira_auc": lira.auc, "lira_advantage": lira.advantage,
        "forget_confidence_mean": float(u.mean()),
    })
    return row


def run_forgetting_quality(workload: WorkloadConfig, *, methods: Sequence[str], k: int,
                           configs: Mapping[str, Mapping[str, Any]] | None = None,
                           seed: int = 0, device: str = "cpu", address: str | None = None,
                           delta: float = DELTA, width: float = BUCKET_WIDTH,
                           gpus_per_model: float = 0.0, command: str = "",
                           log: Callable[[str], None] | None = None) -> ForgettingReport:
    """Train the populations as Ray tasks and compute every row (see the module docstring).

    Inputs are assumed checked (the CLI does it before anything runs). ``configs`` maps a
    method to the config fields it runs with (the others at their defaults). ``address`` joins
    a cluster; ``None`` uses ``RAY_ADDRESS`` or starts a private local Ray.
    """
    given = {m: dict((configs or {}).get(m) or {}) for m in methods}
    resolved = {m: make_config(m, given[m]).model_dump(mode="json") for m in methods}
    from raysweep.sweep.runner import ray_session

    say = log or info
    t0 = time.perf_counter()
    n_tasks = k * (2 + len(methods))
    with ray_session(address) as session:
        have = session["resources"]
        if have.get("CPU", 0.0) < 1 or have.get("GPU", 0.0) < gpus_per_model:
            # Ray would keep an infeasible task pending forever instead of failing it.

            raise UserError(f"each model task asks for 1 CPU and {gpus_per_model:g} GPU, but "
                            f"the Ray at {session['address']} has {have.get('CPU', 0.0):g} CPU "
                            f"and {have.get('GPU', 0.0):g} GPU in all; lower --gpus-per-model "
                            f"or add nodes")
        say(f"[bold]forgetting quality[/] on {workload.name}: {k} originals, {k} oracles and "
            f"{k} unlearned models per method ({', '.join(methods)}): {n_tasks} model tasks on "
            f"Ray at {session['address']}")
        pool = TaskPool(num_cpus=1, num_gpus=gpus_per_model)
        prepared = pool.submit(_prepare, workload.model_dump(mode="json"), device)
        futures: dict[Any, tuple[str, int]] = {}
        states: list[Any] = []
        for role in ("original", "oracle"):
            for i in range(k):
                state, stats = pool.submit(_train, prepared, role, i, model_seed(seed, role, i),
                                           device, num_returns=2)
                futures[stats] = (role, i)
                if role == "original":
                    states.append(state)
        for m in methods:
            for i in range(k):
                # Takes original i's state by reference: it starts once that original is done.
                fut = pool.submit(_unlearn, prepared, states[i], m, i,
                                  model_seed(seed, "unlearned", i), device, given[m])
                futures[fut] = (m, i)
        results: dict[str, list[ModelStats]] = {}
        # Original i's weights stay in the object store until its last unlearning task is done
        # (paper scale: 512 ResNet states would otherwise all be pinned until the end).
        waiting = [len(methods)] * k
        for done, (fut, value, exc) in enumerate(pool.as_completed(list(futures)), start=1):
            role, i = futures[fut]
            if role in methods:
                waiting[i] -= 1
                if waiting[i] == 0:
                    states[i] = None
            # ``exc``: the task itself died (worker crash, out of memory) or its input did.
            st = value if exc is None else ModelStats(role, i, -1, error=_task_error(exc))
            results.setdefault(role, []).append(st)
            what = (f"[red]failed[/] {st.error}" if st.error else
                    f"retain {st.retain_acc:.3f} test {st.test_acc:.3f} forget confidence "
                    f"{float(np.mean(_confidence(st))):+.2f} ({st.seconds:.1f} s)")
            say(f"  [{done}/{n_tasks}] {role} #{i}: {what}")
        resources = {k_: float(v) for k_, v in session["resources"].items()
                     if k_ in ("CPU", "GPU")}
    seconds = time.perf_counter() - t0
    oracles = [m for m in sorted(results.get("oracle", []), key=lambda s: s.index)
               if m.error is None]
    settings = {
        "workload": workload.name, "k": k, "methods": list(methods), "seed": seed,
        "overrides": {m: v for m, v in given.items() if v}, "configs": resolved,
        "device": device, "delta": delta, "bucket_width": width, "n_buckets": N_BUCKETS,
        "statistic": "logit-scaled confidence of the true class, log(p_y / (1 - p_y))",
        "forget_examples": len(_confidence(oracles[0])) if oracles else None,
        "seconds": seconds, "command": command, "address": address or
        os.environ.get("RAY_ADDRESS") or "local", "ray_resources": resources,
        "machine": machine(f"device {device}"),
        "finished": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "git_sha": _git_sha(),
        "seeds": {role: f"{model_seed(seed, role, 0)}..{model_seed(seed, role, k - 1)}"
                  for role in _STREAMS},
    }
    report = ForgettingReport(settings)
    report.failures = [{"role": m.role, "index": m.index, "seed": m.seed, "error": m.error}
                       for pop in results.values() for m in pop if m.error]
    report.oracle = {"models": len(oracles),
                     "retain_acc": float(np.mean([m.retain_acc for m in oracles])) if oracles
                     else None,
                     "test_acc": float(np.mean([m.test_acc for m in oracles])) if oracles
                     else None,
                     "mean_seconds": float(np.mean([m.seconds for m in oracles])) if oracles
                     else None}
    for name in ("original", *methods):
        pop = sorted(results.get(name, []), key=lambda s: s.index)
        report.rows.append(_row(name, pop, oracles, delta=delta, width=width, seed=seed,
                                min_models=4))
    return report


def _task_error(exc: BaseException) -> str:
    """One line for a task Ray could not run: the task's own exception when Ray wrapped one
    (a failed preparation, a failed original handed on), else Ray's (a crashed worker)."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else '(no message)'}"


def _git_sha() -> str:
    return git_sha()


_COLUMNS = (("row", "row"), ("models", "models"), ("forgetting_quality", "F (ε score)"),
            ("permutation_null", "null F"), ("quality_over_null", "F / null"),
            ("retain_ratio", "retain ratio"), ("test_ratio", "test ratio"),
            ("score", "score"), ("eps_median", "median ε"), ("lira_auc", "U-LiRA AUC"),
            ("lira_advantage", "U-LiRA adv."), ("mean_seconds", "s / model"))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else ("-" if math.isnan(v) else f"{v:.3f}")
    return str(v)


def _configs_text(s: dict[str, Any]) -> str:
    """The methods' configs as run: the defaults, with any ``--set`` fields named."""
    over = s.get("overrides") or {}
    if not over:
        return "each method's defaults"
    given = "; ".join(f"{m}: " + ", ".join(f"{f}={v}" for f, v in fields.items())
                      for m, fields in over.items())
    return f"defaults except {given}"


def _markdown(r: ForgettingReport) -> str:
    s = r.settings
    o = r.oracle
    lines = [
        "# Forgetting quality from many oracles",
        "",
        f"Generated by `{s['command'] or 'raysweep bench forgetting-quality'}` on "
        f"{s['finished']} (git {s['git_sha']}) on {s['machine']}; Ray at {s['address']} with "
        f"{s['ray_resources']}; {s['seconds'] / 60:.1f} min wall time for "
        f"{s['k'] * (2 + len(s['methods']))} models, each one Ray task.",
        "",
        f"Workload `{s['workload']}` ({s['forget_examples']} forget examples). K = {s['k']}: "
        f"{s['k']} originals trained on D, {s['k']} retrain-from-scratch oracles trained on D_r, "
        f"and per method {s['k']} unlearned models (the i-th from original i; configs: "
        f"{_configs_text(s)}). Training seeds (initialisation and batch order) come from disjoint "
        f"streams per role ({', '.join(f'{k}: {v}' for k, v in s['seeds'].items())}); the data "
        f"split is the workload's. The oracles: {o.get('models')} models, retain accuracy "
        f"{_cell(o.get('retain_acc'))}, test accuracy {_cell(o.get('test_acc'))}.",
        "",
        f"Statistic per forget example and model: {s['statistic']}. Columns (definitions in "
        f"`raysweep/metrics/forgetting_quality.py`):",
        "",
        f"* **F (ε score)**: the NeurIPS 2023 challenge's forgetting quality: per example the "
        f"largest ε = log((1 - δ - FPR) / FNR) or log((1 - δ - FNR) / FPR) over threshold "
        f"attacks on the statistic (both directions; δ = {s['delta']}), bucketed by "
        f"{s['bucket_width']}, scored 2^-bucket and averaged. 1: indistinguishable from "
        f"retraining; {2.0 ** -(s['n_buckets'] - 1):.5f}: every example perfectly separated.",
        "* **null F**: the same score with the unlearned/oracle labels shuffled per example "
        "(20 permutations): what two samples of *one* distribution score at this K. With few "
        "models per side some threshold separates two samples by chance, so the ceiling is "
        "well under 1 (on synthetic Gaussians: about 0.25 at K = 16, 0.53 at 256, 0.8 at the "
        "challenge's 512, 1.0 only in the thousands). Read F against it; **F / null** is that "
        "ratio (about 1: at the ceiling).",
        "* **retain / test ratio**: mean accuracy of the population over the oracles' (test: "
        "the retained classes under class forgetting); **score** = F x both ratios, the "
        "challenge's final score (ratios not capped).",
        "* **median ε** over the forget examples (inf: perfectly separated).",
        "* **U-LiRA AUC / adv.**: per example, Gaussians fitted to the statistic over half of "
        "the unlearned models and half of the oracles; the other halves scored by the log "
        "likelihood ratio, then the halves swap; ROC AUC and max(TPR - FPR) over all "
        "(example, held-out model) pairs. 0.5 / 0: the attack cannot tell them apart.",
        "",
        "| " + " | ".join(h for _, h in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for row in r.rows:
        if row.get("error"):
            lines.append(f"| {row['row']} | {row['models']} | failed: {row['error']} |"
                         + " |" * (len(_COLUMNS) - 3))
            continue
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in _COLUMNS) + " |")
    lines += ["", "`original` is no unlearning at all (the K originals against the oracles): the "
              "lower anchor. `retrain` is exact unlearning (fresh models on D_r, seeds disjoint "
              "from the oracles'): the sanity row, expected at the null.", "",
              "ε buckets (examples per bucket of width "
              f"{s['bucket_width']}; the last holds everything beyond, inf included):", "",
              "| row | " + " | ".join(str(i) for i in range(s["n_buckets"])) + " |",
              "|---|" + "---|" * s["n_buckets"]]
    for row in r.rows:
        if "bucket_histogram" in row:
            lines.append(f"| {row['row']} | " + " | ".join(map(str, row["bucket_histogram"]))
                         + " |")
    if r.failures:
        lines += ["", f"{len(r.failures)} model(s) failed:", ""]
        lines += [f"* {f['role']} #{f['index']} (seed {f['seed']}): {f['error']}"
                  for f in r.failures[:20]]
    paper = SCALES["paper"]
    lines += [
        "", "## Paper scale (a cluster)", "",
        f"The challenge trained 512 models per population on CIFAR-10 (random forgetting of "
        f"10%). `--scale paper` runs that protocol on the bundled random-forgetting workload: "
        f"`raysweep bench forgetting-quality --scale paper --address ray://HEAD:10001 --device "
        f"cuda --gpus-per-model 0.25` trains {paper['k']} x (2 + methods) models on "
        f"`{paper['workload']}`, one task each, as many at a time as the cluster holds.",
        "",
        f"MLflow: experiment `{EXPERIMENT}`"
        + (f", run `{r.run_id}`" if r.run_id else "") + " (one child run per row).",
        "",
    ]
    return "\n".join(lines)


def write_report(report: ForgettingReport, path: Path) -> Path:
    """The markdown page at ``path`` and the JSON report beside it (``.json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_markdown())
    path.with_suffix(".json").write_text(json.dumps(report.to_json(), indent=2, default=_plain)
                                         + "\n")
    return path


def _plain(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def log_to_mlflow(report: ForgettingReport, report_path: Path | None = None) -> str:
    """One parent run (settings as params, ``fq/<row>/<metric>`` metrics) and one child run per
    row (tag ``raysweep.method``, metrics ``fq/*``), each written with one ``log_batch``.

    With ``report_path`` the page is written once the run id is known (the page names it) and
    stored with its JSON as the parent run's artifacts.
    """
    from mlflow.entities import Metric, Param

    c = tracking.client()
    exp = tracking._experiment_id(c, EXPERIMENT, create=True) or ""
    s = report.settings
    tags = {"raysweep.kind": KIND, "raysweep.workload": s["workload"],
            "raysweep.git_sha": s["git_sha"]}
    parent = c.create_run(exp, run_name=f"{s['workload']} K={s['k']}", tags=tags).info.run_id
    params = {k: v for k, v in s.items() if k in ("workload", "k", "seed", "device", "delta",
                                                   "bucket_width", "n_buckets", "statistic",
                                                   "forget_examples", "command", "machine")}
    params["methods"] = ",".join(s["methods"])
    # Only the --set fields here (a batch holds at most 100 params); each child run has its
    # method's whole config.
    params.update({f"set.{m}.{f}": v for m, fields in (s.get("overrides") or {}).items()
                   for f, v in fields.items()})
    now = int(time.time() * 1000)
    keys = ("forgetting_quality", "permutation_null", "quality_over_null", "score",
            "retain_ratio", "test_ratio", "retain_acc", "test_acc", "eps_median",
            "eps_inf_share", "lira_auc", "lira_advantage", "models", "failed_models")

    def metrics_of(row: dict[str, Any], prefix: str) -> list[Metric]:
        return [Metric(f"{prefix}{k}", float(row[k]), now, 0) for k in keys
                if isinstance(row.get(k), (int, float)) and math.isfinite(float(row[k]))]

    parent_metrics = [Metric("fq/seconds", float(s["seconds"]), now, 0),
                      Metric("fq/failed_models", float(len(report.failures)), now, 0)]
    for row in report.rows:
        parent_metrics += metrics_of(row, f"fq/{row['row']}/")
    c.log_batch(parent, metrics=parent_metrics,
                params=[Param(k, tracking._clip(v)) for k, v in params.items()])
    for row in report.rows:
        child = c.create_run(exp, run_name=f"{row['row']} K={s['k']}", tags={
            **tags, "mlflow.parentRunId": parent, "raysweep.method": row["row"],
            **({"raysweep.error": tracking._clip(row["error"])} if row.get("error") else {})})
        config = (s.get("configs") or {}).get(row["row"], {})
        c.log_batch(child.info.run_id, metrics=metrics_of(row, "fq/"),
                    params=[Param("method", row["row"]), Param("k", str(s["k"])),
                            Param("workload", s["workload"]),
                            *(Param(f"config.{f}", tracking._clip(v)) for f, v in config.items())])
        c.set_terminated(child.info.run_id, "FAILED" if row.get("error") else "FINISHED")
    report.run_id = parent
    artifacts = []
    if report_path is not None:
        write_report(report, report_path)
        artifacts = [report_path, report_path.with_suffix(".json")]
    for path in artifacts:
        try:
            c.log_artifact(parent, str(path))
        except Exception as exc:  # artifact storage is optional; the runs are what matter
            info(f"[yellow]could not store {path.name} in MLflow ({type(exc).__name__}: {exc})[/]")
    c.set_terminated(parent, "FAILED" if report.failed else "FINISHED")
    return parent
