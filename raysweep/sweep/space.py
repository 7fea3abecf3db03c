"""The sweep / search-space YAML: W&B-shaped, with Optuna semantics.

One schema covers both kinds of file:

* ``search_spaces/<method>.yaml``: the paper ranges of one method (``method:`` + ``parameters:``);
* ``search_spaces/sweeps/*.yaml``: a sweep, possibly comparing several methods (``methods:``),
  with a workload, objectives, a search algorithm, a budget, seeds and resources.

.. code-block:: yaml

    schema_version: 1
    name: ssd-vs-scrub
    workload: fmnist-class-small            # bundled name or a workload YAML path
    methods:
      ssd: {}                               # {} or null: the ranges of search_spaces/ssd.yaml
      scrub:
        parameters:
          lr: {distribution: loguniform, min: 1.0e-5, max: 1.0e-2}
          msteps: {min: 0, max: 3}          # integer bounds -> int_uniform
          optimizer: {values: [sgd, adam]}  # values -> categorical
          momentum: {min: 0.5, max: 0.99, when: {optimizer: sgd}}
          batch_size: {value: 128}          # value -> constant
    objective: {w_forget: 1, w_heldout: 1, w_mia: 1, w_js: 1, w_probe: 1}  # oracle distances
    objectives: [{metric: composite, goal: minimize}]  # 2+ entries: a Pareto search
    search: {algorithm: tpe, num_samples: 20, max_concurrent: 2, seed: 0}
    budget: {max_epochs: 3, max_time_ratio: 0.15}
    seeds: [0]
    resources_per_trial: {cpu: 1, gpu: 0}

Semantics (Optuna's): ``min``/``max`` are real values, never exponents; ``loguniform`` is
``suggest_float(log=True)``; ``step`` discretises; ``when: {p: v}`` suggests a parameter only when
``p`` took the value ``v`` (or one of a list), as an ``if`` in a define-by-run function.
``distribution`` may be omitted: ``values`` -> categorical, ``value`` -> constant, integer bounds
-> ``int_uniform``, real bounds -> ``uniform``.

Validation (:func:`load_sweep`) checks the schema, the bounds, that every parameter is a field of
the method's config (did-you-mean), every bound, value and constant against that config's own
rules, ``when:`` references, the objectives and the combination of search options. Errors are one
line naming the file, the field, the value and the fix. The spec round-trips losslessly through
JSON (``SweepSpec.model_validate_json(spec.model_dump_json()) == spec``); the JSON Schema is
published in ``raysweep/schemas/sweep.schema.json`` (``python -m raysweep.sweep.space`` rewrites
it). This module imports neither Ray nor Optuna.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from raysweep._resources import search_spaces_dir
from raysweep.config import (
    MAX_SEED,
    accepted_scalars,
    apply_overrides,
    check_number_value,
    load_yaml,
    top_level_kind,
)
from raysweep.errors import (
    ConfigError,
    did_you_mean,
    error_message,
    format_validation_error,
    pick_error,
)
from raysweep.methods import get_method
from raysweep.metrics.objective import ObjectiveConfig
from raysweep.metrics.registry import METRICS, objective_keys, unknown_metric_message
from raysweep.sweep._storage import check_storage_url
from raysweep.sweep._wandb import translate_wandb

__all__ = [
    "ParamSpec", "MethodSpace", "ObjectiveSpec", "EarlyTerminate", "SearchSpec", "BudgetSpec",
    "Resources", "EvaluationSpec", "TrackingSpec", "SweepSpec", "load_sweep", "parse_sweep",
    "resolve_spec", "bundled_space_path", "default_space", "has_default_space", "SEARCH_SPACES",
    "SCHEMA_PATH", "json_schema",
    "KNOWN_METRICS", "grid_points", "grid_size", "Scalar", "ALGORITHMS", "MAX_CONFIGS",
    "MAX_GRID_POINTS", "reads_test",
]

SEARCH_SPACES = search_spaces_dir()
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "sweep.schema.json"
#: Where unknown-key errors point for the valid keys.
SCHEMA_HINT = "raysweep/schemas/sweep.schema.json"

Scalar = bool | int | float | str | None
Distribution = Literal["loguniform", "uniform", "int_uniform", "int_loguniform", "categorical",
                       "constant"]
ALGORITHMS = ("tpe", "random", "grid", "nsga2", "gp", "cmaes", "qmc")

#: The names an objective may give: ``composite`` and every metric a sweep trial records that
#: reads no test data (declared in :mod:`raysweep.metrics.registry`).
KNOWN_METRICS: tuple[str, ...] = ("composite", *objective_keys())


def reads_test(metric: str) -> bool:
    """Whether a metric key is computed on the test split (reporting only, never selection)."""
    info = METRICS.get(metric)
    if info is not None:  # report keys read test, except what only suites measure after a run
        return info.role == "report" and info.source != "suite"
    # Undeclared keys (a caller's own result keys): judged by their name.
    return metric.startswith(("test/", "gap/", "sape/", "mia/lr", "mia/catboost",
                              "mia/member_rate", "rel/test")) or metric.endswith("/test")


class _Strict(BaseModel):
    # No NaN/inf in any float; strict types: a YAML boolean is not a number (see raysweep.config).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


#: Caps where a consumer has a limit or a size stops making sense: configurations of one sweep
#: (Optuna keeps every trial in memory; Tune keeps one object per trial), points of a grid
#: (counted arithmetically, never enumerated to count them), values of one categorical.
MAX_CONFIGS = 100_000
MAX_GRID_POINTS = 100_000
MAX_CATEGORIES = 10_000
MAX_CPUS_PER_TRIAL = 1024
MAX_GPUS_PER_TRIAL = 64
#: MLflow stores experiment names in a 256-character column.
MAX_EXPERIMENT_NAME = 256
# ASHA's max_t (epochs) when budget.max_epochs is unset; search.make_scheduler uses it too.
ASHA_DEFAULT_MAX_EPOCHS = 100
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _number(v: Any) -> Any:
    return float(v) if isinstance(v, str) and _NUMBER.match(v.strip()) else v


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class ParamSpec(_Strict):
    """One hyperparameter: a distribution over values, or a constant."""

    distribution: Distribution | None = Field(
        None, description="omitted: values -> categorical, value -> constant, integer bounds -> "
                          "int_uniform, real bounds -> uniform")
    min: float | int | None = Field(
        None, description="lower bound (a real value, never an exponent)"
    )
    max: float | int | None = Field(None, description="upper bound (inclusive)")
    step: float | int | None = Field(None, description="discretisation step (not with log scales)")
    values: list[Scalar] | None = Field(None, description="choices of a categorical parameter")
    value: Scalar = Field(None, description="the value of a constant parameter")
    when: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="suggest only when these parameters took these values")

    @model_validator(mode="before")
    @classmethod
    def _infer(cls, data: Any) -> Any:
        if isinstance(data, ParamSpec):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping such as {{min: 1, max: 5}}, {{values: [a, b]}} "
                             f"or {{value: X}}, got {data!r}")
        data = dict(data)
        # YAML 1.1 reads 1e-5 (no dot) as a string; a numeric string is meant as a number.
        if isinstance(data.get("values"), list):
            data["values"] = [_number(v) for v in data["values"]]
        if "value" in data:
            data["value"] = _number(data["value"])
        if data.get("distribution") is not None:
            return data
        if "values" in data:
            data["distribution"] = "categorical"
        elif "value" in data:
            data["distribution"] = "constant"
        elif _is_int(data.get("min")) and _is_int(data.get("max")) and (
                data.get("step") is None or _is_int(data.get("step"))):
            data["distribution"] = "int_uniform"
        elif "min" in data or "max" in data:
            data["distribution"] = "uniform"
        else:
            raise ValueError("give values: [...], value: X, or min/max bounds "
                             "(with an optional distribution)")
        return data

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        d = self.distribution
        present = {k for k in ("min", "max", "step", "values") if getattr(self, k) is not None}
        if self.value is not None and d != "constant":
            present.add("value")
        if d == "constant":
            if present:
                raise ValueError(
                    f"a constant takes only value:, remove {', '.join(sorted(present))}"
                )
            return self
        if d == "categorical":
            if present - {"values"}:
                raise ValueError(f"categorical takes only values:, remove "
                                 f"{', '.join(sorted(present - {'values'}))}")
            if not self.values:
                raise ValueError("categorical needs a non-empty values: list")
            if len(self.values) > MAX_CATEGORIES:
                raise ValueError(f"categorical has {len(self.values)} values, more than "
                                 f"{MAX_CATEGORIES}; use a range (min/max) instead")
            if len({json.dumps(v) for v in self.values}) != len(self.values):
                raise ValueError(f"categorical values must be unique, got {self.values}")
            return self
        if present & {"values", "value"}:
            raise ValueError(f"{d} takes min/max(/step), not values/value; use values: for a "
                             f"categorical")
        if self.min is None or self.max is None:
            raise ValueError(f"{d} needs both min and max")
        if not self.min < self.max:
            raise ValueError(f"{d} needs min < max, got min={self.min}, max={self.max}")
        log = d in ("loguniform", "int_loguniform")
        if log and self.min <= 0:
            raise ValueError(f"{d} needs min > 0, got min={self.min}")
        if self.step is not None:
            if log:
                raise ValueError(f"{d} cannot take a step (Optuna has no stepped log scale); "
                                 f"remove step or use values: [...]")
            if not self.step > 0:
                raise ValueError(f"step must be > 0, got step={self.step}")
            if self.step > self.max - self.min:
                raise ValueError(f"step={self.step} is larger than the range max - min = "
                                 f"{self.max - self.min:g}, so only min would ever be tried; "
                                 f"use a smaller step or value: {self.min}")
        if d is not None and d.startswith("int"):
            for k in ("min", "max", "step"):
                v = getattr(self, k)
                if (
                    v is not None
                    and not _is_int(v)
                    and not (isinstance(v, float) and v.is_integer())
                ):
                    raise ValueError(f"{d} needs integer {k}, got {k}={v}")
        return self

    @property
    def is_int(self) -> bool:
        return self.distribution in ("int_uniform", "int_loguniform")

    @property
    def log(self) -> bool:
        return self.distribution in ("loguniform", "int_loguniform")

    def bounds(self) -> tuple[Any, Any]:
        if self.is_int:
            return int(self.min), int(self.max)  # type: ignore[arg-type]
        return float(self.min), float(self.max)  # type: ignore[arg-type]

    def conditions(self) -> dict[str, list[Scalar]]:
        return {k: (v if isinstance(v, list) else [v]) for k, v in self.when.items()}

    def n_values(self) -> int | None:
        """How many values a grid search visits (arithmetic, nothing is enumerated), or
        ``None`` when the range is continuous."""
        d = self.distribution
        if d == "constant":
            return 1
        if d == "categorical":
            return len(self.values or [])
        lo, hi = self.bounds()
        if self.is_int:
            if self.log and not self.step:
                return int(hi - lo + 1)
            return int((hi - lo) // int(self.step or 1) + 1)
        if self.step is None:
            return None
        return math.floor((hi - lo) / self.step + 1e-9) + 1

    def discrete_values(self, max_points: int = MAX_GRID_POINTS) -> list[Scalar] | None:
        """Every value a grid search visits, or ``None`` when the range is continuous or has
        more than ``max_points`` values."""
        n = self.n_values()
        if n is None or n > max_points:
            return None
        d = self.distribution
        if d == "constant":
            return [self.value]
        if d == "categorical":
            return list(self.values or [])
        lo, hi = self.bounds()
        if self.is_int:
            return list(range(lo, hi + 1, int(self.step or 1)))
        return [round(lo + i * self.step, 12) for i in range(n)]  # type: ignore[operator]


class MethodSpace(_Strict):
    """The parameters of one method in a comparison; omitted = its bundled search space."""

    parameters: dict[str, ParamSpec] | None = Field(
        None, description="omitted or null: the ranges of search_spaces/<method>.yaml")


class ObjectiveSpec(_Strict):
    """One objective: a metric (or ``composite``), a goal, and an optional target value."""

    metric: str = Field("composite", description="'composite' (see objective:) or a metric key")
    goal: Literal["minimize", "maximize"] = "minimize"
    target: float | None = Field(
        None, ge=-1e9, le=1e9,
        description="optimise the distance |metric - target| (goal must be minimize)")

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if reads_test(v):
            twin = v[: -len("/test")] + "/val" if v.endswith("/test") else None
            raise ValueError(f"objective metric {v!r} reads the test split, which selection must "
                             f"never see (test is for reporting)"
                             + (f"; use its selection twin {twin!r}" if twin else
                                "; use an oracle-referenced term such as 'dist/heldout_acc/val' "
                                "or metric: composite"))
        if v in KNOWN_METRICS:
            return v
        if v in METRICS:  # declared, but not something a sweep trial records before selecting
            raise ValueError(f"metric {v!r} is not recorded by a sweep trial before its "
                             f"objective is computed ({METRICS[v].meaning}); use metric: "
                             f"composite or one of raysweep metrics --all with role selection")
        raise ValueError(unknown_metric_message(v, KNOWN_METRICS))

    @model_validator(mode="after")
    def _check(self) -> ObjectiveSpec:
        if self.metric == "composite" and (self.goal != "minimize" or self.target is not None):
            raise ValueError("the composite is minimised and takes no target; set its weights "
                             "under objective:")
        if self.target is not None and self.goal != "minimize":
            raise ValueError(f"a target makes the objective |metric - target|, which is "
                             f"minimised; set goal: minimize (got {self.goal})")
        # A goal against the declared direction would search for the worst model.
        declared = METRICS[self.metric].direction if self.metric in METRICS else "none"
        wrong = {"max": "minimize", "min": "maximize"}.get(declared)
        if self.target is None and self.goal == wrong:
            right = "maximize" if wrong == "minimize" else "minimize"
            given = "" if "goal" in self.model_fields_set else " (the default)"
            raise ValueError(f"goal: {self.goal}{given}, but "
                             f"{'higher' if declared == 'max' else 'lower'} {self.metric} is "
                             f"better (raysweep metrics {self.metric}); set goal: {right}, or "
                             f"give a target to aim at a value")
        return self

    @property
    def key(self) -> str:
        """The result key the trainable reports for this objective."""
        if self.metric == "composite":
            return "objective"
        if self.target is not None:
            return f"{self.metric}_to_{self.target:g}"
        return self.metric

    @property
    def mode(self) -> str:
        return "min" if self.goal == "minimize" else "max"

    def uses_cost(self, composite: ObjectiveConfig) -> bool:
        """Whether the objective rewards spending less (then ASHA's stopped trials look good)."""
        if self.metric == "composite":
            return composite.w_cost > 0
        return self.metric.startswith(("time/", "cost/"))


class EarlyTerminate(_Strict):
    """ASHA early stopping on the per-epoch objective (never with a time objective)."""

    type: Literal["asha"] = "asha"
    grace_period: int = Field(
        1, ge=1, le=100_000, description="epochs before a trial may be stopped"
    )
    reduction_factor: float = Field(
        2.0, gt=1, le=100, description="keep the best 1/reduction_factor"
    )
    brackets: int = Field(1, ge=1, le=8)


class SearchSpec(_Strict):
    algorithm: Literal["tpe", "random", "grid", "nsga2", "gp", "cmaes", "qmc"] = Field(
        "tpe", description="Optuna sampler (grid enumerates every point of a discrete space)")
    num_samples: int | None = Field(
        None, ge=1, le=MAX_CONFIGS, description="configurations to try (each runs once per seed); "
                                "default 20, or the grid size for grid")
    max_concurrent: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="trials at a time (default: CPUs / resources_per_trial.cpu)",
    )
    max_failed_trials: int | None = Field(
        None,
        ge=0,
        le=MAX_CONFIGS,
        description="stop the sweep (exit 1) after more failed trials than this",
    )
    trial_retries: int = Field(
        2, ge=0, le=10, description="restarts (from the last checkpoint) of a trial whose worker "
        "or node died; an exception raised by the method itself is never retried")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="sampler seed")
    n_startup_trials: int | None = Field(
        None, ge=0, le=MAX_CONFIGS, description="random trials before TPE/GP model the space "
                                "(default: num_samples // 4 clipped to [2, 10])")
    start_from_defaults: bool = Field(
        True, description="enqueue every method's paper defaults as its first trial")
    early_terminate: EarlyTerminate | None = None
    storage: str | None = Field(
        None, max_length=2000,
        description="where the Optuna study lives: unset = the sweep dir's optuna.journal; an "
                    "SQLAlchemy URL (sqlite:////abs/path.db, postgresql://user@host/db, "
                    "mysql+pymysql://user@host/db) = that database, study raysweep-<sweep id>; "
                    "no password in the URL (PGPASSWORD, ~/.pgpass, ~/.my.cnf)")

    @field_validator("storage")
    @classmethod
    def _storage_url(cls, v: str | None) -> str | None:
        return None if v is None else check_storage_url(v)


class BudgetSpec(_Strict):
    """What one trial may spend; the trainable enforces it, not the method."""

    max_epochs: int | None = Field(None, ge=1, le=100_000,
                                   description="stop a method after this many epochs")
    max_time_ratio: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="stop once unlearning time exceeds this share of retrain time",
    )
    max_seconds: float | None = Field(
        None, gt=0, le=30 * 86400, description="stop once unlearning time exceeds this"
    )
    max_cost_ratio: float | None = Field(
        None, gt=0, le=100, allow_inf_nan=False,
        description="stop once the sample-passes spent exceed this share of retraining's "
                    "(machine-independent; paper 004's budget is 0.15)")

    @model_validator(mode="after")
    def _one_time_limit(self) -> BudgetSpec:
        if self.max_time_ratio is not None and self.max_seconds is not None:
            raise ValueError("give max_time_ratio or max_seconds, not both")
        return self


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0, le=MAX_CPUS_PER_TRIAL, description="CPUs per trial")
    gpu: float = Field(0.0, ge=0, le=MAX_GPUS_PER_TRIAL,
                       description="GPUs per trial (fractions share a device)")


class EvaluationSpec(_Strict):
    catboost: bool = Field(False, description="run the CatBoost MIA in the full evaluation "
                                              "(~1 s)")
    batch_size: int | None = Field(None, ge=1, le=65536,
                                   description="evaluation batch size (default: 128 on CPU, "
                                               "1024 on an accelerator)")
    per_epoch: Literal["selection", "full"] = Field(
        "selection", description="after each epoch evaluate what selection reads (D_f, val) "
                                 "and the chosen epoch in full at the end, or everything "
                                 "after every epoch (ASHA always gets full)")
    selection_val_rows: int | None = Field(
        None, ge=50, le=10_000_000,
        description="per-epoch selection on a fixed stratified subset of this many val rows "
                    "(null = all of val); the chosen epoch is still evaluated on all of it")


class TrackingSpec(_Strict):
    experiment: str = Field("raysweep", min_length=1, max_length=MAX_EXPERIMENT_NAME,
                            pattern=r"^[^\x00-\x1f]+$", description="MLflow experiment name")
    checkpoints: Literal["best", "all", "none"] = Field(
        "best", description="log the best checkpoint of each method, of every trial, or none")


class SweepSpec(_Strict):
    """A sweep, or one method's search space (``method:`` + ``parameters:``)."""

    schema_version: Literal[1] = 1
    name: str | None = Field(None, description="sweep name (default: the file name)")
    description: str = ""
    tags: dict[str, str] = Field(
        default_factory=dict, description="free-form labels logged as tags of the sweep's "
                                          "parent MLflow run (the description becomes its note)")

    @field_validator("tags")
    @classmethod
    def _free_tags(cls, v: dict[str, str]) -> dict[str, str]:
        reserved = [k for k in v if k.startswith(("raysweep.", "mlflow."))]
        if reserved:
            raise ValueError(f"tags.{reserved[0]}: the 'raysweep.' and 'mlflow.' prefixes are "
                             f"reserved for the tags raysweep and MLflow write; rename the tag")
        return v
    workload: str = Field("fmnist-class-small", description="bundled workload name or YAML path")
    method: str | None = Field(None, description="one method (with parameters:)")
    parameters: dict[str, ParamSpec] | None = Field(None, description="the parameters of method:")
    methods: dict[str, MethodSpace | None] | None = Field(
        None, description="several methods compared in one sweep (method becomes a parameter)")
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig,
                                       description="weights of the composite objective")
    objectives: list[ObjectiveSpec] = Field(
        default_factory=lambda: [ObjectiveSpec()],
        description="one entry: a single objective; two or more: a Pareto search")
    search: SearchSpec = Field(default_factory=SearchSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=1000,
                              description="each configuration runs once per seed")
    resources_per_trial: Resources = Field(default_factory=Resources)
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="the methods' compute precision (autocast); evaluation and "
                            "full-precision methods (SSD, SalUn, gradient-mask) stay fp32")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)

    @field_validator("methods", mode="before")
    @classmethod
    def _list_of_names(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not all(isinstance(x, str) for x in v):
                raise ValueError("a methods: list holds method names; use a mapping "
                                 "{name: {parameters: ...}} to give ranges")
            return dict.fromkeys(v)
        return v

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be unique, got {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if self.method is not None and self.methods is not None:
            raise ValueError("give method: (+ parameters:) or methods:, not both")
        if self.parameters is not None and self.method is None:
            raise ValueError("parameters: belongs to a method: (or move it under methods.<name>)")
        if self.method is None and not self.methods:
            raise ValueError("name the method(s) to tune: method: NAME or methods: {NAME: ...}")
        keys = [o.key for o in self.objectives]
        if len(set(keys)) != len(keys):
            raise ValueError(f"objectives repeat a metric: {keys}")
        if not self.objectives:
            raise ValueError("objectives: needs at least one entry")
        multi = len(self.objectives) > 1
        alg = self.search.algorithm
        if multi and alg in ("cmaes", "gp"):
            raise ValueError(f"search.algorithm {alg} optimises one objective; for a Pareto "
                             f"search use nsga2, tpe, random, qmc or grid")
        if self.search.early_terminate is not None:
            if multi:
                raise ValueError("search.early_terminate (ASHA) needs a single objective")
            timed = [o.metric for o in self.objectives if o.uses_cost(self.objective)]
            if timed:
                raise ValueError(
                    "search.early_terminate (ASHA) cannot be combined with a cost or time "
                    "objective (stopped trials look cheap); set objective.w_cost: 0 or remove "
                    "early_terminate"
                )
            # ASHA's max_t is the epoch budget (100 when none is set): a grace period that
            # reaches it lets ASHA stop nothing, which is a mistake in the file, not at run time.
            max_t = self.budget.max_epochs or ASHA_DEFAULT_MAX_EPOCHS
            grace = self.search.early_terminate.grace_period
            if grace >= max_t:
                where = ("budget.max_epochs" if self.budget.max_epochs
                         else f"budget.max_epochs (unset: ASHA uses {max_t})")
                raise ValueError(
                    f"search.early_terminate.grace_period: {grace} must be below {where} = "
                    f"{max_t} for ASHA to stop anything; lower grace_period or raise "
                    f"budget.max_epochs")
        return self

    # -- views ------------------------------------------------------------------------------
    def method_names(self) -> list[str]:
        return [self.method] if self.method is not None else list(self.methods or {})

    def spaces(self) -> dict[str, dict[str, ParamSpec]]:
        """``{method: {param: spec}}``; bundled spaces must be resolved first
        (:func:`resolve_spec`)."""
        if self.method is not None:
            return {self.method: dict(self.parameters or {})}
        out = {}
        for name, ms in (self.methods or {}).items():
            if ms is None or ms.parameters is None:
                raise ValueError(f"methods.{name} has no parameters; call resolve_spec() first")
            out[name] = dict(ms.parameters)
        return out

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def searcher_metrics(self) -> tuple[list[str], list[str]]:
        """Result keys and modes the searcher optimises (``best/`` keys for one objective)."""
        if self.multi_objective:
            return [o.key for o in self.objectives], [o.mode for o in self.objectives]
        o = self.objectives[0]
        return [f"best/{o.key}"], [o.mode]

    def searchable(self) -> bool:
        """Whether any parameter can take more than one value (else there is nothing to search)."""
        try:
            spaces = self.spaces()
        except ValueError:
            return True  # bundled spaces not resolved yet: they decide
        return any((p.n_values() or 2) > 1 for ps in spaces.values() for p in ps.values())

    def num_configs(self) -> int:
        if not self.searchable():
            # Every sample would be the same configuration: run each method once per seed,
            # instead of repeating it num_samples times and counting the repeats as seeds.
            return len(self.method_names())
        if self.search.num_samples is not None:
            n = self.search.num_samples
            if self.search.algorithm == "grid":
                n = min(n, grid_size(self))
            return n
        if self.search.algorithm == "grid":
            return grid_size(self)
        return 20


# -- loading and cross-field validation ------------------------------------------------------

def parse_sweep(data: Any, source: str = "<sweep>") -> SweepSpec:
    """Validate a mapping as a :class:`SweepSpec` (schema only; see :func:`load_sweep`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got "
                          f"{top_level_kind(data)}")

    data = translate_wandb(data, source)  # W&B's own keys: exact translations, or one line
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, schema=SCHEMA_HINT)) from None


def bundled_space_path(method: str) -> Path:
    """``search_spaces/<method>.yaml`` (the file may not exist; see :func:`default_space`)."""
    return SEARCH_SPACES / f"{method.replace('+', '_plus')}.yaml"


def _space_file(method: str, path: Path, source: str) -> dict[str, ParamSpec]:
    """The ``parameters:`` of a YAML space file for ``method``."""
    spec = parse_sweep(load_yaml(path), str(path))
    if spec.method != method:
        raise ConfigError(f"{path}: method is {spec.method!r}, expected {method!r}")
    return dict(spec.parameters or {})


def default_space(method: str, source: str = "<sweep>") -> dict[str, ParamSpec] | None:
    """The method's default search space, or ``None`` when it has none.

    The space given at registration (``register_method(..., space=...)``: a ``parameters:``
    mapping or a YAML file) comes first, so a plugin ships its space in its own module; else the
    bundled ``search_spaces/<method>.yaml``.
    """
    registered = get_method(method).space
    if isinstance(registered, Path):
        if not registered.is_file():
            raise ConfigError(f"{source}: methods.{method}: the search space registered for "
                              f"{method!r} ({registered}) does not exist")
        return _space_file(method, registered, str(registered))
    if registered is not None:
        where = f"{source}: methods.{method} (space registered by {get_method(method).module})"
        params = registered
        if isinstance(params.get("parameters"), Mapping) and "method" in params:
            params = params["parameters"]       # a whole space document, not just its parameters
        data = {"schema_version": 1, "method": method, "parameters": dict(params)}
        spec = parse_sweep(data, where)
        return dict(spec.parameters or {})
    path = bundled_space_path(method)
    if not path.is_file():
        return None
    return _space_file(method, path, source)


def has_default_space(method: str) -> bool:
    """Whether :func:`default_space` finds a space for ``method`` (registered or bundled)."""
    return get_method(method).space is not None or bundled_space_path(method).is_file()


def _load_bundled(method: str, source: str) -> dict[str, ParamSpec]:
    space = default_space(method, source)
    if space is None:
        path = bundled_space_path(method)
        raise ConfigError(f"{source}: methods.{method}: no parameters given, no search space "
                          f"registered with the method and no bundled search space "
                          f"{path.relative_to(SEARCH_SPACES.parent)}; add parameters: {{...}} "
                          f"or register_method(..., space=...)")
    return space


def resolve_spec(spec: SweepSpec, source: str = "<sweep>") -> SweepSpec:
    """Fill bundled spaces, fold ``method:``/``parameters:`` into ``methods:`` and validate it all.

    The result is self-contained (it no longer refers to other files) and is what a sweep
    stores, logs and prints with ``raysweep validate --json``.
    """
    names = spec.method_names()
    for name in names:
        try:
            get_method(name)
        except ConfigError as exc:
            field = "method" if spec.method is not None else f"methods.{name}"
            raise ConfigError(f"{source}: {field}: {exc}") from None
    if spec.method is not None:
        spaces = {spec.method: dict(spec.parameters or {})}
        prefix = {spec.method: "parameters"}
    else:
        spaces = {}
        prefix = {}
        for name, ms in (spec.methods or {}).items():
            if ms is None or ms.parameters is None:
                spaces[name] = _load_bundled(name, source)
            else:
                spaces[name] = dict(ms.parameters)
            prefix[name] = f"methods.{name}.parameters"
    for name, params in spaces.items():
        _check_method_space(name, params, f"{source}: {prefix[name]}")
    if spec.search.algorithm == "grid":
        for name, params in spaces.items():
            for pname, p in params.items():
                if p.n_values() is None:
                    raise ConfigError(
                        f"{source}: {prefix[name]}.{pname}: grid search needs a discrete range; "
                        f"give values: [...] or a step (got {p.distribution} {p.min}..{p.max})")
        size = sum(_grid_count(params, MAX_GRID_POINTS) for params in spaces.values())
        if size > MAX_GRID_POINTS:
            raise ConfigError(
                f"{source}: search.algorithm: the grid has more than {MAX_GRID_POINTS} points "
                f"(the product of every parameter's number of values); use larger steps, fewer "
                f"values, or algorithm: tpe/random with search.num_samples")
    data = spec.model_dump(mode="json", exclude={"method", "parameters", "methods"})
    data["methods"] = {n: {"parameters": {k: v.model_dump(mode="json") for k, v in ps.items()}}
                       for n, ps in spaces.items()}
    resolved = SweepSpec.model_validate(data)
    trials = resolved.num_configs() * len(resolved.seeds)
    if trials > MAX_CONFIGS:
        raise ConfigError(
            f"{source}: search.num_samples: {resolved.num_configs()} configurations x "
            f"{len(resolved.seeds)} seed(s) = {trials} trials, more than the {MAX_CONFIGS} one "
            f"sweep may run; lower search.num_samples or split the sweep")
    return resolved


def _check_method_space(method: str, params: Mapping[str, ParamSpec], where: str) -> None:
    info = get_method(method)
    fields = list(info.config.model_fields)
    for pname, p in params.items():
        if pname not in fields:
            raise ConfigError(f"{where}.{pname}: {method} has no parameter {pname!r}"
                              f"{did_you_mean(pname, fields)} (valid: {', '.join(fields)})")
        for cond, vals in p.conditions().items():
            if cond == pname:
                raise ConfigError(f"{where}.{pname}.when: a parameter cannot depend on itself")
            if cond not in params:
                raise ConfigError(
                    f"{where}.{pname}.when: {cond!r} is not a parameter of this space"
                    f"{did_you_mean(cond, params)}; conditions refer to other "
                    f"parameters listed here"
                )
            other = params[cond]
            choices = other.discrete_values()
            if other.distribution not in ("categorical", "constant") and choices is None:
                raise ConfigError(f"{where}.{pname}.when.{cond}: conditions need a categorical or "
                                  f"constant parameter, {cond!r} is {other.distribution}")
            for v in vals:
                if choices is not None and v not in choices:
                    raise ConfigError(f"{where}.{pname}.when.{cond}: {v!r} is not one of "
                                      f"{cond}'s values {choices}")
        # A real-valued range on an integer field: every suggested 2.7 fails in the worker.
        annotation = info.config.model_fields[pname].annotation
        kinds = accepted_scalars(annotation)
        if p.distribution in ("uniform", "loguniform") and "int" in kinds \
                and not kinds & {"float", "any"}:
            raise ConfigError(
                f"{where}.{pname}: {method}.{pname} is an integer but distribution "
                f"{p.distribution} draws real values; use distribution: int_"
                f"{p.distribution} with integer min/max (see: raysweep methods show {method})")
        # Every value the search can produce must be valid for the method's config.
        probes: list[tuple[str, Any]] = []
        if p.distribution == "constant":
            probes.append(("value", p.value))
        elif p.distribution == "categorical":
            probes += [("values", v) for v in p.values or []]
        else:
            lo, hi = p.bounds()
            probes += [("min", lo), ("max", hi)]
        for label, value in probes:
            check_number_value(value, annotation, f"{where}.{pname}.{label}")
            try:
                info.config(**{pname: value})
            except ValidationError as exc:
                rule = error_message(pick_error(exc.errors()))
                raise ConfigError(f"{where}.{pname}.{label}: {value!r} is not allowed for "
                                  f"{method}.{pname}: {rule} (see: raysweep methods show {method})"
                                  ) from None
    _condition_order(params, where)  # rejects cycles


def _condition_order(params: Mapping[str, ParamSpec], where: str = "") -> list[str]:
    """Parameters in an order where every ``when:`` dependency comes first (YAML order kept)."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*stack, name))
            raise ConfigError(f"{where}: when: conditions form a cycle ({cycle})")
        state[name] = 1
        for dep in params[name].when:
            if dep in params:
                visit(dep, (*stack, name))
        state[name] = 2
        order.append(name)

    for name in params:
        visit(name, ())
    return order


def condition_order(params: Mapping[str, ParamSpec]) -> list[str]:
    return _condition_order(params)


def active(p: ParamSpec, chosen: Mapping[str, Any]) -> bool:
    """Whether ``p``'s ``when:`` conditions hold for the values chosen so far."""
    return all(k in chosen and chosen[k] in vals for k, vals in p.conditions().items())


def load_sweep(path: str | Path, overrides: list[str] | None = None, *,
               resolve: bool = True) -> SweepSpec:
    """Load, override (``--set k=v``), validate and (by default) resolve a sweep YAML."""
    source = str(path)
    data = load_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level")
        data = apply_overrides(data, overrides)
    if isinstance(data, dict) and data.get("name") is None:
        data = {**data, "name": Path(path).stem}
    if isinstance(data, dict) and isinstance(data.get("workload"), str):
        # A workload file next to the sweep file works from any directory.
        ref = data["workload"]
        if (ref.endswith((".yaml", ".yml")) and not Path(ref).is_absolute()
                and not Path(ref).exists() and (Path(path).parent / ref).exists()):
            data = {**data, "workload": str((Path(path).parent / ref).resolve())}
    spec = parse_sweep(data, source)
    return resolve_spec(spec, source) if resolve else spec


# -- grid --------------------------------------------------------------------------------------

def _method_grid(params: Mapping[str, ParamSpec]) -> Iterator[dict[str, Any]]:
    order = _condition_order(params)

    def rec(i: int, chosen: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if i == len(order):
            yield dict(chosen)
            return
        name = order[i]
        p = params[name]
        if not active(p, chosen):
            yield from rec(i + 1, chosen)
            return
        for v in p.discrete_values() or []:
            chosen[name] = v
            yield from rec(i + 1, chosen)
            del chosen[name]

    yield from rec(0, {})


def _grid_count(params: Mapping[str, ParamSpec], cap: int) -> int:
    """The number of grid points of one method, ``when:`` conditions honoured, computed without
    building them: only the values of parameters that others depend on are enumerated (they
    are categorical), the rest multiply. Stops as soon as the count passes ``cap`` (every
    enumerated combination is worth at least one point), so the work is bounded by ``cap``."""
    order = _condition_order(params)
    parents = {c for p in params.values() for c in p.when}
    total = 0

    def rec(i: int, chosen: dict[str, Any], mult: int) -> None:
        nonlocal total
        if total > cap:
            return
        if i == len(order):
            total += mult
            return
        name = order[i]
        p = params[name]
        if not active(p, chosen):
            rec(i + 1, chosen, mult)
        elif name in parents:
            for v in p.discrete_values() or []:
                chosen[name] = v
                rec(i + 1, chosen, mult)
                del chosen[name]
                if total > cap:
                    return
        else:
            rec(i + 1, chosen, mult * (p.n_values() or 1))

    rec(0, {}, 1)
    return total


def grid_size(spec: SweepSpec, cap: int = MAX_GRID_POINTS) -> int:
    """How many points :func:`grid_points` has (``cap + 1`` or more means "too many")."""
    return sum(_grid_count(params, cap) for params in spec.spaces().values())


def grid_points(spec: SweepSpec) -> list[tuple[str, dict[str, Any]]]:
    """Every ``(method, params)`` point of a discrete space, ``when:`` conditions honoured."""
    out: list[tuple[str, dict[str, Any]]] = []
    for method, params in spec.spaces().items():
        out += [(method, point) for point in _method_grid(params)]
    return out


def json_schema() -> dict[str, Any]:
    schema = SweepSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://raysweep.dev/schemas/sweep.schema.json"
    schema["title"] = "raysweep sweep / search space"
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text())
    return path


if __name__ == "__main__":  # python -m raysweep.sweep.space  -> rewrites the JSON Schema
    print(write_schema())
