"""``raysweep bench``: regression suites (``run``, ``baseline``) and the sweep overhead benchmark."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from raysweep.cli import app
from raysweep.cli._common import print_json, stdout

if TYPE_CHECKING:
    from raysweep.bench import BenchResult, Suite

bench_app = typer.Typer(help="Benchmarks: regression suites against a baseline; sweep overhead.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("run")
def run_cmd(
    suite: str = typer.Argument(..., help="suite YAML path or bundled name (search_spaces/suites)"),
    baseline: str = typer.Option("previous", "--baseline", "-b",
                                 help="previous (last passing run in MLflow), an MLflow run id, "
                                      "or a pinned JSON/YAML file"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
    address: str | None = typer.Option(None, "--address",
                                       help="Ray cluster address (default: $RAY_ADDRESS; 'local' "
                                            "starts a local Ray); without one, runs in-process"),
    out: str | None = typer.Option(None, "--out", help="report directory; {suite} and {timestamp} "
                                   "are filled in (default: ./.raysweep/bench/{suite}/{timestamp})"),
    overrides: list[str] = typer.Option([], "--set", help="suite override path=value, e.g. "
                                        "entries.finetune.config.lr=1e-6 (repeatable)"),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 or auto (default: the suite's)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and print the plan; run nothing"),
) -> None:
    """Run a regression suite, compare with the baseline; exit 3 when a metric got worse."""
    from raysweep.bench import load_suite, run_suite

    s = load_suite(suite, overrides)
    if dry_run:
        _print_plan(s, json_out)
        return
    addr = address or os.environ.get("RAY_ADDRESS") or None
    result = run_suite(s, baseline=baseline, address=addr, out_dir=out, device=device)
    if json_out:
        print_json(result.to_json())
    else:
        _print_result(result, s)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@bench_app.command("baseline")
def baseline_cmd(
    suite: str = typer.Argument(..., help="suite YAML path or bundled name"),
    pin: str = typer.Option(..., "--pin", help="write pinned values here (.json, .yaml)"),
    run_id: str | None = typer.Option(None, "--run", help="the suite run to pin (default: the latest)"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Pin the seed means and spreads of a suite run to a file usable as --baseline."""
    from raysweep.bench import load_suite, pin_baseline

    s = load_suite(suite)
    path, rid = pin_baseline(s, pin, run_id=run_id)
    if json_out:
        print_json({"suite": s.name, "run_id": rid, "path": str(path)})
    else:
        stdout.print(f"pinned run {rid} of suite {s.name} to {path}")


def _print_plan(s: Suite, json_out: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows = [{"entry": e.id, "workload": e.workload.name, "method": e.method,
             "config": e.config_kind, "values": e.config, "seeds": list(e.seeds),
             "tolerances": {m: t.model_dump(exclude_none=True) for m, t in e.tolerances.items()}}
            for e in s.entries]
    if json_out:
        print_json({"suite": s.name, "runs": s.runs(), "entries": rows})
        return
    table = Table(title=f"suite {s.name}: {s.runs()} runs", header_style="bold")
    for col in ("entry", "config", "seeds", "tolerances"):
        table.add_column(col)
    for r, e in zip(rows, s.entries):
        cfg = r["config"] + (f" {r['values']}" if r["values"] else "")
        tols = ", ".join(f"{m} {t.describe()}" for m, t in e.tolerances.items())
        table.add_row(escape(r["entry"]), escape(cfg), ",".join(map(str, r["seeds"])), escape(tols))
    stdout.print(table)


def _print_result(result: BenchResult, s: Suite) -> None:
    from rich.markup import escape
    from rich.table import Table

    from raysweep.bench.report import COMPARISON_HEADERS, comparison_rows, result_rows

    metrics = s.report_metrics()
    for wname, rows in result_rows(s, result.summary, result.references, metrics):
        table = Table(title=f"{s.name}: {wname} (seed mean ± std)", header_style="bold")
        table.add_column("entry", style="cyan")
        for m in metrics:
            table.add_column(m, justify="right")
        for r in rows:
            table.add_row(*map(escape, r), style="dim" if r[0].startswith("(") else None)
        stdout.print(table)
    if result.errors:
        stdout.print(f"[red bold]{len(result.errors)} run(s) failed:[/]")
        for e, seed, err in result.errors:
            stdout.print(f"  {escape(e)} seed {seed}: {escape(err)}")
    bad = result.regressions
    if bad:
        table = Table(title=f"REGRESSION: {len(bad)} metric(s) got worse than the baseline "
                            f"({result.baseline.label})", title_style="bold red", header_style="bold")
        for h in COMPARISON_HEADERS:
            table.add_column(h, justify="left" if h in ("entry", "metric", "status") else "right")
        for row in comparison_rows(bad):
            table.add_row(*map(escape, row), style="red")
        stdout.print(table)
    improved = sum(c.status == "improved" for c in result.comparisons)
    verdict = {
        "baseline": "[blue bold]baseline[/]: no earlier run to compare with; this run is the baseline",
        "passed": f"[green bold]passed[/]: {len(result.comparisons)} checks within tolerance "
                  f"({improved} improved) against {result.baseline.label}",
        "regressed": f"[red bold]regressed[/]: {len(bad)} of {len(result.comparisons)} checks "
                     f"failed against {result.baseline.label}",
        "failed": "[red bold]failed[/]: some runs raised errors",
    }[result.status]
    stdout.print(verdict)
    stdout.print(f"report: {escape(str(result.report_dir / 'report.html'))}   MLflow run: {result.run_id}")


@bench_app.command("overhead")
def overhead_cmd(
    workload: str = typer.Option("fmnist-class-small", "--workload", "-w",
                                 help="workload of the overhead sweep"),
    method: str = typer.Option("finetune", "--method", "-m", help="method of the overhead sweep"),
    trials: int = typer.Option(10, "--trials", min=2, help="trials of the overhead sweep (2 epochs each)"),
    efficiency_workload: str = typer.Option("digits-class", "--efficiency-workload",
                                            help="workload of the grid-vs-TPE comparison"),
    repeats: int = typer.Option(20, "--repeats", min=1,
                                help="TPE runs (sampler seeds) replayed over the grid's results"),
    skip_overhead: bool = typer.Option(False, "--skip-overhead", help="only sample efficiency"),
    skip_efficiency: bool = typer.Option(False, "--skip-efficiency", help="only the overhead"),
    out: str = typer.Option("bench-overhead.json", "-o", "--output", help="JSON report"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Sweep overhead (wall time vs the trials' own compute) and TPE's sample efficiency vs a grid."""
    from pathlib import Path

    from raysweep.bench.overhead import run_benchmark

    report = run_benchmark(workload=workload, method=method, trials=trials,
                           efficiency_workload=efficiency_workload, repeats=repeats,
                           overhead=not skip_overhead, efficiency=not skip_efficiency,
                           out=Path(out))
    if json_out:
        print_json(report)
        return
    for line in report["summary"]:
        stdout.print(line)
    stdout.print(f"report: {out}")
