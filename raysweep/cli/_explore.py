"""``raysweep sweeps | compare | export``: browse finished sweeps and reuse their results.

All three read sweep files and MLflow only (:mod:`raysweep.sweep.catalog`), never Ray or
torch, so they answer in about a second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from raysweep.cli import app
from raysweep.cli._common import Format, print_json, stdout
from raysweep.errors import ConfigError, UserError, did_you_mean

__all__ = ["EXPORT_KIND", "export_config", "load_exported", "compare_rows"]

#: The ``kind:`` of an exported configuration (``raysweep unlearn --config`` checks it).
EXPORT_KIND = "raysweep/method-config"
_EXPORT_KEYS = ("schema_version", "kind", "workload", "method", "seed", "max_epochs", "config",
                "source")


@app.command("sweeps")
def sweeps_cmd(
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table, md, csv or json"),
) -> None:
    """List the sweeps under $RAYSWEEP_HOME: state, workload, methods, trials, best, date."""
    from raysweep.report import Column, render, rich_table
    from raysweep.sweep.catalog import list_sweeps, sweeps_home

    sweeps = list_sweeps()
    rows = []
    for s in sweeps:
        t, best = s["trials"], s.get("best") or {}
        rows.append({"sweep": s["sweep_id"], "name": s["name"], "status": s["status"],
                     "workload": s["workload"], "methods": ",".join(s["methods"]),
                     "completed": t["completed"], "failed": t["failed"], "total": t["total"],
                     "budget_stopped": t["budget_stopped"], "best": best.get("value"),
                     "best_method": best.get("method"), "objective": s["objective"],
                     "created": s["created_iso"], "mlflow_tracking_uri": s["mlflow_tracking_uri"],
                     "sweep_dir": s["sweep_dir"]})
    cols = [Column("Name", "name", "{}"), Column("State", "status", "{}"),
            Column("Workload", "workload", "{}"), Column("Methods", "methods", "{}"),
            Column("Done", "completed", "{:.0f}", help="trials finished"),
            Column("Failed", "failed", "{:.0f}"), Column("Of", "total", "{:.0f}"),
            Column("Best", "best", "{:.4f}", help="best objective value so far (lower is better "
                   "for the composite objective)"),
            Column("Best method", "best_method", "{}"), Column("Created", "created", "{}")]
    if any(r["budget_stopped"] for r in rows):
        cols.insert(5, Column("Budget stop", "budget_stopped", "{:.0f}",
                              help="trials the time or cost budget stopped"))
    if fmt == Format.table:
        if not rows:
            stdout.print(escape(f"no sweeps under {sweeps_home()} (raysweep run starts one; "
                                f"RAYSWEEP_HOME selects another place)"))
            return
        stdout.print(rich_table(rows, cols, first="sweep", title=f"sweeps under {sweeps_home()}"))
    else:
        out = render(rows, cols, fmt.value, first="sweep",
                     extra=["objective", "mlflow_tracking_uri", "sweep_dir"])
        print(out, end="" if out.endswith("\n") else "\n")


# -- compare -----------------------------------------------------------------------------------

_COMPARED = ("objective", "test/acc", "forget/acc", "mia/auc/test", "dist/js", "cost/ratio")


def compare_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method (and reference) in either leaderboard: each metric of ``a``, of ``b``
    and ``b - a``. Objective deltas are left out when the sweeps' objectives differ."""
    from raysweep.sweep.leaderboard import mixed_objectives

    same_objective = not mixed_objectives([*a, *b])
    by_a = {r["method"]: r for r in a}
    by_b = {r["method"]: r for r in b}
    out = []
    for method in dict.fromkeys([*by_a, *by_b]):
        ra, rb = by_a.get(method, {}), by_b.get(method, {})
        row: dict[str, Any] = {"method": method, "kind": ra.get("kind") or rb.get("kind")}
        for key in _COMPARED:
            k = "test/acc_retain_classes" if key == "test/acc" and (
                "test/acc_retain_classes" in ra or "test/acc_retain_classes" in rb) else key
            va, vb = ra.get(k), rb.get(k)
            row[f"A:{k}"], row[f"B:{k}"] = va, vb
            comparable = same_objective or not k.startswith("objective")
            if comparable and isinstance(va, (int, float)) and isinstance(vb, (int, float)) \
                    and math.isfinite(va) and math.isfinite(vb):
                row[f"Δ:{k}"] = vb - va
        row["A:run_id"], row["B:run_id"] = ra.get("run_id"), rb.get("run_id")
        out.append(row)
    return out


@app.command("compare")
def compare_cmd(
    sweep_a: str = typer.Argument(..., metavar="A",
                                  help="sweep id (or prefix, 'latest', directory)"),
    sweep_b: str = typer.Argument(..., metavar="B", help="the other sweep"),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table, md, csv or json"),
) -> None:
    """Two sweeps side by side: each method's best configuration in A, in B, and B - A."""
    from raysweep.cli._sweep import _leaderboard_rows
    from raysweep.report import METRICS, Column, render, rich_table

    rows_a, id_a = _leaderboard_rows(sweep_a)
    rows_b, id_b = _leaderboard_rows(sweep_b)
    rows = compare_rows(rows_a, rows_b)
    cols = []
    for key in dict.fromkeys(k.split(":", 1)[1] for r in rows for k in r
                             if k.startswith(("A:", "B:")) and not k.endswith("run_id")):
        m = METRICS.get(key)
        label, fmt_s, scale = (m.header, m.fmt, m.scale) if m else (key, "{:.4f}", 1.0)
        cols += [Column(f"A {label}", f"A:{key}", fmt_s, scale,
                        help=f"{label} = {m.meaning if m else key}"),
                 Column(f"B {label}", f"B:{key}", fmt_s, scale),
                 Column(f"Δ {label}", f"Δ:{key}", "{:+" + fmt_s[2:], scale)]
    from raysweep.sweep.leaderboard import mixed_objectives

    note = (f"A = sweep {id_a}, B = sweep {id_b}; Δ = B - A; each method's best configuration "
            f"in its own sweep, metrics on test except Obj (val)")
    if mixed_objectives([*rows_a, *rows_b]):
        note += "; the sweeps use different objectives, so Obj is not compared (no Δ)"
    if fmt == Format.table:
        # Long form (method x metric, then A, B, Δ): stays readable at any terminal width.
        long_rows = []
        for r in rows:
            for i in range(0, len(cols), 3):
                ca, cb, cd = cols[i:i + 3]
                long_rows.append({"method": r["method"], "metric": ca.header[2:],
                                  "A": ca.cell(r), "B": cb.cell(r), "Δ": cd.cell(r)})
        text_cols = [Column("Metric", "metric", "{}"), Column("A", "A", "{}"),
                     Column("B", "B", "{}"), Column("Δ (B - A)", "Δ", "{}")]
        legend = "; ".join(c.help for c in cols if c.help)
        stdout.print(rich_table(long_rows, text_cols, title=f"compare {id_a} (A) with {id_b} (B)",
                                caption=f"{note}. {legend}."))
    elif fmt == Format.json:
        print_json({"a": id_a, "b": id_b, "note": note, "rows": rows})
    else:
        print(render(rows, cols, fmt.value, extra=["kind"]), end="")


# -- export ------------------------------------------------------------------------------------

def export_config(sweep: str, method: str) -> dict[str, Any]:
    """The best configuration of ``method`` in a sweep as an ``unlearn --config`` document."""
    from raysweep.cli._sweep import _store
    from raysweep.sweep.catalog import fetch_runs
    from raysweep.sweep.leaderboard import leaderboard

    uri, experiment, sweep_id = _store(sweep)
    runs = fetch_runs(uri, experiment, sweep_id=sweep_id)
    rows = [r for r in leaderboard(runs) if r["kind"] == "trial"]
    by_method = {r["method"]: r for r in rows}
    if method not in by_method:
        raise UserError(f"--method {method!r}: sweep {sweep_id} has no finished trial of it"
                        f"{did_you_mean(method, by_method)}; valid: "
                        f"{', '.join(by_method) or 'none (no trial finished)'}")
    row = by_method[method]
    tags = next(r["tags"] for r in runs if r["run_id"] == row["run_id"])
    best_epoch = tags.get("raysweep.best_epoch")
    return {
        "schema_version": 1, "kind": EXPORT_KIND,
        "workload": tags.get("raysweep.workload_ref") or row["workload"],
        "method": method, "seed": int(row["seeds"][0]) if row.get("seeds") else 0,
        "max_epochs": int(best_epoch) if best_epoch not in (None, "") else None,
        "config": dict(row.get("params") or {}),
        "source": {"sweep_id": sweep_id, "run_id": row["run_id"], "run_ids": row["run_ids"],
                   "objective": row.get("objective"), "objective_def": row.get("objective_def"),
                   "seeds": row.get("seeds"), "mlflow_tracking_uri": uri},
    }


@app.command("export")
def export_cmd(
    sweep: str = typer.Argument(..., help="sweep id (or prefix, 'latest', or directory)"),
    method: str = typer.Option(..., "--method", "-m",
                               help="the method whose best configuration to export"),
    out: Path = typer.Option(..., "-o", "--output",
                             help="YAML file to write (raysweep unlearn --config FILE)"),
) -> None:
    """Write a method's best configuration in a sweep as YAML for ``raysweep unlearn --config``."""
    import yaml

    if out.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"-o {out}: the export is YAML; give a .yaml or .yml file name")
    if not out.parent.is_dir():
        raise ConfigError(f"-o {out}: directory {out.parent} does not exist; create it first")
    doc = export_config(sweep, method)
    src = doc["source"]
    obj = src.get("objective")
    header = (f"# {method}'s best configuration in sweep {src['sweep_id']}"
              + (f" (objective {obj:.4f} on val, seeds {src.get('seeds')})"
                 if isinstance(obj, float) else "")
              + f"\n# run it again: raysweep unlearn --config {out.name}\n")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(out)  # never a half-written file under the final name
    print(out)


def load_exported(path: Path) -> dict[str, Any]:
    """Read and check an exported configuration (see :func:`export_config`); errors name the
    file, the field, the value and the fix."""
    from raysweep.config import load_yaml

    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping written by raysweep export, got "
                          f"{type(data).__name__}")
    if data.get("kind") != EXPORT_KIND:
        raise ConfigError(f"{path}: kind: {data.get('kind')!r} is not {EXPORT_KIND!r}; write the "
                          f"file with raysweep export SWEEP --method M -o FILE")
    unknown = [k for k in data if k not in _EXPORT_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; valid: {', '.join(_EXPORT_KEYS)}")
    for key, typ in (("workload", str), ("method", str)):
        if not isinstance(data.get(key), typ) or not data.get(key):
            raise ConfigError(f"{path}: {key}: expected a name, got {data.get(key)!r}")
    if not isinstance(data.get("config", {}), dict):
        raise ConfigError(f"{path}: config: expected a mapping of method parameters, got "
                          f"{data.get('config')!r}")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{path}: seed: expected an integer >= 0, got {seed!r}")
    me = data.get("max_epochs")
    if me is not None and (not isinstance(me, int) or isinstance(me, bool) or me < 1):
        raise ConfigError(f"{path}: max_epochs: expected an integer >= 1 or null, got {me!r}")
    return data
