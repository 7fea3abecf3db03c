"""Regression suites: which (workload, method, config, seeds) to run and how much worse is too
much.

A suite is a YAML file (``search_spaces/suites/<name>.yaml``)::

    schema_version: 1
    name: smoke
    seeds: [0, 1]                       # default evaluation seeds of every entry (below 1000)
    seed_scope: method                  # method (default) | full; overridable per entry
    catboost: false                     # the CatBoost MIA is slow; opt in per suite
    relearn: {lr: 0.01, max_epochs: 10} # optional: relearn/epochs of every run (paper 003)
    tolerances:                         # metric -> how far it may move in the worse direction
      forget/acc: {direction: lower_is_better, abs: 0.05}
      test/acc_retain_classes: {direction: higher_is_better, abs: 0.03, rel: 0.05}
      mia/lr_auc: {direction: target, target: 0.5, abs: 0.05}
    entries:
      - {workload: digits-class, method: finetune}                  # config: default
      - {workload: digits-class, method: ssd, config: {selection_weighting: 10}}  # pinned
      - workload: digits-class
        method: scrub
        config: tuned                   # tuned by a small sweep first, then run on the seeds
        tune: {num_samples: 8}          # tuning seeds: [1000] by default
                                        # (never an evaluation seed)
        tolerances: {forget/acc: {abs: 0.1}}   # per-entry override, merged field by field
      - {workload: digits-class, method: [bad-teaching, sftc]}       # one entry per method

``config`` is ``default`` (the method's paper defaults, its ``MethodConfig`` defaults), a
mapping (pinned values, validated against the method's config now, before anything trains), or
``tuned``. Every entry has an id that baselines and reports key on: ``name``, or
``<workload>/<method>`` (``<workload>/<method>@tuned`` for a tuned config, so that a default and a
tuned entry of one method sit side by side); ids must be unique, so two pinned configs of one
method on one workload need a ``name``.

Seeds. An entry's ``seeds`` (default: the suite's) are its *evaluation* seeds: each runs the
method once and the report aggregates over them. A ``config: tuned`` entry's sweep runs on its
*tuning* seeds, ``tune.seeds``, which default to ``[1000]``: tuning seeds live at 1000 and above,
evaluation seeds below, so that the config is never chosen on a seed it is then scored on. A
suite whose ``tune.seeds`` overlap the entry's evaluation seeds fails to load. The tuning sweep
selects on the ``val`` split (its ``objective``); every report reads ``test`` (``*/test``,
``objective/test``).

``seed_scope`` (suite level, overridable per entry) says what an evaluation seed varies:

* ``method`` (default): only the unlearning run (its initialisation, batch order, sampling); the
  workload (data subset, forget set, original model, retrained oracle) is the one its file
  defines, prepared once.
* ``full``: the workload too: seed ``s`` prepares the workload with its ``seed`` field replaced
  by ``s`` (the data subset and forget set are redrawn, the original and the oracle retrained),
  each cached under its own key, so the spread over seeds includes the data draw. A tuned entry's
  sweep then runs on the workload drawn with its first tuning seed. The reference rows of a
  report are the mean over the evaluation seeds' workloads.

Scales (optional): named variants of the suite, chosen with ``raysweep bench run SUITE --scale
NAME``; without ``--scale`` a suite that defines ``small`` runs at ``small``, one without scales
runs as written. A scale changes sizes, never the comparison::

    scales:
      small: {description: the file as written (2 CPU cores, under an hour)}
      paper:
        description: the papers' sizes (GPU / cluster)
        seeds: [0, 1, 2, 3, 4]                 # replaces the suite's seeds
        tune: {num_samples: 50}                # merged into every tuned entry's tune:
        workloads:                             # workload name -> fields merged over its file
          fmnist-class-conv:                   # (dataset, model, train merge field by field;
            dataset: {train_size: null, image_size: 32}   # a scenario given here replaces
            model: {name: resnet18-cifar}                 # the file's)
        only: [fmnist-class-conv]              # keep only the entries on these workloads
        set: ["entries.scrub.max_epochs=5"]    # --set overrides, applied before the user's

A scale other than ``small`` records under the suite name ``<name>-<scale>`` (its own MLflow
experiment and baselines), so runs of different sizes are never compared with each other. Every
scale is validated on load (workload overrides must parse, names must exist).

Tolerance semantics (see :func:`raysweep.bench.baseline.compare`): with ``worse_by`` the change
of the seed mean in the bad direction (for ``direction: target``, the growth of the distance to
``target``), a metric regresses when ``worse_by > max(abs, rel * |baseline|)`` and, when
``min_sigma`` is set, the change is also at least ``min_sigma`` pooled seed standard deviations.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raysweep._resources import search_spaces_dir
from raysweep.config import (
    MAX_SEED,
    WorkloadConfig,
    check_number_value,
    load_yaml,
    parse_model,
    parse_override,
    top_level_kind,
)
from raysweep.errors import ConfigError, did_you_mean
from raysweep.methods import get_method, make_config
from raysweep.metrics.registry import METRICS, unknown_metric_message
from raysweep.models import list_models
from raysweep.workload import cache_root, load_workload_config, task_of

__all__ = ["Direction", "Tolerance", "TuneSpec", "SuiteEntry", "SuiteConfig", "SuiteScale",
           "Entry", "PaperDefault",
           "Suite", "load_suite", "apply_suite_overrides", "BUNDLED_SUITES", "DEFAULT_SCALE",
           "TUNING_SEED_BASE", "SELECTION_SPLIT", "REPORT_SPLIT", "SeedScope"]

BUNDLED_SUITES = search_spaces_dir() / "suites"
DEFAULT_SCALE = "small"
#: Tuning seeds live at this value and above, evaluation seeds below (see the module docstring).
TUNING_SEED_BASE = 1000
SELECTION_SPLIT, REPORT_SPLIT = "val", "test"
SeedScope = Literal["method", "full"]

Direction = Literal["higher_is_better", "lower_is_better", "target"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_ID_FORBIDDEN = re.compile(r"[.\s]")


def _check_unique_seeds(seeds: list[int] | None) -> None:
    """The ``seeds:`` validators' check: no seed given twice (None: not given)."""
    if seeds is not None and len(set(seeds)) != len(seeds):
        raise ValueError("must not repeat a seed")


class _Strict(BaseModel):
    # No NaN/inf in any float (a NaN tolerance or target disables the gate); strict types: a
    # YAML boolean is not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
_DEVICE = re.compile(r"^(?:auto|cpu|mps|cuda(?::\d{1,3})?)$")


class Tolerance(_Strict):
    """How far one metric's seed mean may move in the worse direction before it is a regression.

    At suite level ``direction`` and at least one of ``abs``/``rel`` are required; an entry's
    tolerance may give only the fields it changes (they are merged over the suite's).
    """

    direction: Direction | None = Field(
        None, description="higher_is_better, lower_is_better, or target "
                          "(closer to `target` is better)")
    abs: float | None = Field(None, ge=0, le=1e9,
                              description="allowed absolute change in the worse direction")
    rel: float | None = Field(None, ge=0, le=1e6,
                              description="allowed change as a fraction of |baseline|")
    target: float | None = Field(None, ge=-1e9, le=1e9,
                                 description="ideal value when direction is target (e.g. MIA 0.5)")
    min_sigma: float | None = Field(
        None, ge=0, le=1000,
        description="also require the change to be >= this many pooled seed std devs")

    def merged(self, override: Tolerance | None) -> Tolerance:
        if override is None:
            return self
        return Tolerance(**{**self.model_dump(), **override.model_dump(exclude_none=True)})

    def check_complete(self, where: str) -> None:
        if self.direction is None:
            raise ConfigError(f"{where}.direction: missing; one of higher_is_better, "
                              f"lower_is_better, target")
        if self.abs is None and self.rel is None:
            raise ConfigError(f"{where}: give abs and/or rel (how much worse is allowed), "
                              f"got {self.model_dump(exclude_none=True)}")
        if self.direction == "target" and self.target is None:
            raise ConfigError(f"{where}.target: missing; direction: target needs the ideal value, "
                              f"e.g. target: 0.5 for an MIA AUC")
        if self.direction != "target" and self.target is not None:
            raise ConfigError(f"{where}.target: only meaningful with direction: target, "
                              f"got direction {self.direction}")

    def describe(self) -> str:
        parts = []
        if self.abs is not None:
            parts.append(f"±{self.abs:g}")
        if self.rel is not None:
            parts.append(f"{self.rel * 100:g}%")
        text = " or ".join(parts)
        if self.min_sigma is not None:
            text += f", ≥{self.min_sigma:g}σ"
        return text


class TuneSpec(_Strict):
    """The small sweep behind ``config: tuned`` (run by :func:`raysweep.sweep.runner.run_sweep`).

    The fields map onto a sweep spec (``search_spaces/sweeps/*.yaml``) with the entry's workload
    and method; ``parameters`` defaults to the method's bundled space
    (``search_spaces/<method>.yaml``), ``objective``/``objectives``/``budget`` to the sweep's.
    """

    num_samples: int = Field(8, ge=1, le=100_000, description="configurations the sweep tries")
    algorithm: Literal["tpe", "random", "grid", "nsga2", "gp", "cmaes", "qmc"] = Field(
        "tpe", description="Optuna sampler")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="sampler seed")
    seeds: list[Seed] = Field(default_factory=lambda: [TUNING_SEED_BASE], min_length=1,
                              max_length=1000,
                             description="tuning seeds: each configuration runs once per seed "
                                         "while tuning; they live at 1000+ and must not overlap "
                                         "the entry's evaluation seeds (default [1000])")
    max_concurrent: int | None = Field(None, ge=1, le=10_000, description="trials at a time")
    parameters: dict[str, Any] | None = Field(
        None, description="the method's ranges (default: its bundled search space)")
    objective: dict[str, Any] | None = Field(None,
                                             description="weights of the composite objective")
    objectives: list[dict[str, Any]] | None = Field(
        None, description="the sweep's objectives (one entry: the best trial is taken)")
    budget: dict[str, Any] | None = Field(None,
                                          description="per-trial budget, e.g. {max_epochs: 3}")
    cache: bool = Field(False, description="reuse the config found by an identical earlier tuning "
                                           "(same workload, method and tune spec)")


class SuiteEntry(_Strict):
    name: str | None = Field(
        None, description="entry id (default: <workload>/<method>, @tuned appended when tuned)")
    workload: str = Field(
        ..., description="bundled workload name or YAML path (relative to the suite)")
    method: str | list[str] = Field(..., description="method, or a list: one entry per method")
    config: Literal["default", "tuned"] | dict[str, Any] = Field(
        "default", description="default (paper defaults), tuned, or a mapping of pinned values")
    tune: TuneSpec | None = None
    seeds: list[Seed] | None = Field(None, min_length=1, max_length=1000,
                                     description="evaluation seeds")
    seed_scope: SeedScope | None = Field(
        None, description="method or full (default: the suite's seed_scope)")
    max_epochs: int | None = Field(None, ge=1, le=100_000, description="epoch budget of every run")
    tolerances: dict[str, Tolerance] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str | None) -> str | None:
        if v is not None and (not v or _ID_FORBIDDEN.search(v)):
            raise ValueError("must be non-empty without dots or spaces")
        return v

    @field_validator("method")
    @classmethod
    def _methods_ok(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("must name at least one method")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, v: list[int] | None) -> list[int] | None:
        _check_unique_seeds(v)
        return v

    @model_validator(mode="after")
    def _config_shape(self) -> SuiteEntry:
        if isinstance(self.method, list) and isinstance(self.config, dict) and self.config:
            raise ValueError("a pinned config belongs to one method; write one entry per method")
        if self.tune is not None and self.config != "tuned":
            raise ValueError("tune: is only used with config: tuned")
        if isinstance(self.method, list) and self.name is not None and len(self.method) > 1:
            raise ValueError("name: cannot be shared by several methods; drop it or split the "
                             "entry")
        return self


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0, le=1024, description="CPUs per run (Ray task)")
    gpu: float = Field(0.0, ge=0, le=64, description="GPUs per run (Ray task)")


class SuiteScale(_Strict):
    """One named size of a suite (``scales:``; see the module docstring)."""

    description: str = ""
    seeds: list[Seed] | None = Field(None, min_length=1, max_length=1000,
                                     description="replaces the suite's seeds")
    tune: dict[str, Any] | None = Field(
        None, description="fields merged into every tuned entry's tune: (e.g. num_samples)")
    workloads: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="workload name -> fields merged over its YAML")
    only: list[str] | None = Field(None, min_length=1,
                                   description="keep only the entries on these workloads")
    set: list[str] = Field(default_factory=list, description="--set overrides, before the user's")

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, v: list[int] | None) -> list[int] | None:
        _check_unique_seeds(v)
        return v


class RelearnSpec(_Strict):
    """Relearn time (paper 003) of every run's final model:
    :func:`raysweep.metrics.relearn_time`."""

    lr: float = Field(0.01, gt=0, le=10,
                      description="fine-tuning learning rate on D_f (SGD, momentum 0.9)")
    max_epochs: int = Field(10, ge=1, le=1000, description="cap; reported when never relearned")
    tolerance: float = Field(0.02, ge=0, le=1,
                             description="within this of the original's forget accuracy")
    batch_size: int = Field(64, ge=1, le=65536)
    max_samples: int | None = Field(None, ge=1, le=100_000_000,
                                    description="fine-tune on at most this many D_f samples")


_SOURCE = re.compile(r"^paper \d{3}, \S.*$")


class PaperDefault(_Strict):
    """A paper's own hyperparameters for one method (and model): ``default`` rows run them.

    ``source`` names the paper and where it states the values (``paper 000, Section 4.1``), so
    that every report can show it beside the value.
    """

    method: str = Field(..., description="the method whose defaults these values override")
    models: list[str] | None = Field(
        None, min_length=1,
        description="the workloads' model.name it applies to (default: every model)")
    values: dict[str, Any] = Field(..., min_length=1,
                                   description="config field -> the paper's value")
    source: str = Field(..., max_length=300,
                        description="where the paper states the values, "
                                    "e.g. 'paper 000, Section 4.1'")

    @field_validator("source")
    @classmethod
    def _source_ok(cls, v: str) -> str:
        if not _SOURCE.match(v):
            raise ValueError("must name the paper and the place, e.g. 'paper 000, Section 4.1' "
                             "or 'paper 003, Table 6'")
        return v


class ForgettingQualitySpec(_Strict):
    """Forgetting quality from many oracles (:mod:`raysweep.bench.forgetting`) for the suite's
    rows of a fixed config (``default``, ``pinned``): ``k`` originals, ``k`` oracles and ``k``
    unlearned models per method and workload, after the entries ran; its metrics (``fq/*``)
    join those rows' columns."""

    k: int = Field(4, ge=4, le=512, description="models per population (originals, oracles, "
                                                 "unlearned per method; the attacks need 4)")
    workloads: list[str] | None = Field(
        None, max_length=100, description="only these workloads (default: every workload)")


class SuiteConfig(_Strict):
    schema_version: Literal[1] = 1
    name: str = Field(..., max_length=200,
                      description="suite name; the MLflow experiment is raysweep-bench/<name>")
    description: str = ""
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=1000,
                              description="default evaluation seeds of every entry (below 1000)")
    seed_scope: SeedScope = Field(
        "method", description="what an evaluation seed varies: method (the unlearning run only) "
                              "or full (the workload's seed too: data subset, forget set, "
                              "original and oracle)")
    device: str = Field("auto", description="cpu, cuda, cuda:1 or auto")
    catboost: bool = Field(False, description="compute the CatBoost MIA (slow)")
    relearn: RelearnSpec | None = Field(
        None,
        description="also measure relearn time (metric relearn/epochs; trains a copy per run)")
    forgetting_quality: ForgettingQualitySpec | None = Field(
        None, description="also score the fixed-config rows' methods by forgetting quality "
                          "from k "
                          "oracles (metrics fq/quality, fq/score, fq/lira_auc; trains 2k models "
                          "per workload plus k per method)")
    resources: Resources = Field(default_factory=Resources)
    report_metrics: list[str] | None = Field(
        None, description="metrics plotted in the report (default: the toleranced ones + time)")
    tolerances: dict[str, Tolerance] = Field(default_factory=dict)
    scales: dict[str, SuiteScale] = Field(
        default_factory=dict, description="named sizes chosen with --scale (default: small)")
    paper_defaults: list[PaperDefault] = Field(
        default_factory=list, max_length=1000,
        description="the paper's hyperparameters per method and model; default rows run them")
    min_test_acc: float | None = Field(
        None, gt=0, lt=1, description="accuracy floor: a row (or a workload's original) below it "
                                      "on test is flagged and left out of rankings")
    claims: str | None = Field(
        None, description="claims file (YAML, relative to the suite): the verdict table's claims")
    entries: list[SuiteEntry] = Field(..., min_length=1, max_length=10_000)

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"not a device: {v!r}; use cpu, cuda, cuda:N, mps or auto")
        return v

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("use letters, digits, '-' and '_' only")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, v: list[int]) -> list[int]:
        _check_unique_seeds(v)
        return v


@dataclass(frozen=True)
class Entry:
    """One resolved suite entry: a method with one config on one workload, over its seeds."""

    id: str
    workload_ref: str                  # bundled name, or an absolute path to the YAML
    workload: WorkloadConfig
    method: str
    config_kind: Literal["default", "pinned", "tuned"]
    config: dict[str, Any]
    seeds: tuple[int, ...]
    tolerances: dict[str, Tolerance]
    max_epochs: int | None = None
    tune: TuneSpec | None = None
    seed_scope: SeedScope = "method"
    #: config field -> where the paper states the value (the suite's paper_defaults)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.method} (tuned)" if self.config_kind == "tuned" else self.method

    def config_hash(self) -> str:
        blob = json.dumps({"kind": self.config_kind, "config": self.config,
                           "tune": self.tune.model_dump() if self.tune else None}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def workload_for(self, seed: int) -> WorkloadConfig:
        """The workload evaluation seed ``seed`` runs on: the file's with ``seed_scope: method``,
        the file's with ``seed`` replaced by ``seed`` with ``seed_scope: full``."""
        if self.seed_scope == "full" and seed != self.workload.seed:
            return self.workload.model_copy(update={"seed": seed})
        return self.workload

    def tuning_workload(self) -> WorkloadConfig:
        """The workload the tuning sweep runs on (``full``: drawn with the first tuning seed)."""
        if self.seed_scope == "full" and self.tune is not None:
            return self.workload_for(self.tune.seeds[0])
        return self.workload

    @property
    def tuning_seeds(self) -> tuple[int, ...]:
        return tuple(self.tune.seeds) if self.tune is not None else ()


@dataclass(frozen=True)
class Suite:
    config: SuiteConfig
    entries: tuple[Entry, ...]
    source: str
    raw: dict[str, Any] = field(default_factory=dict)
    scale: str | None = None           # the scale it was loaded at (None: the suite has none)
    claims: Any = None                 # the checked claims file (raysweep.bench.claims.ClaimsFile)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def experiment_name(self) -> str:
        return f"raysweep-bench/{self.config.name}"

    def report_metrics(self) -> list[str]:
        if self.config.report_metrics:
            return list(self.config.report_metrics)
        keys: list[str] = []
        for e in self.entries:
            for k in e.tolerances:
                if k not in keys:
                    keys.append(k)
        if "time/seconds" not in keys:
            keys.append("time/seconds")
        return keys

    def digest(self) -> str:
        blob = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def runs(self) -> int:
        return sum(len(e.seeds) for e in self.entries)

    def protocol(self) -> dict[str, Any]:
        """Which split selects, which reports, on which seeds: every report states it."""
        scopes = sorted({e.seed_scope for e in self.entries})
        return {
            "selection_split": SELECTION_SPLIT,
            "report_split": REPORT_SPLIT,
            "evaluation_seeds": sorted({s for e in self.entries for s in e.seeds}),
            "tuning_seeds": sorted({s for e in self.entries for s in e.tuning_seeds}),
            "seed_scope": scopes[0] if len(scopes) == 1 else "mixed",
            "entries": {e.id: {"evaluation_seeds": list(e.seeds),
                               "tuning_seeds": list(e.tuning_seeds), "seed_scope": e.seed_scope}
                        for e in self.entries},
        }


def _resolve_suite_path(ref: str | Path) -> Path:
    path = Path(ref)
    if path.exists() or str(ref).endswith((".yaml", ".yml")):
        return path
    bundled = BUNDLED_SUITES / f"{ref}.yaml"
    if bundled.exists():
        return bundled
    names = sorted(p.stem for p in BUNDLED_SUITES.glob("*.yaml"))
    raise ConfigError(f"suite {str(ref)!r} is neither a file nor a bundled suite"
                      f"{did_you_mean(str(ref), names)} (bundled: {', '.join(names) or 'none'})")


def _resolve_workload(ref: str, suite_dir: Path, where: str) -> tuple[WorkloadConfig, str]:
    """The workload config and a reference that works from any directory."""
    candidate = Path(ref)
    if not candidate.is_absolute() and ref.endswith((".yaml", ".yml")):
        local = suite_dir / candidate
        if local.exists():
            candidate = local
    resolved = str(candidate.resolve()) if candidate.exists() else ref
    try:
        return load_workload_config(resolved), resolved
    except ConfigError as exc:
        raise ConfigError(f"{where}.workload: {exc}") from None


def apply_suite_overrides(data: dict[str, Any], overrides: list[str],
                          source: str = "--set") -> dict[str, Any]:
    """Apply ``path=value`` overrides to raw suite data (values parsed as YAML).

    A path walks mappings by key and the ``entries`` list by index or by selector: an entry's
    ``name``, or a method name that selects every entry running that method (an entry listing
    several methods is first split into one entry per method, which shifts later indices). A
    config that is ``default`` becomes a mapping when a key under it is set. Examples::

        --set seeds=[0]
        --set entries.finetune.config.lr=1e-6
        --set entries.0.seeds=[1,2]
        --set tolerances.forget/acc.abs=0.1
    """
    out: dict[str, Any] = copy.deepcopy(data) or {}
    for item in overrides:
        parts, value, where = parse_override(item, source)
        _set_path(out, parts, value, where)
    return out


def _set_path(node: Any, parts: list[str], value: Any, where: str) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        targets = _select(node, head, where)
        for t in targets:
            if rest:
                _set_path(t, rest, value, where)
            else:
                raise ConfigError(f"{where}: cannot replace a whole list element; set one of "
                                  f"its fields")
        return
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: {head!r} is below a value that is not a mapping")
    if not rest:
        node[head] = value
        return
    child = node.get(head)
    if not isinstance(child, (dict, list)):
        # ``config: default`` (or a missing mapping) becomes a mapping to hold the new key.
        child = {}
        node[head] = child
    _set_path(child, rest, value, where)


def _select(items: list[Any], sel: str, where: str) -> list[Any]:
    if sel.lstrip("-").isdigit():
        i = int(sel)
        if not -len(items) <= i < len(items):
            raise ConfigError(f"{where}: index {i} is out of range "
                              f"(there are {len(items)} entries)")
        return [items[i]]
    # An entry that lists several methods is split in place into one entry per method, so that
    # a method's own config can be set (a pinned config belongs to one method).
    for i in range(len(items) - 1, -1, -1):
        it = items[i]
        if isinstance(it, dict) and isinstance(it.get("method"), list) and sel in it["method"]:
            items[i:i + 1] = [{**it, "method": m} for m in it["method"]]
    hits = [it for it in items if isinstance(it, dict)
            and (it.get("name") == sel or it.get("method") == sel)]
    if not hits:
        names: set[str] = set()
        for it in items:
            if isinstance(it, dict):
                m = it.get("method")
                names.update(str(x)
                             for x in ([it.get("name")] + (m if isinstance(m, list) else [m]))
                             if x)
        names = sorted(names)  # type: ignore[assignment]
        raise ConfigError(f"{where}: no entry is named {sel!r} or runs method {sel!r}"
                          f"{did_you_mean(sel, names)} (entries: {', '.join(names)})")
    return hits


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = (_deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict)
                  else v)
    return out


def _patched_workload(workload: WorkloadConfig, patch: dict[str, Any],
                      where: str) -> WorkloadConfig:
    # A scenario is one choice (its params belong to its selector): a patched one replaces it.
    base = workload.model_dump(mode="json")
    if "scenario" in patch:
        base.pop("scenario", None)
    merged = _deep_merge(base, patch)
    return parse_model(WorkloadConfig, merged, where)


def _write_workload(workload: WorkloadConfig) -> str:
    """A scale's patched workload as a YAML file (tuning sweeps take a workload by reference)."""
    blob = json.dumps(workload.model_dump(mode="json"), sort_keys=True)
    path = cache_root() / "bench-workloads" / \
        f"{workload.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{id(workload)}.tmp")
        tmp.write_text(yaml.safe_dump(workload.model_dump(mode="json"), sort_keys=False))
        tmp.replace(path)
    return str(path)


def _apply_scale(data: dict[str, Any], scale: str | None, src: str
                 ) -> tuple[dict[str, Any], str | None, SuiteScale | None]:
    """The raw suite at ``scale`` (see the module docstring), the scale's name and spec."""
    raw_scales = data.get("scales") or {}
    if not isinstance(raw_scales, dict):
        raise ConfigError(f"{src}: scales: expected a mapping of scale name -> settings")
    scales = {str(k): parse_model(SuiteScale, v or {}, f"{src}: scales.{k}")
              for k, v in raw_scales.items()}
    if scale is not None and scale not in scales:
        names = sorted(scales)
        raise ConfigError(f"--scale {scale!r}: suite {src} defines "
                          f"{'scales ' + ', '.join(names) if names else 'no scales'}"
                          f"{did_you_mean(scale, names)}")
    chosen = scale if scale is not None else (DEFAULT_SCALE if DEFAULT_SCALE in scales else None)
    if chosen is None:
        return data, None, None
    sc = scales[chosen]
    out = copy.deepcopy(data)
    if chosen != DEFAULT_SCALE and isinstance(out.get("name"), str):
        out["name"] = f"{out['name']}-{chosen}"
    if sc.seeds is not None:
        out["seeds"] = list(sc.seeds)
    if sc.tune:
        for e in out.get("entries") or []:
            if isinstance(e, dict) and e.get("config") == "tuned":
                e["tune"] = {**(e.get("tune") or {}), **sc.tune}
    if sc.set:
        out = apply_suite_overrides(out, sc.set, source=f"scales.{chosen}.set")
    return out, chosen, sc


#: Method runs (entries x seeds) one suite may hold: every run is kept in memory and in one
#: MLflow parent run.
MAX_SUITE_RUNS = 100_000


def _lower_is_better() -> tuple[str, ...]:
    return tuple(k for k, m in METRICS.items() if m.direction == "min")


#: Keys whose declared direction is "lower is better" (claims read it with ``str.startswith``).
_LOWER_IS_BETTER_PREFIXES = _lower_is_better()


def _check_metric(metric: str, where: str) -> None:
    """A toleranced or reported metric must be one a run records (declared in
    :mod:`raysweep.metrics.registry`): a typo would never match, and the gate would pass
    without checking anything."""
    if metric not in METRICS:
        raise ConfigError(f"{where}: {unknown_metric_message(metric)}")


def _check_measured(metric: str, cfg: SuiteConfig, where: str) -> None:
    """A metric only an optional suite section measures needs that section."""
    if metric.startswith("fq/") and cfg.forgetting_quality is None:
        raise ConfigError(f"{where}: {metric} is measured only with forgetting_quality: "
                          f"{{k: N}} in the suite; add it or remove {metric}")
    if metric == "relearn/epochs" and cfg.relearn is None:
        raise ConfigError(f"{where}: relearn/epochs is measured only with relearn: {{}} in the "
                          f"suite; add it or remove relearn/epochs")


def _check_direction(metric: str, tol: Tolerance, where: str) -> None:
    """A tolerance against the metric's declared direction would pass every regression."""
    declared = METRICS[metric].direction if metric in METRICS else "none"
    if tol.direction == "lower_is_better" and declared == "max":
        raise ConfigError(f"{where}.direction: lower_is_better, but higher {metric} is better; "
                          f"use direction: higher_is_better (or target)")
    if tol.direction == "higher_is_better" and declared == "min":
        raise ConfigError(f"{where}.direction: higher_is_better, but lower {metric} is better "
                          f"(a distance, cost or time); use direction: lower_is_better")


def _check_tuning_seeds(cfg: SuiteConfig, where: str) -> None:
    """Tuning seeds must not be evaluation seeds (one ConfigError line naming the field)."""
    for i, raw in enumerate(cfg.entries):
        if raw.config != "tuned":
            continue
        tune_seeds = (raw.tune or TuneSpec()).seeds
        eval_seeds = list(raw.seeds or cfg.seeds)
        overlap = sorted(set(tune_seeds) & set(eval_seeds))
        if overlap:
            verb = ("is also an evaluation seed" if len(overlap) == 1
                    else "are also evaluation seeds")
            raise ConfigError(
                f"{where}: entries[{i}].tune.seeds: {overlap} "
                f"{verb}"
                f" of the entry (seeds {eval_seeds}); a config must not be tuned on a seed it is "
                f"scored on: give tuning "
                f"seeds at {TUNING_SEED_BASE} and above, "
                f"e.g. tune: {{seeds: [{TUNING_SEED_BASE}]}}, "
                f"or drop tune.seeds for the default [{TUNING_SEED_BASE}]")


def _check_paper_defaults(cfg: SuiteConfig, src: str) -> None:
    """Each paper default names a method the suite runs, registered models, valid values, and
    no (method, model, field) twice: a typo would silently run the method's own default."""
    suite_methods = {m for e in cfg.entries
                     for m in (e.method if isinstance(e.method, list) else [e.method])}
    models = list_models()
    seen: list[tuple[int, PaperDefault]] = []
    for i, pd in enumerate(cfg.paper_defaults):
        where = f"{src}: paper_defaults[{i}]"
        if pd.method not in suite_methods:
            names = sorted(suite_methods)
            raise ConfigError(f"{where}.method: {pd.method!r} is not run by any entry"
                              f"{did_you_mean(pd.method, names)} (methods: {', '.join(names)})")
        for m in pd.models or []:
            if m not in models:
                raise ConfigError(f"{where}.models: unknown model {m!r}{did_you_mean(m, models)} "
                                  f"(raysweep models: {', '.join(models)})")
        fields = get_method(pd.method).config.model_fields
        for k, v in pd.values.items():
            if k in fields:
                check_number_value(v, fields[k].annotation, f"{where}.values.{k}")
        make_config(pd.method, pd.values, where=f"{where}.values")
        for j, other in seen:
            # Two items overlap when they share a model (no models: every model).
            shared = (set(pd.models or models) & set(other.models or models))
            both = sorted(set(pd.values) & set(other.values))
            if other.method == pd.method and shared and both:
                raise ConfigError(f"{where}.values.{both[0]}: {pd.method} {both[0]} is already "
                                  f"set for model {sorted(shared)[0]} by paper_defaults[{j}]; "
                                  f"keep one of them or split their models")
        seen.append((i, pd))


def _paper_values(cfg: SuiteConfig, method: str, model: str
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """The paper's values for ``method`` on ``model`` and the source of each."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for pd in cfg.paper_defaults:
        if pd.method == method and (pd.models is None or model in pd.models):
            values.update(pd.values)
            sources.update(dict.fromkeys(pd.values, pd.source))
    return values, sources


def load_suite(ref: str | Path, overrides: list[str] | None = None,
               scale: str | None = None) -> Suite:
    """Load, validate and resolve a suite; every error is one line naming the file and field.

    Workloads and method configs are validated here (unknown method, bad pinned value,
    incomplete tolerance), so a typo fails in milliseconds rather than after training.
    """
    path = _resolve_suite_path(ref)
    data = load_yaml(path)
    src = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a mapping at the top level, got "
                          f"{top_level_kind(data)}")
    as_written = data
    data, chosen, sc = _apply_scale(data, scale, src)
    if overrides:
        data = apply_suite_overrides(data, overrides)
        src = f"{path} (with --set)"
    cfg = parse_model(SuiteConfig, data, src)
    _check_tuning_seeds(cfg, src)
    for sname in cfg.scales:     # every scale's seeds, not only the chosen one's
        if sname != chosen:
            other, _, _ = _apply_scale(as_written, sname, str(path))
            _check_tuning_seeds(parse_model(SuiteConfig, other, f"{path}: scales.{sname}"),
                                f"{path}: scales.{sname}")

    for metric, tol in cfg.tolerances.items():
        _check_metric(metric, f"{src}: tolerances")
        _check_measured(metric, cfg, f"{src}: tolerances")
        tol.check_complete(f"{src}: tolerances.{metric}")
        _check_direction(metric, tol, f"{src}: tolerances.{metric}")
    for metric in cfg.report_metrics or []:
        _check_metric(metric, f"{src}: report_metrics")
        _check_measured(metric, cfg, f"{src}: report_metrics")

    _check_paper_defaults(cfg, src)
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    resolved: dict[str, WorkloadConfig] = {}
    renamed: dict[str, str] = {}
    for i, raw in enumerate(cfg.entries):
        where = f"{src}: entries[{i}]"
        workload, workload_ref = _resolve_workload(raw.workload, path.parent, where)
        resolved.setdefault(workload.name, workload)
        if sc is not None and sc.only is not None and workload.name not in sc.only:
            continue
        if sc is not None and workload.name in sc.workloads:
            as_named = workload.name
            workload = _patched_workload(workload, sc.workloads[workload.name],
                                         f"{src}: scales.{chosen}.workloads.{workload.name}")
            workload_ref = _write_workload(workload)
            renamed[as_named] = workload.name   # a scale may rename it; claims use the file's
        methods = raw.method if isinstance(raw.method, list) else [raw.method]
        for method in methods:
            try:
                get_method(method)
            except ConfigError as exc:
                raise ConfigError(f"{where}.method: {exc}") from None
            paper, sources = _paper_values(cfg, method, workload.model.name)
            if raw.config == "tuned":
                kind: Literal["default", "pinned", "tuned"] = "tuned"
                values: dict[str, Any] = {}
                sources = {}
            elif raw.config == "default" or raw.config == {}:
                kind, values = "default", dict(paper)
            else:
                # Pinned values win over the paper's; the rest of the paper's still apply.
                pinned = dict(raw.config)  # type: ignore[arg-type]
                kind, values = "pinned", {**paper, **pinned}
                sources = {k: v for k, v in sources.items() if k not in pinned}
                fields = get_method(method).config.model_fields
                for k, v in values.items():
                    if k in fields:
                        check_number_value(v, fields[k].annotation, f"{where}.config.{k}")
                make_config(method, values, where=f"{where}.config")
            paper_epochs = values.get("epochs") if "epochs" in sources else None
            if isinstance(paper_epochs, (int, float)) and raw.max_epochs is not None \
                    and paper_epochs > raw.max_epochs:
                # The budget would stop the run early: the row would not run the paper's value.
                raise ConfigError(f"{where}.max_epochs: {raw.max_epochs} is below the paper's "
                                  f"{method} epochs {paper_epochs:g} ({sources['epochs']}); "
                                  f"raise max_epochs to at least {paper_epochs:g}")
            tolerances: dict[str, Tolerance] = {}
            for metric in [*cfg.tolerances,
                           *(m for m in raw.tolerances if m not in cfg.tolerances)]:
                base = cfg.tolerances.get(metric, Tolerance())
                tol = base.merged(raw.tolerances.get(metric))
                _check_metric(metric, f"{where}.tolerances")
                tol.check_complete(f"{where}.tolerances.{metric}")
                _check_direction(metric, tol, f"{where}.tolerances.{metric}")
                tolerances[metric] = tol
            # Default and pinned configs share the plain id so that pinning a best-known config
            # keeps the entry's history; a tuned entry sits beside the default one.
            suffix = "@tuned" if kind == "tuned" else ""
            eid = raw.name or f"{workload.name}/{method}{suffix}"
            if eid in seen:
                raise ConfigError(f"{where}: entry id {eid!r} repeats {seen[eid]}; give one of "
                                  f"them a distinct name: field")
            seen[eid] = f"entries[{i}]"
            tune = (raw.tune or TuneSpec()) if kind == "tuned" else None
            if tune is not None:
                from raysweep.bench.tuning import sweep_spec

                sweep_spec(cfg.name, eid, workload_ref, method, tune, where=f"{where}.tune")
            entries.append(Entry(
                id=eid, workload_ref=workload_ref, workload=workload, method=method,
                config_kind=kind, config=values, seeds=tuple(raw.seeds or cfg.seeds),
                tolerances=tolerances, max_epochs=raw.max_epochs,
                tune=tune, seed_scope=raw.seed_scope or cfg.seed_scope, sources=sources))
    for sname, spec in cfg.scales.items():   # every scale, not only the chosen one
        for key, names in (("only", spec.only or []), ("workloads", list(spec.workloads))):
            for wname in names:
                if wname not in resolved:
                    raise ConfigError(f"{src}: scales.{sname}.{key}: no entry runs workload "
                                      f"{wname!r}{did_you_mean(wname, sorted(resolved))} "
                                      f"(workloads: {', '.join(sorted(resolved))})")
        for wname, patch in spec.workloads.items():
            _patched_workload(resolved[wname], patch, f"{src}: scales.{sname}.workloads.{wname}")
    if not entries:
        raise ConfigError(f"{src}: scale {chosen!r} keeps no entry")
    fq = cfg.forgetting_quality
    if fq is not None:
        scored = fq.workloads if fq.workloads is not None else sorted(resolved)
        lm = [w for w in scored if w in resolved and task_of(resolved[w]) != "classify"]
        if lm:
            raise ConfigError(f"{src}: forgetting_quality: workload {lm[0]!r} is a language "
                              f"model; the challenge's score is defined on classifiers' "
                              f"outputs, so list the classifier workloads under "
                              f"forgetting_quality.workloads")
    if fq is not None and fq.workloads is not None:
        # A misspelt name would silently score nothing; a scale may rename a workload, and the
        # runner sees the renamed one.
        for name in fq.workloads:
            if name not in resolved:
                raise ConfigError(f"{src}: forgetting_quality.workloads: {name!r} is not a "
                                  f"workload of this suite{did_you_mean(name, resolved)}; use "
                                  f"one of {', '.join(sorted(resolved))}")
        fq = fq.model_copy(update={"workloads": [renamed.get(w, w) for w in fq.workloads]})
        cfg = cfg.model_copy(update={"forgetting_quality": fq})
    claims = None
    if cfg.claims is not None:
        from raysweep.bench.claims import load_claims

        claims = load_claims(path.parent / cfg.claims, cfg, resolved, entries,
                             where=f"{src}: claims", renamed=renamed)
    runs = sum(len(e.seeds) for e in entries)
    if runs > MAX_SUITE_RUNS:
        raise ConfigError(f"{src}: entries x seeds = {runs} runs, more than the {MAX_SUITE_RUNS} "
                          f"one suite may hold; use fewer seeds or split the suite")
    return Suite(config=cfg, entries=tuple(entries), source=str(path), raw=data, scale=chosen,
                 claims=claims)
