"""Per-paper claims and their verdicts: reproduced, not reproduced, or not comparable, and why.

A paper suite names a claims file (``claims: claims/paper-000.yaml``, relative to the suite)::

    schema_version: 1
    paper: "000"
    claims:
      - id: scrub-best-class                # unique; the verdict table's first column
        claim: SCRUB keeps the best retained-class test accuracy on full-class forgetting
        source: paper 000, Table 1 and Section 5.1.1
        paper_value: SCRUB first on Acc_t     # what the paper reports (text or a number)
        workload: fmnist-class-conv
        metric: test/acc_retain_classes
        test: better                        # better: a beats every b
        a: scrub                            # a method (its default row), method@tuned, an
        b: [ssd, bad-teaching, unsir]       #   entry id, or original / retrain (reference rows)
        goal: higher                        # higher | lower | oracle (closer to retrain) |
                                            #   target (closer to `target`); inferred when known
      - id: ssd-keeps-retain
        claim: SSD keeps retain accuracy (relative, %)
        source: paper 000, Table 5
        workload: fmnist-random25-conv
        metric: rel/retain_acc
        test: within                        # within: |ours - value| <= tolerance
        a: ssd
        value: 100.01                       # the paper's number, in the metric's units
        tolerance: 5                        # relative_to: original|retrain compares the change
                                            #   (ours - that row) with value instead

Verdicts (:func:`judge`): ``better`` compares the seeds of ``a`` with those of each ``b`` by a
Welch t-test (two-sided, ``alpha`` 0.05 by default; against a reference row, a one-sample t-test
against its value): reproduced when ``a`` is better and the difference significant for every
``b``; not reproduced when some ``b`` is at least as good or the difference is not significant.
``within`` is reproduced when the seed mean of ``a`` is within ``tolerance`` of ``value``. A
claim is *not comparable* when a side did not run at this scale, has no value for the metric, has
fewer than two seeds (``better``), or is flagged (:mod:`raysweep.bench.flags`: censored, no
signal, constant predictor, below the accuracy floor); the reason says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from raysweep.bench.baseline import Stat, Summary
from raysweep.bench.flags import compute_flags, reference_cell_flags
from raysweep.bench.report import fmt_num, fmt_stat
from raysweep.bench.suite import _LOWER_IS_BETTER_PREFIXES, _SOURCE, _check_metric, _Strict
from raysweep.config import load_yaml, parse_model
from raysweep.errors import ConfigError, did_you_mean
from raysweep.sweep.leaderboard import MAXIMIZE

if TYPE_CHECKING:
    from raysweep.bench.flags import Flags
    from raysweep.bench.suite import Entry, Suite, SuiteConfig
    from raysweep.config import WorkloadConfig

__all__ = ["Claim", "ClaimsFile", "Verdict", "load_claims", "judge", "verdict_table_markdown",
           "REFERENCE_ROWS"]

REFERENCE_ROWS = ("original", "retrain")
Goal = Literal["higher", "lower", "oracle", "target"]
VERDICTS = ("reproduced", "not reproduced", "not comparable")


class Claim(_Strict):
    id: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    claim: str = Field(..., min_length=1, max_length=500,
                       description="the paper's claim, in words")
    source: str = Field(..., max_length=300,
                        description="paper and table, e.g. 'paper 000, Table 1'")
    paper_value: str | float | None = Field(None, description="what the paper reports")
    workload: str = Field(..., description="a workload the suite runs")
    metric: str = Field(..., description="the metric the claim is judged on")
    test: Literal["better", "within"]
    a: str = Field(..., min_length=1,
                   description="method, method@tuned, entry id or original/retrain")
    b: list[str] | str | None = Field(None, description="better: what a must beat (one or a list)")
    goal: Goal | None = Field(None, description="which way is better (inferred for known metrics)")
    target: float | None = Field(None, ge=-1e9, le=1e9, description="goal: target's ideal value")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the Welch t-test")
    value: float | None = Field(None, ge=-1e9, le=1e9, description="within: the paper's number")
    tolerance: float | None = Field(None, ge=0, le=1e9,
                                    description="within: allowed |ours - value|")
    relative_to: Literal["original", "retrain"] | None = Field(
        None, description="within: compare ours minus this reference row with value (a change)")

    @field_validator("source")
    @classmethod
    def _source_ok(cls, v: str) -> str:
        if not _SOURCE.match(v):
            raise ValueError("must name the paper and the table or section, e.g. "
                             "'paper 000, Table 1'")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Claim:
        if self.test == "better":
            if not self.b:
                raise ValueError("test: better needs b: (what a must beat)")
            if self.value is not None or self.tolerance is not None:
                raise ValueError("value/tolerance belong to test: within")
        else:
            if self.value is None or self.tolerance is None:
                raise ValueError("test: within needs value: (the paper's number) and tolerance:")
            if self.b:
                raise ValueError("b: belongs to test: better")
        if self.test == "better" and self.relative_to is not None:
            raise ValueError("relative_to: belongs to test: within")
        if (self.goal == "target") != (self.target is not None):
            raise ValueError("goal: target needs target: (the ideal value), and target: needs "
                             "goal: target")
        return self

    @property
    def others(self) -> list[str]:
        return [] if self.b is None else ([self.b] if isinstance(self.b, str) else list(self.b))


class ClaimsFile(_Strict):
    schema_version: Literal[1] = 1
    paper: str = Field(..., pattern=r"^\d{3}$", description="the paper's number, e.g. '000'")
    claims: list[Claim] = Field(..., min_length=1, max_length=1000)


def _goal(claim: Claim) -> Goal | None:
    if claim.goal is not None:
        return claim.goal
    if claim.metric in MAXIMIZE:
        return "higher"
    if claim.metric.startswith(_LOWER_IS_BETTER_PREFIXES):
        return "lower"
    return None


def _entry_id(workload: str, ref: str) -> str:
    return ref if "/" in ref or ref in REFERENCE_ROWS else f"{workload}/{ref}"


def load_claims(path: Path, cfg: SuiteConfig, workloads: Mapping[str, WorkloadConfig],
                entries: Sequence[Entry], *, where: str,
                renamed: Mapping[str, str] | None = None) -> ClaimsFile:
    """Read and check a claims file against the suite; one ConfigError line per mistake.

    Claims name workloads as the suite file does; ``renamed`` maps those names to the ones a
    scale gave them (``scales.paper.workloads.<w>.name``), and the returned claims use the latter.
    """
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"{where}: {path} {what}; give the claims file's path "
                          f"relative to the suite, e.g. claims: claims/{cfg.name}.yaml")
    src = str(path)
    doc = parse_model(ClaimsFile, load_yaml(path), src)
    ids: dict[str, int] = {}
    for i, c in enumerate(doc.claims):
        at = f"{src}: claims[{i}]"
        if c.id in ids:
            raise ConfigError(f"{at}.id: {c.id!r} repeats claims[{ids[c.id]}]; ids must be unique")
        ids[c.id] = i
        if c.workload not in workloads:
            names = sorted(workloads)
            raise ConfigError(f"{at}.workload: the suite runs no workload {c.workload!r}"
                              f"{did_you_mean(c.workload, names)} (workloads: {', '.join(names)})")
        _check_metric(c.metric, f"{at}.metric")
        if c.test == "better" and _goal(c) is None:
            raise ConfigError(f"{at}.goal: missing; which way is {c.metric} better? give goal: "
                              f"higher, lower, oracle (closer to the retrained model) or target "
                              f"(with target:)")
        target = (renamed or {}).get(c.workload, c.workload)
        if target != c.workload:
            c = doc.claims[i] = c.model_copy(update={"workload": target})
        ran = [e.id for e in entries if e.workload.name == c.workload]
        if not ran:      # the chosen scale leaves this workload out: judged not comparable
            continue
        for field_name, refs in (("a", [c.a]), ("b", c.others)):
            for ref in refs:
                eid = _entry_id(c.workload, ref)
                if eid not in REFERENCE_ROWS and eid not in ran:
                    short = [x.split("/", 1)[1] for x in ran]
                    raise ConfigError(
                        f"{at}.{field_name}: {ref!r} is not an entry of workload {c.workload}"
                        f"{did_you_mean(ref, short + list(REFERENCE_ROWS))} (entries: "
                        f"{', '.join(short)}; or original, retrain)")
        if c.a in c.others:
            raise ConfigError(f"{at}.b: {c.a!r} is also a; a claim compares different rows")
        if c.a in REFERENCE_ROWS and any(b in REFERENCE_ROWS for b in c.others):
            raise ConfigError(f"{at}.b: a and b are both reference rows (one model each, no "
                              f"seeds to test); make one of them an entry")
    return doc


# ------------------------------------------------------------------------------------- verdicts

@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str            # reproduced | not reproduced | not comparable
    ours: str
    reason: str


@dataclass(frozen=True)
class _Side:
    label: str
    values: tuple[float, ...]      # seeds (one value for a reference row)
    reference: bool


def _side(suite: Suite, claim: Claim, ref: str, summary: Summary,
          references: Mapping[str, Mapping[str, Mapping[str, float]]],
          flags: Flags, ran: set[str]) -> _Side | str:
    """The values of one side, or why it cannot be compared."""
    eid = _entry_id(claim.workload, ref)
    if eid in REFERENCE_ROWS:
        v = references.get(claim.workload, {}).get(eid, {}).get(claim.metric)
        if v is None or not math.isfinite(float(v)):
            return f"the {eid} row has no (finite) {claim.metric}"

        if reference_cell_flags(suite, references, claim.workload, eid, claim.metric):
            return (f"the {eid} row's {claim.metric} is censored "
                    f"(at the relearn cap: a lower bound)")
        return _Side(f"({eid})", (float(v),), True)
    if eid not in ran:
        return f"{ref} did not run at this scale"
    s: Stat | None = summary.get(eid, {}).get(claim.metric)
    if s is None or s.n == 0:
        return f"{ref} has no {claim.metric} (failed runs?)"
    bad = flags.of(eid, claim.metric)
    if bad:
        return f"{ref} is flagged: " + "; ".join(f.reason for f in bad)
    values = tuple(s.values) or (s.mean,)
    if not all(math.isfinite(v) for v in values):
        return f"{ref} has a non-finite {claim.metric} on some seed"
    return _Side(ref, values, False)


def _score(values: Sequence[float], goal: Goal, claim: Claim,
           retrain: float | None) -> list[float]:
    """Higher is better after this transform, whatever the goal."""
    if goal == "higher":
        return list(values)
    if goal == "lower":
        return [-v for v in values]
    centre = claim.target if goal == "target" else retrain
    assert centre is not None
    return [-abs(v - centre) for v in values]


def _welch(x: Sequence[float], y: Sequence[float], y_reference: bool) -> float:
    """Two-sided p of "x and y have the same mean" (one-sample when y is a reference value)."""
    from scipy import stats

    mx = sum(x) / len(x)
    my = sum(y) / len(y)
    sx = _var(x)
    sy = 0.0 if y_reference else _var(y)
    if sx == 0 and sy == 0:       # no spread: any difference is certain, none is none
        return 0.0 if mx != my else 1.0
    if y_reference:
        return float(stats.ttest_1samp(list(x), my).pvalue)
    return float(stats.ttest_ind(list(x), list(y), equal_var=False).pvalue)


def _var(v: Sequence[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = sum(v) / len(v)
    return sum((a - m) ** 2 for a in v) / (len(v) - 1)


def _fmt(side: _Side) -> str:
    n = len(side.values)
    mean = sum(side.values) / n
    if side.reference:
        return f"{side.label} {fmt_num(mean)}"
    s = Stat(mean, math.sqrt(_var(side.values)), n, side.values)

    return f"{side.label} {fmt_stat(s)}"


def judge(claim: Claim, suite: Suite, summary: Summary,
          references: Mapping[str, Mapping[str, Mapping[str, float]]],
          flags: Flags | None = None) -> Verdict:
    """The verdict of one claim from a suite's results (see the module docstring); ``flags``
    default to :func:`raysweep.bench.flags.compute_flags` of the same results."""
    if flags is None:
        flags = compute_flags(suite, summary, references)
    ran = {e.id for e in suite.entries if e.workload.name == claim.workload}
    if not ran:
        return Verdict(claim, "not comparable", "-",
                       f"workload {claim.workload} did not run at scale "
                       f"{suite.scale or 'as written'}")
    a = _side(suite, claim, claim.a, summary, references, flags, ran)
    if isinstance(a, str):
        return Verdict(claim, "not comparable", "-", a)
    if claim.test == "within":
        assert claim.value is not None and claim.tolerance is not None
        mean = sum(a.values) / len(a.values)
        ours = _fmt(a)
        what = "ours"
        if claim.relative_to is not None:
            base = references.get(claim.workload, {}).get(claim.relative_to, {}).get(claim.metric)
            if base is None:
                return Verdict(claim, "not comparable", ours,
                               f"the {claim.relative_to} row has no {claim.metric}")
            mean -= float(base)
            what = f"ours - {claim.relative_to}"
            ours += f"; change from ({claim.relative_to}) {mean:+.4g}"
        gap = abs(mean - claim.value)
        ok = gap <= claim.tolerance
        return Verdict(claim, "reproduced" if ok else "not reproduced", ours,
                       f"|{what} - paper| = {gap:.3g} {'≤' if ok else '>'} tolerance "
                       f"{claim.tolerance:g}")
    goal = _goal(claim)
    assert goal is not None
    retrain = references.get(claim.workload, {}).get("retrain", {}).get(claim.metric)
    if goal == "oracle" and retrain is None:
        return Verdict(claim, "not comparable", _fmt(a),
                       f"goal oracle needs the retrain row's {claim.metric}, which is missing")
    cells = [_fmt(a)]
    reasons: list[str] = []
    verdict = "reproduced"
    left_out: list[str] = []
    for ref in claim.others:
        b = _side(suite, claim, ref, summary, references, flags, ran)
        if isinstance(b, str):
            # One unusable rival leaves the others to judge; the reason names it.
            left_out.append(b)
            continue
        cells.append(_fmt(b))
        for side in (a, b):
            if not side.reference and len(side.values) < 2:
                return Verdict(claim, "not comparable", "; ".join(cells),
                               f"{side.label} has {len(side.values)} seed; a Welch test needs 2+")
        sa = _score(a.values, goal, claim, retrain)
        sb = _score(b.values, goal, claim, retrain)
        diff = sum(sa) / len(sa) - sum(sb) / len(sb)
        if a.reference:
            p = _welch(sb, sa, True)
        else:
            p = _welch(sa, sb, b.reference)
        if diff > 0 and p < claim.alpha:
            reasons.append(f"{a.label} better than {b.label} (p={p:.2g})")
        elif diff < 0 and p < claim.alpha:
            verdict = "not reproduced"
            reasons.append(f"{b.label} better than {a.label} (p={p:.2g})")
        else:
            verdict = "not reproduced"
            reasons.append(f"no significant difference from {b.label} (p={p:.2g})")
    if not reasons:
        return Verdict(claim, "not comparable", "; ".join(cells), "; ".join(left_out))
    if left_out:
        reasons.append("left out: " + "; ".join(left_out))
    how = {"higher": "higher is better", "lower": "lower is better",
           "oracle": "closer to the retrained model is better"}.get(
        goal, f"closer to {claim.target} is better")
    return Verdict(claim, verdict, "; ".join(cells),
                   f"Welch t-test, α={claim.alpha:g}, {how}: " + "; ".join(reasons))


def verdict_table_markdown(verdicts: Sequence[Verdict]) -> str:
    """The verdict table, one row per claim, and the counts."""
    def esc(s: Any) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| claim | paper (source) | metric | ours (seed mean ± 95% CI) | verdict | reason |",
             "|---|---|---|---|---|---|"]
    for v in verdicts:
        c = v.claim
        paper = f"{c.paper_value if c.paper_value is not None else '-'} ({c.source})"
        lines.append("| " + " | ".join(esc(x) for x in (
            f"`{c.id}`: {c.claim}", paper, f"`{c.metric}`", v.ours, f"**{v.verdict}**",
            v.reason)) + " |")
    counts = {k: sum(1 for v in verdicts if v.verdict == k) for k in VERDICTS}
    lines += ["", "Counts: " + ", ".join(f"{k} {n}" for k, n in counts.items()) + "."]
    return "\n".join(lines)
