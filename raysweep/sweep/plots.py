"""Plots of a sweep's stored Optuna study (``raysweep plot``).

``.html`` files are interactive Plotly figures; ``.png``, ``.svg`` and ``.pdf`` are drawn with
matplotlib (no browser or Kaleido needed).

* ``history``: every configuration's objective, one colour per method, with the best so far; the
  y-range covers the bulk of the values (5th-95th percentile, widened to keep the best), so one
  diverged trial cannot flatten the others; points off the range are counted in the title.
* ``importance`` and ``parallel``: Optuna's visualisations over *one method's* configurations
  (``--method``; required when the sweep compares several), whose parameters are named without
  the ``<method>/`` prefix. Across methods the parameter sets differ: importance would rank the
  method choice itself, and parallel coordinates would show empty axes.
* ``pareto``: Optuna's Pareto front of a multi-objective sweep.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from raysweep.errors import UserError, did_you_mean
from raysweep.sweep.space import SweepSpec

__all__ = ["KINDS", "plot_study", "method_study", "robust_range"]

KINDS = ("history", "pareto", "importance", "parallel")
_RASTER = (".png", ".svg", ".pdf")


def _method_of(trial: Any, methods: list[str]) -> str:
    return str(trial.params.get("method", methods[0]))


def method_study(study: Any, method: str, methods: list[str]) -> Any:
    """An in-memory study of ``method``'s completed configurations, its parameters named
    without the ``<method>/`` prefix (what Optuna's importance and parallel plots need)."""
    import optuna

    sub = optuna.create_study(directions=study.directions)
    prefix = f"{method}/"
    for t in study.trials:
        if t.state.name != "COMPLETE" or _method_of(t, methods) != method:
            continue
        params = {k[len(prefix):]: v for k, v in t.params.items() if k.startswith(prefix)}
        dists = {k[len(prefix):]: d for k, d in t.distributions.items() if k.startswith(prefix)}
        sub.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, state=optuna.trial.TrialState.COMPLETE,
            **({"values": t.values} if len(study.directions) > 1 else {"value": t.value})))
    return sub


def robust_range(values: list[float], best: float) -> tuple[float, float]:
    """(low, high) covering the 5th-95th percentile of ``values`` and ``best``, plus a margin."""
    lo, hi = (float(x) for x in np.percentile(values, [5, 95]))
    lo, hi = min(lo, best), max(hi, best)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    return lo - pad, hi + pad


def _history(study: Any, spec: SweepSpec, name: str, raster: bool, methods: list[str]) -> Any:
    minimize = study.directions[0].name == "MINIMIZE"
    points = [(t.number, t.values[0], _method_of(t, methods)) for t in study.trials
              if t.state.name == "COMPLETE"]
    points.sort()
    best_line, best = [], None
    for n, v, _ in points:
        best = v if best is None or (v < best if minimize else v > best) else best
        best_line.append((n, best))
    lo, hi = robust_range([v for _, v, _ in points], best if best is not None else 0.0)
    off = sum(1 for _, v, _ in points if not lo <= v <= hi)
    title = f"{spec.name}: {name} per configuration" + (
        f" ({off} point(s) off the range shown)" if off else "")
    if raster:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        for m in methods:
            xs = [(n, v) for n, v, mm in points if mm == m]
            if xs:
                ax.scatter([n for n, _ in xs], [v for _, v in xs], label=m, s=18)
        ax.step([n for n, _ in best_line], [b for _, b in best_line], where="post", color="black",
                linewidth=1, label="best so far")
        ax.set_ylim(lo, hi)
        ax.set_xlabel("configuration (Optuna trial number)")
        ax.set_ylabel(name)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        return ax
    import plotly.graph_objects as go

    fig = go.Figure()
    for m in methods:
        xs = [(n, v) for n, v, mm in points if mm == m]
        if xs:
            fig.add_trace(go.Scatter(x=[n for n, _ in xs], y=[v for _, v in xs], mode="markers",
                                     name=m))
    fig.add_trace(go.Scatter(x=[n for n, _ in best_line], y=[b for _, b in best_line],
                             mode="lines", line={"shape": "hv", "color": "black"},
                             name="best so far"))
    fig.update_layout(title=title, xaxis_title="configuration (Optuna trial number)",
                      yaxis_title=name, yaxis_range=[lo, hi])
    return fig


def plot_study(study: Any, spec: SweepSpec, kind: str, out: Path,
               method: str | None = None) -> Path:
    """Write the ``kind`` plot of ``study`` to ``out`` (format from the suffix)."""
    if kind not in KINDS:
        raise UserError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}"
                        f"{did_you_mean(kind, KINDS)}")
    suffix = out.suffix.lower()
    if suffix not in (".html", *_RASTER):
        raise UserError(f"-o {out}: the file name must end in .html, .png, .svg or .pdf")
    methods = spec.method_names()
    if method is not None and method not in methods:
        raise UserError(f"--method {method!r}: not in this sweep{did_you_mean(method, methods)}; "
                        f"valid: {', '.join(methods)}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise UserError("the sweep has no completed configuration to plot yet")
    metrics, _ = spec.searcher_metrics()
    names = [m.removeprefix("best/") for m in metrics]
    multi = spec.multi_objective
    target = (lambda t: t.values[0]) if multi else None
    target_name = names[0]
    if kind == "pareto" and not multi:
        raise UserError("--kind pareto needs a sweep with two or more objectives; for one "
                        "objective use raysweep leaderboard --pareto M1,M2 over tracked metrics")
    if kind in ("importance", "parallel"):
        if method is None and len(methods) > 1:
            raise UserError(f"--kind {kind}: the methods of this sweep have different parameters; "
                            f"plot one with --method ({', '.join(methods)})")
        study = method_study(study, method or methods[0], methods)
        n = len(study.trials)
        if kind == "importance" and n < 2:
            raise UserError(f"--kind importance needs at least two completed configurations of "
                            f"{method or methods[0]} (got {n})")
        if not study.trials or not study.trials[0].params:
            raise UserError(f"--kind {kind}: {method or methods[0]} has no searched parameter")
    elif method is not None:
        study = method_study(study, method, methods)
        methods = [method]
    raster = suffix in _RASTER
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if raster:
            import matplotlib

            matplotlib.use("Agg")
            from optuna.visualization import matplotlib as vis
        else:
            from optuna import visualization as vis  # type: ignore[no-redef]
        try:
            if kind == "history":
                fig = _history(study, spec, target_name, raster, methods)
            elif kind == "pareto":
                fig = vis.plot_pareto_front(study, target_names=names)
            elif kind == "importance":
                fig = vis.plot_param_importances(study, target=target, target_name=target_name)
            else:
                fig = vis.plot_parallel_coordinate(study, target=target, target_name=target_name)
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"--kind {kind}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if raster:
        figure = fig.figure if hasattr(fig, "figure") else fig[0].figure  # Axes or array of Axes
        figure.set_size_inches(10, 6)
        figure.tight_layout()
        figure.savefig(out, dpi=120)
        import matplotlib.pyplot as plt

        plt.close(figure)
    else:
        fig.write_html(str(out), include_plotlyjs=True)  # offline: embed plotly.js
    return out
