"""The metric registry: every metric key raysweep records, declared once.

A declaration says what a key means, which way is better, how it is shown, whether selection
may read it, which module computes it and whether it has a distance to the retrain oracle.
Everything else that knows metric names reads it: the objective spec's metric check
(:mod:`raysweep.sweep.space`), the sort directions of leaderboards and claims (``MAXIMIZE``),
the tolerance-direction check of suites, the column labels of every table
(:data:`raysweep.report.METRICS`) and ``raysweep metrics --all``. A test checks that every key
:func:`~raysweep.metrics.evaluate` returns is declared here and that every declared key is
produced somewhere, so a new metric is one :func:`register_metric` call plus its computation.

A key may be a pattern over the held-out splits, ``heldout/acc/{split}``: it declares
``heldout/acc/val`` (what selection reads) and ``heldout/acc/test`` (what reports show) at once.

>>> from raysweep.metrics.registry import metric_info
>>> metric_info("test/acc").direction
'max'
>>> metric_info("dist/mia_auc/val").role
'selection'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from raysweep.errors import did_you_mean
from raysweep.metrics.oracle import HELDOUT_SPLITS

__all__ = ["Direction", "Role", "Source", "Unit", "UNITS", "SCENARIOS", "MetricInfo", "METRICS",
           "register_metric", "metric_info", "metric_keys", "maximize_keys", "objective_keys",
           "per_epoch_keys", "task_keys", "unknown_metric_message", "UnknownMetricError",
           "TASKS"]

#: ``max``/``min``: higher/lower is better; ``oracle``: the retrain oracle's value is the target
#: (neither way is better on its own, e.g. accuracy on D_f); ``none``: not a quality (a count).
Direction = Literal["max", "min", "oracle", "none"]
#: ``selection``: reads no test data, so an objective may name it; ``report``: reads test (or
#: is measured after selection), so only leaderboards, suites and claims read it.
Role = Literal["selection", "report"]
#: Who records the key: :func:`~raysweep.metrics.evaluate` (and, when ``per_epoch``,
#: :func:`~raysweep.metrics.evaluate_selection`), the run engine beside it (cost, epochs,
#: the objective), or a suite run only (relearn time).
Source = Literal["evaluate", "run", "suite"]


@dataclass(frozen=True)
class Unit:
    """How a raw value is shown: after the label ``(display)``, multiplied by ``scale``."""

    name: str
    display: str
    scale: float
    fmt: str


#: Display units. Accuracies are stored as fractions and shown in %; shares and probabilities
#: that papers quote raw (AUCs, attack rates) stay raw.
UNITS: dict[str, Unit] = {u.name: u for u in (
    Unit("fraction", "%", 100.0, "{:.2f}"),      # an accuracy or a difference of accuracies
    Unit("percent", "%", 1.0, "{:.2f}"),         # already x100 (paper 000's relative accuracy)
    Unit("probability", "", 1.0, "{:.3f}"),      # an AUC, an attack's rate, a probe's share
    Unit("score", "", 1.0, "{:.4f}"),            # dimensionless: the objective, SAPE, ZRF
    Unit("nats", "", 1.0, "{:.4f}"),             # a cross-entropy or a JS divergence
    Unit("seconds", "s", 1.0, "{:.1f}"),
    Unit("ratio", "", 1.0, "{:.3f}"),            # a share of retraining's cost or time
    Unit("count", "", 1.0, "{:.0f}"),            # samples, epochs, sample-passes, a 0/1 flag
)}


@dataclass(frozen=True)
class MetricInfo:
    """One metric key (patterns are expanded, one entry per split).

    Attributes:
        key: the key as recorded (``forget/acc``, ``dist/mia_auc/val``).
        meaning: one phrase, shown in legends and ``raysweep metrics --all``.
        direction: which way is better (see :data:`Direction`).
        unit: a :data:`UNITS` name; gives the display unit, scale and default format.
        role: ``selection`` or ``report`` (see :data:`Role`).
        computed_by: the module that computes it.
        source: who records it (see :data:`Source`).
        per_epoch: recorded at every epoch of a sweep trial (what the cheap selection evaluation
            and the run engine's cost accounting give); other keys come at the best epoch.
        distance: the key of its distance to the retrain oracle, when there is one.
        scenarios: the forget scenarios that define it (``()``: every scenario); e.g. the
            accuracy on retained classes exists only under class forgetting.
        target: a fixed ideal value the papers rank by (direction ``oracle`` only), e.g. 0.5
            for an attack's AUC.
        label: the column label in tables (``""``: shown under its key).
        fmt: the display format (default: the unit's).
        pattern: the declared key or pattern this entry comes from.
        tasks: the workload tasks that record it: ``classify`` (classifiers), ``generate``
            (language models, :mod:`raysweep.lm.metrics`), or both for a key that means the
            analogous thing on both (``forget/acc`` is next-token accuracy on a language model).
        per_epoch_for: tasks on which a key that is not ``per_epoch`` everywhere is recorded
            every epoch all the same (a language model's selection reads D_r, a classifier's
            does not).
    """

    key: str
    meaning: str
    direction: Direction
    unit: str
    role: Role
    computed_by: str
    source: Source = "evaluate"
    per_epoch: bool = False
    distance: str | None = None
    scenarios: tuple[str, ...] = ()
    target: float | None = None
    label: str = ""
    fmt: str = ""
    pattern: str = ""
    tasks: tuple[str, ...] = ("classify",)
    per_epoch_for: tuple[str, ...] = ()

    @property
    def display_unit(self) -> str:
        return UNITS[self.unit].display

    @property
    def scale(self) -> float:
        return UNITS[self.unit].scale

    @property
    def display_fmt(self) -> str:
        return self.fmt or UNITS[self.unit].fmt

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "meaning": self.meaning, "direction": self.direction,
                "unit": self.unit, "role": self.role, "computed_by": self.computed_by,
                "source": self.source, "per_epoch": self.per_epoch, "distance": self.distance,
                "scenarios": list(self.scenarios) or "all", "target": self.target,
                "label": self.label, "pattern": self.pattern, "tasks": list(self.tasks)}

    @property
    def goal(self) -> str | float | None:
        """How rankings read it: ``higher``, ``lower``, ``oracle`` (closer to the retrained
        model's value), a number (closer to it) or ``None`` (not ranked)."""
        if self.target is not None:
            return self.target
        return {"max": "higher", "min": "lower", "oracle": "oracle"}.get(self.direction)


class UnknownMetricError(KeyError, ValueError):
    """A metric key that no declaration covers (a ``KeyError`` for lookups, a ``ValueError``
    for validators)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


#: Every declared key (patterns expanded), in declaration order.
METRICS: dict[str, MetricInfo] = {}

_DIRECTIONS = ("max", "min", "oracle", "none")
_ROLES = ("selection", "report")
_SOURCES = ("evaluate", "run", "suite")
#: Forget scenarios (``scenario.kind`` of a workload); a metric defined only under some says so.
SCENARIOS = ("class", "subclass", "random", "targeted")
#: Workload tasks: classifiers, and causal language models (text generation).
TASKS = ("classify", "generate")
#: A split pattern's role per split: val selects, test reports.
_SPLIT_ROLE: dict[str, Role] = {"val": "selection", "test": "report"}


def register_metric(key: str, meaning: str, *, direction: Direction, unit: str,
                    computed_by: str, role: Role | None = None, source: Source = "evaluate",
                    per_epoch: bool = False, distance: str | None = None,
                    scenarios: tuple[str, ...] = (), target: float | None = None,
                    label: str = "", fmt: str = "",
                    tasks: tuple[str, ...] = ("classify",)) -> list[MetricInfo]:
    """Declare a metric key, or a pattern ``.../{split}`` over the held-out splits.

    A pattern's ``role`` is implied (``val`` selects, ``test`` reports) and must be left out;
    its ``distance`` and ``label`` may use ``{split}`` too, and ``per_epoch`` applies to the
    ``val`` key only (test is never evaluated per epoch). Returns the entries added.

    Raises:
        ValueError: a bad direction, role, source or unit, a role given (or missing), or a key
            declared twice.
    """
    for name, value, allowed in (("direction", direction, _DIRECTIONS),
                                 ("source", source, _SOURCES), ("unit", unit, tuple(UNITS))):
        if value not in allowed:
            raise ValueError(f"register_metric({key!r}): {name} must be one of "
                             f"{', '.join(allowed)}, got {value!r}")
    if not tasks or set(tasks) - set(TASKS):
        raise ValueError(f"register_metric({key!r}): tasks must be among {', '.join(TASKS)}, "
                         f"got {tasks!r}")
    is_pattern = "{split}" in key
    if is_pattern and role is not None:
        raise ValueError(f"register_metric({key!r}): a split pattern's role follows the split "
                         f"(val: selection, test: report); leave role out")
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"register_metric({key!r}): scenarios must be among "
                         f"{', '.join(SCENARIOS)}, got {unknown}")
    if target is not None and direction != "oracle":
        raise ValueError(f"register_metric({key!r}): a target is the ideal value of a metric "
                         f"whose direction is 'oracle', got direction {direction!r}")
    if not is_pattern and role not in _ROLES:
        raise ValueError(f"register_metric({key!r}): role must be one of "
                         f"{', '.join(_ROLES)}, got {role!r}")
    base = MetricInfo(key=key, meaning=meaning, direction=direction, unit=unit,
                      role=role or "selection", computed_by=computed_by, source=source,
                      per_epoch=per_epoch, distance=distance, scenarios=tuple(scenarios),
                      target=target, label=label, fmt=fmt, pattern=key, tasks=tuple(tasks))
    if is_pattern:
        entries = [replace(base, key=key.format(split=s), role=_SPLIT_ROLE[s],
                           per_epoch=per_epoch and s == "val",
                           distance=distance.format(split=s) if distance else None,
                           label=label.format(split=s)) for s in HELDOUT_SPLITS]
    else:
        entries = [base]
    for e in entries:
        if e.key in METRICS:
            raise ValueError(f"register_metric({key!r}): {e.key!r} is already declared (by "
                             f"{METRICS[e.key].pattern!r}); each metric is declared once")
    for e in entries:
        METRICS[e.key] = e
    return entries


def metric_info(key: str) -> MetricInfo:
    """The declaration of ``key``; an unknown key raises :class:`UnknownMetricError` naming the
    closest declared one."""
    info = METRICS.get(key)
    if info is None:
        raise UnknownMetricError(unknown_metric_message(key))
    return info


def unknown_metric_message(key: str, keys: Iterable[str] | None = None) -> str:
    """``unknown metric 'x'; did you mean 'y'? (see raysweep metrics --all)``."""
    return (f"unknown metric {key!r}{did_you_mean(key, list(keys or METRICS))} "
            f"(declared in raysweep/metrics/registry.py; list them with: raysweep metrics --all)")


def metric_keys(*, role: Role | None = None) -> tuple[str, ...]:
    """Every declared key, or those of one role, in declaration order."""
    return tuple(k for k, m in METRICS.items() if role is None or m.role == role)


def maximize_keys() -> frozenset[str]:
    """Keys where higher is better (leaderboards sort them descending)."""
    return frozenset(k for k, m in METRICS.items() if m.direction == "max")


def objective_keys() -> tuple[str, ...]:
    """Keys a sweep objective may name: selection keys a trial records before its objective is
    computed (not the objective itself, not what only suites measure)."""
    return tuple(k for k, m in METRICS.items()
                 if m.role == "selection" and m.source != "suite" and m.computed_by != _OBJ)


def task_keys(task: str, *, source: Source | None = None) -> frozenset[str]:
    """Keys recorded on workloads of ``task`` (of one ``source``, or every source)."""
    return frozenset(k for k, m in METRICS.items()
                     if task in m.tasks and (source is None or m.source == source))


def per_epoch_keys(task: str | None = None) -> frozenset[str]:
    """Keys a sweep trial records at every epoch (the cheap selection evaluation plus cost and
    time); an objective reading only these needs no full evaluation per epoch. ``task``: on
    workloads of that task only (``None``: any)."""
    return frozenset(k for k, m in METRICS.items()
                     if (m.per_epoch and (task is None or task in m.tasks))
                     or (task is not None and task in m.per_epoch_for))


# ---------------------------------------------------------------------------------------------
# The declarations. Grouped by the module that computes them.

_ACC = "raysweep.metrics.accuracy"
_MIA = "raysweep.metrics.mia"
_DIV = "raysweep.metrics.divergence"
_SAPE = "raysweep.metrics.sape"
_ORACLE = "raysweep.metrics.oracle"
_OBJ = "raysweep.metrics.objective"
_EVAL = "raysweep.metrics._evaluate"
_COST = "raysweep.methods._cost"
_TRIAL = "raysweep.sweep.trainable"
_RELEARN = "raysweep.metrics.relearn"

# Accuracies and losses.
register_metric("forget/acc", "accuracy on the forget set D_f", direction="oracle",
                unit="fraction", role="selection", computed_by=_ACC, per_epoch=True,
                distance="dist/forget_acc", label="Acc_f")
register_metric("retain/acc", "accuracy on the retain set D_r", direction="max",
                unit="fraction", role="selection", computed_by=_ACC, label="Acc_r")
register_metric("val/acc", "accuracy on the val split", direction="max", unit="fraction",
                role="selection", computed_by=_ACC, per_epoch=True)
register_metric("test/acc", "test accuracy", direction="max", unit="fraction", role="report",
                computed_by=_ACC, label="Acc_t")
register_metric("forget/loss", "mean cross-entropy on D_f", direction="oracle", unit="nats",
                role="selection", computed_by=_EVAL, per_epoch=True)
register_metric("test/loss", "mean cross-entropy on test", direction="min", unit="nats",
                role="report", computed_by=_EVAL)
register_metric("test/acc_retain_classes", "test accuracy on the retained classes",
                direction="max", unit="fraction", role="report", computed_by=_ACC,
                scenarios=("class",), label="Acc_t")
register_metric("test/acc_forget_classes", "test accuracy on the forgotten classes (the "
                "oracle's is near 0)", direction="oracle", unit="fraction", role="report",
                computed_by=_ACC, scenarios=("class",))
for _name, _what in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
    register_metric(f"test/{_name}_macro", f"macro {_what} on test", direction="max",
                    unit="fraction", role="report", computed_by=_ACC)
register_metric("rel/retain_acc", "accuracy on D_r as a share of the original model's",
                direction="max", unit="percent", role="selection", computed_by=_ACC,
                label="RelAcc_r")
register_metric("rel/forget_acc", "accuracy on D_f as a share of the original model's",
                direction="oracle", unit="percent", role="selection", computed_by=_ACC,
                per_epoch=True, label="RelAcc_f")
register_metric("rel/test_acc", "test accuracy as a share of the original model's",
                direction="max", unit="percent", role="report", computed_by=_ACC)
register_metric("rel/retain_drop", "accuracy on D_r below the original's (a classifier); "
                "below the lower of the original's and the oracle's for a language model, "
                "whose retain floor reads it",
                direction="min", unit="fraction", role="selection", computed_by=_EVAL)
register_metric("gap/forget_test", "random/targeted: |acc on D_f - test acc|; class: acc on "
                "D_f (target 0)", direction="min", unit="fraction", role="report",
                computed_by=_EVAL)
register_metric("gap/oracle", "|acc_f - oracle's| + |acc_t - oracle's|", direction="min",
                unit="fraction", role="report", computed_by=_EVAL)

# Membership inference (the papers' attacks, on test).
register_metric("mia/lr_acc", "loss-attack (logistic regression) accuracy, D_f vs test",
                direction="oracle", unit="fraction", role="report", computed_by=_MIA)
register_metric("mia/lr_auc", "loss-attack AUC, D_f vs test (0.5: the attack cannot tell)",
                direction="oracle", unit="probability", role="report", computed_by=_MIA,
                distance="mia/lr_auc_gap_oracle", target=0.5, label="MIA-AUC")
register_metric("mia/lr_n", "samples per side of the loss attack", direction="none",
                unit="count", role="report", computed_by=_MIA)
register_metric("mia/lr_class_matched", "1 when the loss attack's non-members are test "
                "samples of the forgotten classes", direction="none", unit="count",
                role="report", computed_by=_MIA)
register_metric("mia/lr_auc_gap_oracle", "|loss-attack AUC - the oracle's|", direction="min",
                unit="probability", role="report", computed_by=_MIA)
register_metric("mia/member_rate", "share of D_f a loss attack judges members",
                direction="oracle", unit="probability", role="report", computed_by=_MIA,
                label="MIA rate")
register_metric("mia/catboost", "CatBoost attack on logits (TN / |D_f|)", direction="max",
                unit="probability", role="report", computed_by=_MIA, label="MIA-CatBoost")
register_metric("mia/catboost_attack_acc", "held-out accuracy of the CatBoost attacker on "
                "retain vs test", direction="none", unit="fraction", role="report",
                computed_by=_MIA)

# Divergences and SAPE.
register_metric("zrf", "zero-retrain forgetting score (1 = outputs unlike a random model's)",
                direction="max", unit="score", role="selection", computed_by=_DIV,
                label="ZRF", fmt="{:.3f}")
register_metric("zrf/reference_code", "ZRF as the incompetent-teacher code computes it",
                direction="max", unit="score", role="selection", computed_by=_DIV)
register_metric("js/original", "JS divergence to the original's outputs on D_f",
                direction="none", unit="nats", role="selection", computed_by=_DIV,
                per_epoch=True, label="JS→orig")
register_metric("js/retrain", "JS divergence to the oracle's outputs on D_f", direction="min",
                unit="nats", role="selection", computed_by=_DIV, per_epoch=True,
                distance="dist/js")
register_metric("sape/acc_err_oracle", "SAPE of test accuracies vs the oracle",
                direction="min", unit="score", role="report", computed_by=_SAPE,
                label="AccErr (oracle)")
register_metric("sape/acc_dis", "SAPE of D_f accuracies vs the oracle", direction="min",
                unit="score", role="report", computed_by=_SAPE, label="AccDis")
register_metric("sape/acc_err_original", "SAPE of test accuracies vs the original",
                direction="min", unit="score", role="report", computed_by=_SAPE,
                label="AccErr (orig)")

# Oracle-referenced terms (the objective's), on val (selection) and test (report).
register_metric("heldout/acc/{split}", "held-out accuracy (class forgetting: retained "
                "classes)", direction="max", unit="fraction", computed_by=_ORACLE,
                per_epoch=True, distance="dist/heldout_acc/{split}")
register_metric("heldout/acc_forgotten/{split}", "held-out accuracy on the forgotten classes",
                direction="oracle", unit="fraction", computed_by=_ORACLE, per_epoch=True,
                scenarios=("class",))
register_metric("mia/auc/{split}", "loss-attack AUC, D_f vs matched held-out samples",
                direction="oracle", unit="probability", computed_by=_ORACLE, per_epoch=True,
                distance="dist/mia_auc/{split}", label="AUC ({split})")
register_metric("mia/auc_n/{split}", "samples per side of that attack", direction="none",
                unit="count", computed_by=_ORACLE, per_epoch=True)
register_metric("probe/{split}", "linear probe on the features recovering the forgotten data",
                direction="oracle", unit="probability", computed_by=_ORACLE, per_epoch=True,
                distance="dist/probe/{split}", label="Probe ({split})")
register_metric("dist/forget_acc", "|accuracy on D_f - the oracle's|", direction="min",
                unit="fraction", role="selection", computed_by=_ORACLE, per_epoch=True)
register_metric("dist/js", "JS divergence to the oracle's outputs on D_f", direction="min",
                unit="nats", role="selection", computed_by=_ORACLE, per_epoch=True,
                label="JS→RT", fmt="{:.3f}")
register_metric("dist/heldout_acc/{split}", "|held-out accuracy - the oracle's| (class "
                "forgetting: retained + forgotten classes)", direction="min", unit="fraction",
                computed_by=_ORACLE, per_epoch=True)
register_metric("dist/mia_auc/{split}", "|matched loss-attack AUC - the oracle's|",
                direction="min", unit="probability", computed_by=_ORACLE, per_epoch=True)
register_metric("dist/probe/{split}", "|feature probe - the oracle's|", direction="min",
                unit="probability", computed_by=_ORACLE, per_epoch=True)
register_metric("rel/heldout_drop/{split}", "the lower of the original's and the oracle's "
                "held-out accuracy minus this model's (the retain floor reads it)",
                direction="min", unit="fraction", computed_by=_ORACLE, per_epoch=True)

# Time (measured by the run engine, put by evaluate).
register_metric("time/seconds", "method wall time", direction="min", unit="seconds",
                role="selection", computed_by=_EVAL, per_epoch=True, label="Time")
register_metric("time/ratio", "method wall time as a share of retraining's (same conditions)",
                direction="min", unit="ratio", role="selection", computed_by=_EVAL,
                per_epoch=True)
register_metric("time/retrain_seconds_here", "retraining's wall time measured in this trial's "
                "process (what time/ratio divides by)", direction="none", unit="seconds",
                role="selection", computed_by=_TRIAL, source="run", per_epoch=True)

# Cost, epochs and the objective (the run engine).
for _name, _what in (("forward", "examples passed forward"),
                     ("backward", "examples passed backward"),
                     ("passes", "sample-passes: forward + weighted backward examples")):
    register_metric(f"cost/{_name}", _what, direction="min", unit="count", role="selection",
                    computed_by=_COST, source="run", per_epoch=True)
register_metric("cost/ratio", "sample-passes as a share of retraining's", direction="min",
                unit="ratio", role="selection", computed_by=_TRIAL, source="run",
                per_epoch=True, label="Cost/RT")
register_metric("epochs", "epochs at the best epoch", direction="none", unit="count",
                role="selection", computed_by=_TRIAL, source="run", per_epoch=True,
                label="Epochs")
register_metric("objective", "oracle-referenced objective on the val split, which selects "
                "and ranks configurations; the oracle scores 0", direction="min", unit="score",
                role="selection", computed_by=_OBJ, source="run", label="Obj (val)")
register_metric("objective/test", "the same objective measured on test", direction="min",
                unit="score", role="report", computed_by=_OBJ, source="run",
                label="Obj (test)")
_FQ = "raysweep.metrics.forgetting_quality"
register_metric("fq/quality", "the NeurIPS 2023 unlearning challenge's forgetting quality of "
                "the method's population of unlearned models against k retrained oracles "
                "(mean over D_f of 2^-bucket(epsilon); 1 = no example distinguishable)",
                direction="max", unit="score", role="report", computed_by=_FQ, source="suite",
                label="FQ")
register_metric("fq/score", "forgetting quality times the retain and test accuracy ratios "
                "to the oracles (the challenge's final score)", direction="max", unit="score",
                role="report", computed_by=_FQ, source="suite", label="FQ score")
register_metric("fq/lira_auc", "AUC of a per-example likelihood-ratio attack telling the "
                "unlearned population from the oracles (0.5 = indistinguishable)",
                direction="oracle", target=0.5, unit="fraction", role="report",
                computed_by=_FQ, source="suite", label="U-LiRA AUC")
register_metric("relearn/epochs", "epochs of fine-tuning on D_f until the forget accuracy "
                "is back (suites' relearn test; more = more thoroughly gone)", direction="max",
                unit="count",
                role="report", computed_by=_RELEARN, source="suite")

# Language models (text-generation workloads, :mod:`raysweep.lm.metrics`). Keys above that mean
# the analogous thing there are shared: accuracies are next-token accuracies, losses are
# next-token cross-entropies, the loss attack compares D_f with held-out text of the same
# sources, JS is over next-token distributions; what the run engine records is the same.
_LM = "raysweep.lm.metrics"
_BOTH = ("classify", "generate")
_SHARED = ("forget/acc", "retain/acc", "val/acc", "test/acc", "forget/loss", "test/loss",
           "js/retrain", "heldout/acc/{split}", "heldout/acc_forgotten/{split}",
           "mia/auc/{split}", "mia/auc_n/{split}", "dist/forget_acc", "dist/js",
           "dist/heldout_acc/{split}", "dist/mia_auc/{split}", "rel/heldout_drop/{split}",
           "rel/retain_drop",
           "time/seconds", "time/ratio")
for _key, _m in list(METRICS.items()):
    if _m.pattern in _SHARED or _m.source == "run":
        METRICS[_key] = replace(_m, tasks=_BOTH)
    if _key in ("retain/acc", "rel/retain_drop"):   # the retain floor's, every epoch
        METRICS[_key] = replace(METRICS[_key], per_epoch_for=("generate",))
_LM_SPLITS: tuple[tuple[str, Role, str], ...] = (
    ("forget", "selection", "the forget set D_f"), ("retain", "selection", "the retain set D_r"),
    ("val", "selection", "the val split"), ("test", "report", "test"))
#: Per-split language-model keys: (name, meaning, direction off D_f, unit, label, format, the
#: splits selection records every epoch).
_LM_PER_SPLIT: tuple[tuple[str, str, Direction, str, str, str, tuple[str, ...]], ...] = (
    ("ppl", "perplexity on {where} (exp of the mean next-token cross-entropy)", "min", "score",
     "PPL_{s}", "{:.2f}", ("forget", "retain", "val")),
    ("verbatim", "share of {where}'s passages whose greedy continuation of the prompt "
     "reproduces the next tokens exactly", "none", "fraction", "Verb_{s}", "",
     ("forget", "val")),
)
for _split, _role, _where in _LM_SPLITS:
    for _name, _meaning, _dir, _unit, _label, _fmt, _every in _LM_PER_SPLIT:
        register_metric(f"{_split}/{_name}", _meaning.format(where=_where),
                        direction="oracle" if _split == "forget" else _dir, unit=_unit,
                        role=_role, computed_by=_LM, per_epoch=_split in _every,
                        tasks=("generate",), label=_label.format(s=_split[0]), fmt=_fmt)
register_metric("mia/mink_auc/{split}", "Min-K% probability attack AUC, D_f vs held-out text "
                "of the same sources", direction="oracle", unit="probability", computed_by=_LM,
                per_epoch=True, distance="dist/mink_auc/{split}", tasks=("generate",),
                label="MinK AUC ({split})")
register_metric("dist/mink_auc/{split}", "|Min-K% attack AUC - the oracle's|", direction="min",
                unit="probability", computed_by=_LM, per_epoch=True, tasks=("generate",))
#: The language-model objective's distances to the oracle, read on the selection split's epochs.
for _key, _meaning, _unit in (
        ("forget_verbatim", "|verbatim continuation rate on D_f - the oracle's|", "fraction"),
        ("forget_ppl", "|log perplexity on D_f - the oracle's| (nats)", "nats"),
        ("retain_acc", "|next-token accuracy on D_r - the oracle's|", "fraction"),
        ("retain_ppl", "|log perplexity on D_r - the oracle's| (nats)", "nats")):
    register_metric(f"dist/{_key}", _meaning, direction="min", unit=_unit, role="selection",
                    computed_by=_LM, per_epoch=True, tasks=("generate",))
register_metric("dist/heldout_ppl/{split}", "|log perplexity on held-out text - the oracle's| "
                "(nats)", direction="min", unit="nats", computed_by=_LM, per_epoch=True,
                tasks=("generate",))
