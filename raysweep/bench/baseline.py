"""Seed statistics, baselines (pinned files) and the regression check.

Everything here is pure Python/numpy: the MLflow side lives in :mod:`raysweep.bench.tracking`.

A *summary* maps ``entry id -> metric -> Stat`` (the seed mean, sample std, count and values of
one suite run). A baseline is a summary too, read from a previous run in MLflow or from a pinned
file written by ``raysweep bench baseline --pin``::

    {"schema_version": 1, "suite": "smoke", "source": {"run_id": "...", "git_sha": "..."},
     "entries": {"digits-class/finetune": {"forget/acc": {"mean": 0.02, "std": 0.01, "n": 2},
                                           "test/acc_retain_classes": 0.95}}}

A hand-written pinned value may be a bare number (a mean with unknown spread).

Reports print a seed mean with its 95% confidence interval (:attr:`Stat.ci95`, Student t); the
regression check (:func:`compare`, ``min_sigma``) uses the seed standard deviation itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from raysweep.bench.suite import Tolerance
from raysweep.config import load_yaml
from raysweep.errors import ConfigError
from raysweep.preflight import check_writable_dir

__all__ = ["Stat", "Summary", "Comparison", "aggregate", "summarize", "compare", "regressions",
           "read_pinned", "write_pinned", "Status", "t_quantile"]

Summary = dict[str, dict[str, "Stat"]]
Status = Literal["ok", "improved", "regressed", "missing", "new"]
_EPS = 1e-12


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (ddof=1; 0 for one seed) and count over seeds."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...] = ()

    @property
    def ci95(self) -> float | None:
        """Half-width of the 95% confidence interval of the mean (Student t:
        ``t.ppf(0.975, n - 1) * std / sqrt(n)``); ``None`` for one seed or an unknown spread."""
        if self.n < 2 or not math.isfinite(self.std):
            return None
        return t_quantile(self.n - 1) * self.std / math.sqrt(self.n)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Stat:
        """A pinned value: a number or ``{mean, std, n, values}``. A NaN or infinite mean would
        compare as "new" and pass every check, so it is refused; a NaN std means "unknown"."""
        stat: Stat | None = None
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            stat = cls(float(obj), float("nan"), 1, ())
        elif isinstance(obj, Mapping) and "mean" in obj:
            try:
                if any(isinstance(obj.get(k), bool) for k in ("mean", "std", "n")):
                    raise TypeError("a boolean is not a number")
                values = tuple(float(v) for v in obj.get("values") or ())
                std = obj.get("std")
                n = obj.get("n")
                if n is not None and (not isinstance(n, int) or n < 1):
                    raise ValueError(f"n must be a positive integer, got {n!r}")
                stat = cls(float(obj["mean"]), float("nan") if std is None else float(std),
                           int(n or max(len(values), 1)), values)
            except (TypeError, ValueError):
                stat = None
        if stat is None:
            raise ConfigError(f"{where}: expected a number or {{mean, std, n}}, got {obj!r}")
        if not math.isfinite(stat.mean) or not all(math.isfinite(v) for v in stat.values):
            raise ConfigError(f"{where}: the pinned mean must be a finite number, got "
                              f"{stat.mean!r}; a NaN or infinite baseline would pass every "
                              f"check: re-pin it with raysweep bench baseline")
        if math.isinf(stat.std) or stat.std < 0:
            raise ConfigError(f"{where}: std must be a finite number >= 0 (or null), got "
                              f"{stat.std!r}")
        return stat


@lru_cache(maxsize=64)
def t_quantile(dof: int, q: float = 0.975) -> float:
    """Student t quantile (``scipy.stats.t.ppf(q, dof)``)."""
    from scipy.stats import t

    return float(t.ppf(q, dof))


def aggregate(values: Iterable[float]) -> Stat:
    vals = tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not vals:
        return Stat(float("nan"), float("nan"), 0, ())
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return Stat(mean, std, len(vals), vals)


def summarize(per_seed: Mapping[str, Iterable[Mapping[str, float]]]) -> Summary:
    """``entry -> [metrics of each seed]`` to ``entry -> metric -> Stat``."""
    out: Summary = {}
    for entry, runs in per_seed.items():
        runs = list(runs)
        keys: list[str] = []
        for r in runs:
            keys += [k for k in r if k not in keys]
        out[entry] = {k: aggregate(r[k] for r in runs if k in r) for k in keys}
        out[entry] = {k: s for k, s in out[entry].items() if s.n > 0}
    return out


@dataclass(frozen=True)
class Comparison:
    """One (entry, metric) checked against its baseline.

    ``delta`` is current − baseline; ``worse_by`` is the change in the bad direction (positive =
    worse; for ``target`` the growth of the distance to the target); ``allowed`` the tolerance in
    those units; ``sigma`` is |delta| over the pooled seed std (``inf`` when both spreads are 0,
    ``nan`` when unknown).
    """

    entry: str
    metric: str
    direction: str
    status: Status
    baseline: Stat | None
    current: Stat | None
    delta: float = float("nan")
    worse_by: float = float("nan")
    allowed: float = float("nan")
    sigma: float = float("nan")
    tolerance: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("regressed", "missing")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["baseline"] = self.baseline.to_json() if self.baseline else None
        d["current"] = self.current.to_json() if self.current else None
        for k in ("delta", "worse_by", "allowed", "sigma"):
            v = d[k]
            d[k] = None if v is None or not math.isfinite(v) else v
        if math.isinf(self.sigma):
            d["sigma"] = "inf"
        return d


def _pooled_std(a: Stat, b: Stat) -> float:
    sa, sb = a.std, b.std
    if math.isnan(sa) and math.isnan(sb):
        return float("nan")
    sa = sb if math.isnan(sa) else sa
    sb = sa if math.isnan(sb) else sb
    return math.sqrt((sa * sa + sb * sb) / 2)


def compare_one(entry: str, metric: str, tol: Tolerance, baseline: Stat | None,
                current: Stat | None) -> Comparison:
    direction = tol.direction or "lower_is_better"
    common = {"entry": entry, "metric": metric, "direction": direction,
              "tolerance": tol.describe()}
    if baseline is None or baseline.n == 0 or math.isnan(baseline.mean):
        return Comparison(**common, status="new", baseline=None, current=current)  # type: ignore[arg-type]
    if current is None or current.n == 0 or math.isnan(current.mean):
        return Comparison(**common, status="missing", baseline=baseline, current=None)  # type: ignore[arg-type]
    b, c = baseline.mean, current.mean
    if direction == "higher_is_better":
        worse_by, ref = b - c, abs(b)
    elif direction == "lower_is_better":
        worse_by, ref = c - b, abs(b)
    else:
        t = float(tol.target if tol.target is not None else 0.0)
        worse_by, ref = abs(c - t) - abs(b - t), abs(b - t)
    allowed = max(tol.abs or 0.0, (tol.rel or 0.0) * ref)
    pooled = _pooled_std(baseline, current)
    delta = c - b
    if math.isnan(pooled):
        sigma = float("nan")
    elif pooled <= _EPS:
        sigma = 0.0 if abs(delta) <= _EPS else float("inf")
    else:
        sigma = abs(delta) / pooled
    status: Status = "ok"
    if worse_by > allowed + _EPS:
        enough = tol.min_sigma is None or math.isnan(sigma) or sigma >= tol.min_sigma
        status = "regressed" if enough else "ok"
    elif -worse_by > allowed + _EPS:
        status = "improved"
    return Comparison(**common, status=status, baseline=baseline, current=current,  # type: ignore[arg-type]
                      delta=delta, worse_by=worse_by, allowed=allowed, sigma=sigma)


def compare(current: Summary, baseline: Summary,
            tolerances: Mapping[str, Mapping[str, Tolerance]]) -> list[Comparison]:
    """Check every toleranced metric of every entry of ``current`` against ``baseline``.

    An entry or metric the baseline lacks is ``new`` (never a failure). A metric the baseline has
    but the current run lacks (the run crashed, or the metric vanished) is ``missing`` and fails.
    A toleranced metric absent from both sides (e.g. a class-forgetting metric on a random
    scenario) is skipped.
    """
    rows: list[Comparison] = []
    for entry, tols in tolerances.items():
        cur, base = current.get(entry, {}), baseline.get(entry)
        for metric, tol in tols.items():
            b = base.get(metric) if base is not None else None
            c = cur.get(metric)
            if b is None and c is None:
                continue
            rows.append(compare_one(entry, metric, tol, b, c))
    return rows


def regressions(rows: Iterable[Comparison]) -> list[Comparison]:
    return [r for r in rows if r.failed]


def summary_to_json(summary: Summary) -> dict[str, dict[str, Any]]:
    return {e: {m: s.to_json() for m, s in ms.items()} for e, ms in summary.items()}


def summary_from_json(obj: Any, where: str) -> Summary:
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{where}: expected a mapping of entry id -> metrics, "
                          f"got {type(obj).__name__}")
    out: Summary = {}
    for entry, metrics in obj.items():
        if not isinstance(metrics, Mapping):
            raise ConfigError(f"{where}.{entry}: expected a mapping of metric -> value, "
                              f"got {metrics!r}")
        out[str(entry)] = {str(m): Stat.from_json(v, f"{where}.{entry}.{m}")
                           for m, v in metrics.items()}
    return out


def read_pinned(path: str | Path) -> tuple[Summary, dict[str, Any]]:
    """Read a pinned baseline (JSON or YAML); returns the summary and its metadata."""
    p = Path(path)
    if p.suffix == ".json":
        if not p.is_file():
            raise ConfigError(f"{p}: file not found")
        try:
            data = json.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not UTF-8 text; a pinned baseline is JSON written by "
                              f"raysweep bench baseline --pin") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    else:
        data = load_yaml(p)
    if not isinstance(data, Mapping) or "entries" not in data:
        raise ConfigError(f"{p}: a pinned baseline needs an 'entries' mapping "
                          f"(write one with: raysweep bench baseline SUITE --pin {p.name})")
    meta = {k: v for k, v in data.items() if k != "entries"}
    return summary_from_json(data["entries"], f"{p}: entries"), meta


def check_pin_path(path: str | Path) -> None:
    """``--pin``: a .json/.yaml file name in a directory that can be written (checked before
    MLflow is queried, so a typo costs nothing)."""
    p = Path(path)
    if p.suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"--pin {path}: give a .json, .yaml or .yml file name, e.g. "
                          f"baselines/{p.name or 'suite'}.json")
    if p.is_dir():
        raise ConfigError(f"--pin {path}: is a directory; give a file name inside it")
    check_writable_dir(p.parent if str(p.parent) else Path("."), "--pin directory")


def write_pinned(path: str | Path, suite: str, summary: Summary,
                 source: Mapping[str, Any]) -> Path:
    p = Path(path)
    doc = {"schema_version": 1, "suite": suite, "source": dict(source),
           "entries": summary_to_json(summary)}
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix in (".yaml", ".yml"):
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
    else:
        p.write_text(json.dumps(doc, indent=2) + "\n")
    return p
