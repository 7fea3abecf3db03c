"""The Python API, for notebooks and scripts: the CLI's sweeps as Python objects.

    >>> import raysweep
    >>> outcome = raysweep.run("search_spaces/sweeps/quickstart.yaml")     # doctest: +SKIP
    >>> df = raysweep.leaderboard(sweep=outcome.sweep_id)                   # doctest: +SKIP
    >>> raysweep.sweeps()[["sweep", "status", "best"]]                      # doctest: +SKIP
    >>> s = raysweep.load_sweep("latest"); s.status["trials"], s.spec.name  # doctest: +SKIP

Reading functions (:func:`leaderboard`, :func:`sweeps`, :func:`load_sweep`) import neither Ray
nor torch; :func:`run` does. Mistakes raise :class:`raysweep.errors.UserError` with the same
one-line message the CLI prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raysweep.errors import ConfigError
from raysweep.sweep._storage import load_sweep_study

if TYPE_CHECKING:
    import pandas as pd

    from raysweep.sweep.runner import SweepOutcome
    from raysweep.sweep.space import SweepSpec

__all__ = ["run", "leaderboard", "load_sweep", "sweeps", "Sweep"]


def run(spec: str | Path | Mapping[str, Any] | SweepSpec, *, overrides: Sequence[str] = (),
        address: str | None = None) -> SweepOutcome:
    """Run a sweep and return its outcome (``sweep_id``, ``status``, ``counts``, stores).

    Args:
        spec: a sweep YAML path, the same document as a dict, or a :class:`SweepSpec`.
        overrides: ``key.path=value`` strings, as ``raysweep run --set``.
        address: a Ray cluster address (default: ``$RAY_ADDRESS``, else a local Ray).
    """
    from raysweep.sweep.runner import run_sweep
    from raysweep.sweep.space import SweepSpec, parse_sweep, resolve_spec
    from raysweep.sweep.space import load_sweep as load_yaml_sweep

    if isinstance(spec, (str, Path)):
        resolved = load_yaml_sweep(spec, list(overrides))
    else:
        if overrides:
            raise ConfigError("run(overrides=...) applies to a YAML path; edit the dict or "
                              "SweepSpec instead")
        parsed = spec if isinstance(spec, SweepSpec) else parse_sweep(dict(spec), "<dict>")
        resolved = resolve_spec(parsed, "<dict>")
    return run_sweep(resolved, address=address)


def leaderboard(sweep: str | None = None, *, workload: str | None = None,
                method: str | None = None, sort: str | None = None,
                pareto: Sequence[str] | None = None, top: int | None = None,
                all_configs: bool = False) -> pd.DataFrame:
    """The leaderboard as a DataFrame of raw values (fractions, seconds, full run ids).

    One row per configuration (reference rows ``original`` and ``retrain`` first), the same
    rows as ``raysweep leaderboard --format json``; metric columns are the metric keys
    (``test/acc``, ``forget/acc``, ``objective``...), ``<key>:std`` beside them over seeds.
    ``sweep`` follows the CLI's store rule (:mod:`raysweep.sweep.catalog`).
    """
    import pandas as pd

    from raysweep.sweep.catalog import leaderboard_rows

    rows, _ = leaderboard_rows(sweep, workload=workload, method=method, sort=sort,
                                pareto=list(pareto) if pareto else None, top=top,
                                all_configs=all_configs)
    return pd.DataFrame(rows)


def sweeps() -> pd.DataFrame:
    """Every sweep under ``$RAYSWEEP_HOME``, newest first: state, workload, methods, trials,
    best."""
    import pandas as pd

    from raysweep.sweep.catalog import list_sweeps

    out = []
    for s in list_sweeps():
        best = s.get("best") or {}
        out.append({"sweep": s["sweep_id"], "name": s["name"], "status": s["status"],
                    "workload": s["workload"], "methods": s["methods"], **s["trials"],
                    "best": best.get("value"), "best_method": best.get("method"),
                    "created": s["created_iso"], "sweep_dir": s["sweep_dir"]})
    return pd.DataFrame(out)


@dataclass
class Sweep:
    """A sweep on this machine: its id, directory, status and resolved spec."""

    sweep_id: str
    sweep_dir: Path
    status: dict[str, Any]

    @property
    def spec(self) -> SweepSpec:
        from raysweep.sweep.space import SweepSpec

        return SweepSpec.model_validate_json((self.sweep_dir / "spec.json").read_text())

    def leaderboard(self, **kwargs: Any) -> pd.DataFrame:
        """:func:`leaderboard` of this sweep."""
        return leaderboard(str(self.sweep_dir), **kwargs)

    def study(self) -> Any:
        """The sweep's Optuna study (``optuna.visualization``, ``study.trials_dataframe()``)."""
        return load_sweep_study(self.sweep_dir)  # the journal file, or search.storage's DB


def load_sweep(sweep_id: str) -> Sweep:
    """A sweep by id, unique prefix, ``latest`` or directory (as ``raysweep status``)."""
    from raysweep.cli._sweep import sweep_status
    from raysweep.sweep.catalog import find_sweep

    d = find_sweep(sweep_id)
    st = sweep_status(str(d))
    return Sweep(sweep_id=st["sweep_id"], sweep_dir=d, status=st)
