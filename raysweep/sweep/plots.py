"""Optuna visualisations of a sweep's stored study (``raysweep plot``).

``.html`` files are interactive Plotly figures (``optuna.visualization``); ``.png``, ``.svg``
and ``.pdf`` are drawn with ``optuna.visualization.matplotlib`` (no browser or Kaleido needed).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from raysweep.errors import UserError
from raysweep.sweep.space import SweepSpec

__all__ = ["KINDS", "plot_study"]

KINDS = ("history", "pareto", "importance", "parallel")
_RASTER = (".png", ".svg", ".pdf")


def plot_study(study: Any, spec: SweepSpec, kind: str, out: Path) -> Path:
    """Write the ``kind`` plot of ``study`` to ``out`` (format from the suffix)."""
    if kind not in KINDS:
        raise UserError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    suffix = out.suffix.lower()
    if suffix not in (".html", *_RASTER):
        raise UserError(f"-o {out}: the file name must end in .html, .png, .svg or .pdf")
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
    if kind == "importance" and len(complete) < 2:
        raise UserError("--kind importance needs at least two completed configurations")
    raster = suffix in _RASTER
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if raster:
            import matplotlib

            matplotlib.use("Agg")
            from optuna.visualization import matplotlib as vis
        else:
            from optuna import visualization as vis
        try:
            if kind == "history":
                fig = vis.plot_optimization_history(study, target=target, target_name=target_name)
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
