"""``raysweep bench``: regression suites (``run``, ``baseline``) and the sweep overhead
benchmark."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    suite: str = typer.Argument(...,
                                help="suite YAML path or bundled name (search_spaces/suites)"),
    baseline: str = typer.Option("previous", "--baseline", "-b",
                                 help="previous (last passing run in MLflow), an MLflow run id, "
                                      "or a pinned JSON/YAML file"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
    address: str | None = typer.Option(None, "--address",
                                       help="Ray cluster address (default: $RAY_ADDRESS; 'local' "
                                            "starts a local Ray); without one, runs in-process"),
    out: str | None = typer.Option(None, "--out", help="report directory; {suite} and {timestamp} "
                                   "are filled in "
                                   "(default: ./.raysweep/bench/{suite}/{timestamp})"),
    overrides: list[str] = typer.Option([], "--set", help="suite override path=value, e.g. "
                                        "entries.finetune.config.lr=1e-6 (repeatable)"),
    device: str | None = typer.Option(None,
                                      help="cpu, cuda, cuda:1 or auto (default: the suite's)"),
    scale: str | None = typer.Option(None, "--scale",
                                     help="one of the suite's scales: (e.g. small, "
                                     "paper); default: small when the suite defines it"),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="validate and print the plan; run nothing"),
) -> None:
    """Run a regression suite, compare with the baseline; exit 3 when a metric got worse."""
    from raysweep.bench import load_suite, run_suite
    from raysweep.bench.tracking import tracking_uri
    from raysweep.preflight import bench_preflight, check_device_format, check_out_template

    s = load_suite(suite, overrides, scale=scale)
    if dry_run:
        # The static checks of a real run (a bad --baseline, --out or --device fails here too);
        # whether the device exists on this machine is only checked by a real run.
        if device is not None and device != "auto":
            check_device_format(device)
        check_out_template(out)
        _dry_run_baseline(s, baseline)
        _print_plan(s, json_out)
        return
    addr = address or os.environ.get("RAY_ADDRESS") or None
    # Before MLflow is written or anything trains: settings that cannot work fail in a second.
    bench_preflight(s, device=device, out=out, address=addr, uri=tracking_uri())
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
    run_id: str | None = typer.Option(None, "--run",
                                      help="the suite run to pin (default: the latest)"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
    scale: str | None = typer.Option(None, "--scale", help="the scale of the run to pin"),
) -> None:
    """Pin the seed means and spreads of a suite run to a file usable as --baseline."""
    from raysweep.bench import load_suite, pin_baseline
    from raysweep.bench.baseline import check_pin_path

    check_pin_path(pin)
    s = load_suite(suite, scale=scale)
    path, rid = pin_baseline(s, pin, run_id=run_id)
    if json_out:
        print_json({"suite": s.name, "run_id": rid, "path": str(path)})
    else:
        stdout.print(f"pinned run {rid} of suite {s.name} to {path}")


@bench_app.command("paper")
def paper_cmd(
    suites: list[str] = typer.Argument(..., help="paper suite YAML paths or bundled names, e.g. "
                                       "search_spaces/suites/paper-*.yaml"),
    scale: str | None = typer.Option(None, "--scale", help="the suites' scale (default: small)"),
    results: str = typer.Option("docs/results", "--results",
                                help="reports go to RESULTS/<suite>/"),
    regenerate: bool = typer.Option(False, "--regenerate",
                                    help="train nothing: rebuild the reports "
                                    "from RESULTS/<suite>/run/summary.json"),
    address: str | None = typer.Option(None, "--address",
                                       help="Ray cluster address (see bench run)"),
    overrides: list[str] = typer.Option([], "--set",
                                        help="suite override path=value (repeatable)"),
    device: str | None = typer.Option(None,
                                      help="cpu, cuda, cuda:1 or auto (default: the suite's)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Run paper suites and write default-vs-tuned tables and plots to \
RESULTS/<suite>/README.md."""
    from raysweep.bench import load_suite, run_suite
    from raysweep.bench.paper import load_summary_json, write_paper_report

    loaded = [load_suite(ref, overrides, scale=scale) for ref in suites]   # all validated first
    addr = address or os.environ.get("RAY_ADDRESS") or None
    done, failed = [], False
    for s in loaded:
        out = Path(results) / s.name
        run_dir = out / "run"
        summary_path = run_dir / "summary.json"
        if not regenerate:
            result = run_suite(s, baseline="previous", address=addr, out_dir=run_dir,
                               device=device)
            failed = failed or result.status == "failed"
        elif not summary_path.is_file():
            raise typer.BadParameter(f"--regenerate: {summary_path} does not exist; run without "
                                     f"--regenerate first")
        data = load_summary_json(summary_path)
        doc = data["doc"]
        # summary.json's own end time; its mtime for files written before it had one (a fresh
        # checkout resets mtimes).
        produced = doc.get("finished") or time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(summary_path.stat().st_mtime))
        meta = {"produced": produced,
                "wall time of the run": f"{float(doc.get('seconds') or 0) / 60:.1f} min "
                                        f"(training, tuning and evaluation)",
                "runs": f"{sum(len(e.seeds) for e in s.entries)} method runs "
                        f"({len(data['errors'])} failed) + "
                        f"{sum(1 for e in s.entries if e.tune)} tuning sweeps",
                "MLflow run": f"{doc.get('run_id')} ({doc.get('tracking_uri')})",
                "bench report": "[run/report.md](run/report.md)"}
        path = write_paper_report(s, data["summary"], data["references"], out,
                                  configs=data["configs"], errors=data["errors"], meta=meta,
                                  reference_seeds=data["reference_seeds"])
        done.append({"suite": s.name, "scale": s.scale, "report": str(path),
                     "failed_runs": len(data["errors"])})
        if not json_out:
            stdout.print(f"{s.name}: {path}")
    if json_out:
        print_json({"results": done})
    if failed:
        raise typer.Exit(1)


def _dry_run_baseline(s: Suite, ref: str) -> None:
    """Resolve ``--baseline`` as a real run would, without creating an MLflow store: a pinned
    file is read, a run id is looked up only in a store that exists."""
    from raysweep.bench import tracking
    from raysweep.bench.runner import resolve_baseline
    from raysweep.sweep.tracking import default_store_exists

    if ref != "previous" and not Path(ref).is_file() \
            and not default_store_exists(tracking.tracking_uri()):
        from raysweep.errors import ConfigError

        raise ConfigError(f"--baseline {ref!r}: not a pinned file, and the MLflow store "
                          f"{tracking.tracking_uri()} does not exist yet, so no run id can be "
                          f"found there; give 'previous' or a pinned JSON/YAML file")
    if ref == "previous" and not default_store_exists(tracking.tracking_uri()):
        return
    resolve_baseline(s, ref)


def _print_plan(s: Suite, json_out: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows: list[dict[str, Any]] = [
        {"entry": e.id, "workload": e.workload.name, "method": e.method,
         "config": e.config_kind, "values": e.config, "seeds": list(e.seeds),
         "tuning_seeds": list(e.tuning_seeds), "seed_scope": e.seed_scope,
         "tolerances": {m: t.model_dump(exclude_none=True) for m, t in e.tolerances.items()}}
        for e in s.entries]
    if json_out:
        print_json({"suite": s.name, "scale": s.scale, "runs": s.runs(),
                    "protocol": {k: v for k, v in s.protocol().items() if k != "entries"},
                    "entries": rows})
        return
    at = f" (scale {s.scale})" if s.scale else ""
    table = Table(title=f"suite {s.name}{at}: {s.runs()} runs", header_style="bold")
    for col in ("entry", "config", "seeds", "tolerances"):
        table.add_column(col)
    for r, e in zip(rows, s.entries):
        cfg = r["config"] + (f" {r['values']}" if r["values"] else "")
        tols = ", ".join(f"{m} {t.describe()}" for m, t in e.tolerances.items())
        seeds = ",".join(map(str, r["seeds"]))
        if r["tuning_seeds"]:
            seeds += f" (tuning {','.join(map(str, r['tuning_seeds']))})"
        if r["seed_scope"] != "method":
            seeds += f" [scope {r['seed_scope']}]"
        table.add_row(escape(r["entry"]), escape(cfg), escape(seeds), escape(tols))
    stdout.print(table)


def _print_result(result: BenchResult, s: Suite) -> None:
    from rich.markup import escape
    from rich.table import Table

    from raysweep.bench.report import (
        COMPARISON_HEADERS,
        STAT_LABEL,
        comparison_rows,
        protocol_rows,
        result_rows,
    )

    metrics = s.report_metrics()
    for key, value in protocol_rows(s, (result.protocol or {}).get("reference_seeds")):
        stdout.print(f"[bold]{escape(key)}[/]: {escape(value)}", soft_wrap=True)
    for wname, rows in result_rows(s, result.summary, result.references, metrics):
        table = Table(title=f"{s.name}: {wname} ({STAT_LABEL}; n=1: no interval)",
                      header_style="bold")
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
                            f"({result.baseline.label})",
                      title_style="bold red", header_style="bold")
        for h in COMPARISON_HEADERS:
            table.add_column(h, justify="left" if h in ("entry", "metric", "status") else "right")
        for row in comparison_rows(bad):
            table.add_row(*map(escape, row), style="red")
        stdout.print(table)
    improved = sum(c.status == "improved" for c in result.comparisons)
    verdict = {
        "baseline": "[blue bold]baseline[/]: no earlier run to compare with; "
                    "this run is the baseline",
        "passed": f"[green bold]passed[/]: {len(result.comparisons)} checks within tolerance "
                  f"({improved} improved) against {result.baseline.label}",
        "regressed": f"[red bold]regressed[/]: {len(bad)} of {len(result.comparisons)} checks "
                     f"failed against {result.baseline.label}",
        "failed": "[red bold]failed[/]: some runs raised errors",
    }[result.status]
    stdout.print(verdict)
    assert result.report_dir is not None  # run_suite always writes a report
    stdout.print(f"report: {escape(str(result.report_dir / 'report.html'))}   "
                 f"MLflow run: {result.run_id}")


@bench_app.command("scale")
def scale_cmd(
    workload: str = typer.Option("fmnist-class-small", "--workload", "-w",
                                 help="workload of the sweep"),
    method: str = typer.Option("finetune", "--method", "-m", help="method of the sweep"),
    trials: int = typer.Option(8, "--trials", min=2, help="trials per sweep"),
    epochs: int = typer.Option(2, "--epochs", min=1, help="epochs per trial"),
    cores: int = typer.Option(2, "--cores", min=2,
                              help="total CPUs: 1 node x CORES vs CORES nodes x 1"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="alternating runs of each layout"),
    out: str = typer.Option("bench-scale.json", "-o", "--output", help="JSON report"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Trials/hour of one sweep on 1 local node vs several, at equal total cores \
(real ray start)."""
    from raysweep.bench.scale import measure_scale
    from raysweep.errors import UserError
    from raysweep.methods import get_method
    from raysweep.sweep.runner import err_console
    from raysweep.sweep.space import has_default_space

    get_method(method)  # an unknown name is a UserError with a did-you-mean
    if not has_default_space(method):
        raise UserError(f"--method {method}: no bundled search space; pick another method")
    report = measure_scale(workload=workload, method=method, trials=trials, epochs=epochs,
                           cores=cores, repeats=repeats, out=Path(out),
                           log=lambda m: err_console().print(m))
    _print_summary_report(report, out, json_out)


def _print_summary_report(report: dict[str, Any], out: str, json_out: bool) -> None:
    """Print a report holding a "summary" list of lines: as JSON with --json, else the lines
    and the report's path."""
    if json_out:
        print_json(report)
        return
    for line in report["summary"]:
        stdout.print(line)
    stdout.print(f"report: {out}")


@bench_app.command("overhead")
def overhead_cmd(
    workload: str = typer.Option("fmnist-class-small", "--workload", "-w",
                                 help="workload of the overhead sweep"),
    method: str = typer.Option("finetune", "--method", "-m", help="method of the overhead sweep"),
    trials: int = typer.Option(10, "--trials", min=2,
                               help="trials of the overhead sweep (2 epochs each)"),
    efficiency_workload: str = typer.Option("digits-class", "--efficiency-workload",
                                            help="workload of the grid-vs-TPE comparison"),
    repeats: int = typer.Option(20, "--repeats", min=1,
                                help="TPE runs (sampler seeds) replayed over the grid's results"),
    skip_overhead: bool = typer.Option(False, "--skip-overhead", help="only sample efficiency"),
    skip_efficiency: bool = typer.Option(False, "--skip-efficiency", help="only the overhead"),
    out: str = typer.Option("bench-overhead.json", "-o", "--output", help="JSON report"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Sweep overhead (wall time vs the trials' own compute) and TPE's sample efficiency \
vs a grid."""
    from raysweep.bench.overhead import run_benchmark

    report = run_benchmark(workload=workload, method=method, trials=trials,
                           efficiency_workload=efficiency_workload, repeats=repeats,
                           overhead=not skip_overhead, efficiency=not skip_efficiency,
                           out=Path(out))
    _print_summary_report(report, out, json_out)


@bench_app.command("edits")
def edits_cmd(
    workloads: list[str] = typer.Argument(None, help="workload names or YAML paths (default: "
                                          "every shipped benchmark workload)"),
    methods: str = typer.Option(",".join(("ssd", "eu-k", "salun", "scrub", "retrain")),
                                "--methods", "-m", help="honest methods to compare with"),
    max_epochs: int = typer.Option(1000, "--max-epochs", min=1, max=100_000,
                                   help="epoch budget of each honest method (the cost budget "
                                        "usually binds first)"),
    max_cost_ratio: float = typer.Option(0.5, "--max-cost-ratio", min=1e-6, max=100.0,
                                         help="cost budget: sample-passes / retraining's"),
    seed: int = typer.Option(0, "--seed", min=0, max=2**31 - 1),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 or auto"),
    out: str = typer.Option("docs/results/trivial-edits.md", "-o", "--output",
                            help="markdown report"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Trivial edits (suppress a logit, re-init the head, noise, unchanged, constant) vs the
    retrain oracle and honest methods; exit 3 when an edit beats the oracle or every method."""
    from raysweep.bench.edits import BENCHMARK_WORKLOADS, run_edits_bench, write_report
    from raysweep.errors import ConfigError
    from raysweep.methods import get_method
    from raysweep.workload import load_workload_config, task_of

    names = list(workloads or BENCHMARK_WORKLOADS)
    for name in names:
        # every name checked before anything is trained
        if task_of(load_workload_config(name)) != "classify":
            raise ConfigError(f"bench edits: workload {name!r} is a language model; the "
                              f"trivial edits (suppress a logit, re-initialise the head) are "
                              f"defined for classifiers only")
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not chosen:
        raise ConfigError("--methods: give at least one method (raysweep methods list)")
    for m in chosen:
        get_method(m)
    command = "raysweep bench edits " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    report = run_edits_bench(names, methods=chosen, max_epochs=max_epochs,
                             max_cost_ratio=max_cost_ratio, seed=seed, device=device,
                             command=command.strip())
    path = write_report(report, out)
    if json_out:
        print_json(report.to_json())
    else:
        for wl, v in report.verdicts.items():
            stdout.print(f"{wl}: {'pass' if v['passed'] else '[red]FAIL[/]'}  best edit "
                         f"{v['best_edit']} {v['best_edit_objective']:.4f}  oracle "
                         f"{v['oracle_objective']:.4f}  best method {v['best_method']} "
                         f"{v['best_method_objective']:.4f}")
        stdout.print(f"report: {path}")
    if not report.passed:
        raise typer.Exit(3)


@bench_app.command("eval")
def eval_cmd(
    sweep: str = typer.Option("search_spaces/sweeps/quickstart.yaml", "--sweep", "-s",
                              help="sweep YAML whose workload and space are sampled"),
    configs: int = typer.Option(10, "--configs", min=1, max=1000,
                                help="configurations drawn from the space"),
    val_rows: int = typer.Option(400, "--val-rows", min=50, max=10_000_000,
                                 help="val rows of the subset mode"),
    seed: int = typer.Option(0, "--seed", min=0, max=2**31 - 1),
    out: str = typer.Option("docs/results/evaluation-cost.md", "-o", "--output",
                            help="markdown report (JSON beside it)"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Evaluation's share of trial time under full / selection / subset per-epoch evaluation,
    and whether the cheaper modes pick the epochs full evaluation picks (one run)."""
    from raysweep.bench.evaluation import run_eval_bench, write_report
    from raysweep.preflight import check_writable_dir
    from raysweep.sweep.space import load_sweep

    load_sweep(sweep)  # a bad sweep file fails here, before anything is prepared
    check_writable_dir(Path(out).parent, "--output")
    command = "raysweep bench eval " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    report = run_eval_bench(sweep, configs=configs, val_rows=val_rows, seed=seed,
                            command=command.strip())
    path = write_report(report, out)
    if json_out:
        print_json(report.to_json())
        return
    for mode, v in report.summary.items():
        stdout.print(f"{mode:<9} eval share {v['eval_share']:.1%}  same epoch as full "
                     f"{v['agreement']:.0%}  mean objective lost {v['mean_regret']:.4f}")
    stdout.print(f"report: {path}")


@bench_app.command("cost")
def cost_cmd(
    workload: str = typer.Option("fmnist-class-mlp", "--workload", "-w", help="workload"),
    methods: str = typer.Option("ssd,finetune,scrub", "--methods", "-m",
                                help="comma-separated methods (paper defaults)"),
    max_epochs: int = typer.Option(2, "--max-epochs", min=1, max=1000),
    out: str = typer.Option("bench-cost.json", "-o", "--output", help="JSON report"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Sample-pass cost vs wall-time ratios under different threads and load (one run)."""
    from rich.table import Table

    from raysweep.bench.cost import run_cost_bench
    from raysweep.errors import ConfigError
    from raysweep.methods import get_method
    from raysweep.workload import load_workload_config

    load_workload_config(workload)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods: give at least one method (raysweep methods list)")
    for m in names:
        get_method(m)
    report = run_cost_bench(workload, names, max_epochs=max_epochs)
    Path(out).write_text(json.dumps(report, indent=2))
    if json_out:
        print_json(report)
        return
    table = Table(title=f"cost vs time ratios on {workload} (retrain: "
                        f"{report['retrain_passes']:,} sample-passes, "
                        f"{report['retrain_seconds_at_prepare']:.1f} s at prepare)",
                  header_style="bold")
    for col in ("method", "condition", "cost/ratio", "time/ratio (in-trial retrain)",
                "time / prepare-time retrain"):
        table.add_column(col)
    for r in report["rows"]:
        table.add_row(r["method"], r["condition"], f"{r['cost/ratio']:.4f}",
                      f"{r['time/ratio']:.4f}", f"{r['prepare_time_ratio']:.4f}")
    stdout.print(table)
    for m, s in report["spread"].items():
        stdout.print(f"{m}: spread (max/min over conditions) cost {s['cost/ratio']:.3f}, "
                     f"in-trial time ratio {s['time/ratio']:.2f}, prepare-time ratio "
                     f"{s['prepare_time_ratio']:.2f}")
    stdout.print(f"report: {out}")


@bench_app.command("driver")
def driver_cmd(
    samplers: str = typer.Option(",".join(("tpe", "random", "nsga2")), "--samplers",
                                 help="comma-separated Optuna samplers (tpe, random, nsga2)"),
    trials: int = typer.Option(2000, "--trials", min=10, max=100_000,
                               help="zero-compute trials per sampler"),
    concurrency: int = typer.Option(2, "--concurrency", min=1, max=64,
                                    help="trials at a time (one CPU each in a local Ray)"),
    window: int = typer.Option(200, "--window", min=1,
                               help="trials averaged at the start and at the end"),
    sampler_trials: int = typer.Option(0, "--sampler-trials",
                                       help="trials of each sampler alone, without Ray and "
                                            "MLflow, 10 to 100,000 (default 0: as --trials)"),
    quick: bool = typer.Option(False, "--quick", help="60 trials per sampler, windows of 20 "
                               "(checks the command; too short to show growth)"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow store to log "
                                            "to (default: a private sqlite store, removed)"),
    out: str = typer.Option("docs/results/driver.md", "-o", "--output",
                            help="markdown report; the plot (.png) and JSON go next to it"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Driver seconds per trial vs trial count: zero-compute trials through the real Optuna
    search, Ray Tune and MLflow tracking path, per sampler."""
    from raysweep.bench.driver import SAMPLERS, run_driver_bench, write_driver_report
    from raysweep.errors import ConfigError
    from raysweep.sweep.runner import err_console

    chosen = tuple(s.strip() for s in samplers.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SAMPLERS]
    if not chosen or unknown:
        raise ConfigError(f"--samplers: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                          f"choose from {', '.join(SAMPLERS)} (comma-separated)")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"--samplers: {samplers!r} names a sampler twice; give each once")
    path = _markdown_output(out)
    if sampler_trials and not 10 <= sampler_trials <= 100_000:
        raise ConfigError(f"--sampler-trials {sampler_trials}: give 10 to 100,000 trials, or 0 "
                          f"for as many as --trials")
    if tracking_uri is not None:
        from raysweep.preflight import check_tracking_store

        check_tracking_store(tracking_uri)
    if quick:
        trials, window, sampler_trials = 60, 20, 60
    # The command as resolved from the options (sys.argv is not ours under main([...])).
    command = (f"raysweep bench driver --samplers {','.join(chosen)} --trials {trials} "
               f"--concurrency {concurrency} --window {window}"
               + (f" --sampler-trials {sampler_trials}" if sampler_trials else "")
               + f" -o {shlex.quote(out)}")
    report = run_driver_bench(samplers=chosen, trials=trials, concurrency=concurrency,
                              window=window, sampler_trials=sampler_trials,
                              tracking_uri=tracking_uri,
                              log=lambda m: err_console().print(m, highlight=False))
    write_driver_report(report, path, command.strip())
    if json_out:
        print_json(report)
        return
    for r in report["samplers"]:
        stdout.print(f"{r['sampler']}: {r['seconds_per_trial_first']:.3f} s/trial over the first "
                     f"{r['window']}, {r['seconds_per_trial_last']:.3f} over the last "
                     f"(x{r['growth_last_over_first']}); goal {report['goal_seconds_per_trial']} "
                     f"s: {'met' if r['meets_goal'] else 'missed'}")
    stdout.print(f"report: {path}")


@bench_app.command("device")
def device_cmd(
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N"),
    models: str | None = typer.Option(None, "--models", help="comma-separated shipped models "
                                      "(default: all; raysweep models list)"),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (autocast; "
                                  "fp16 needs cuda)"),
    threads: int = typer.Option(1, "--threads", min=1, max=1024,
                                help="CPU threads (1: as a one-CPU trial runs)"),
    quick: bool = typer.Option(False, "--quick", help="tiny batches (checks the command)"),
    out: str = typer.Option("docs/results/device.md", "-o", "--output",
                            help="markdown report; the JSON goes next to it"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Images/s of training and evaluation of the shipped models on this device, and the
    paper-scale sweep's device-hours projected from them."""
    from raysweep.bench.device import (
        MODEL_INPUTS,
        PRECISIONS,
        check_device,
        run_device_bench,
        write_device_report,
    )
    from raysweep.errors import ConfigError
    from raysweep.sweep.runner import err_console

    why = check_device(device)
    if why:
        raise ConfigError(f"--device {device!r}: {why}; use --device cpu, or cuda on a machine "
                          f"with a GPU")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and not device.startswith("cuda"):
        raise ConfigError(f"--precision fp16 needs --device cuda (got {device!r}); on a CPU use "
                          f"bf16 or fp32")
    chosen = None
    if models is not None:
        chosen = tuple(m.strip() for m in models.split(",") if m.strip())
        unknown = [m for m in chosen if m not in MODEL_INPUTS]
        if not chosen or unknown:
            shown = ", ".join(map(repr, unknown)) or "empty list"
            raise ConfigError(f"--models: unknown {shown}; "
                              f"choose from {', '.join(MODEL_INPUTS)}")
    path = _markdown_output(out)
    command = (f"raysweep bench device --device {device} --precision {precision}"
               + (f" --threads {threads}" if device == "cpu" else "")
               + (f" --models {','.join(chosen)}" if chosen else "")
               + (" --quick" if quick else "") + f" -o {shlex.quote(out)}")
    report = run_device_bench(device=device, models=chosen, quick=quick, precision=precision,
                              threads=threads,
                              log=lambda m: err_console().print(m, highlight=False))
    write_device_report(report, path, command)
    if json_out:
        print_json(report)
        return
    for r in report["models"]:
        stdout.print(f"{r['model']}: train {r['train_per_s']:,.0f} {r['unit']}/s, eval "
                     f"{r['eval_per_s']:,.0f} {r['unit']}/s")
    p = report["projection"]
    if p:
        stdout.print(f"paper-scale sweep ({p['trials']:,} trials of {p['model']}): "
                     f"{p['device_hours']:,} device-hours on {report['device_name']}")
    stdout.print(f"report: {path}")


@bench_app.command("forgetting-quality")
def forgetting_quality_cmd(
    workload: str | None = typer.Option(None, "--workload", "-w", help="workload name or YAML "
                                        "path (default: the scale's; small: digits-class)"),
    k: int | None = typer.Option(None, "--k", min=4, max=98_999, help="models per population: "
                                 "K originals, K oracles, K unlearned per method (default: the "
                                 "scale's; small 32, paper 512)"),
    methods: str = typer.Option("finetune,scrub,ssd,retrain", "--methods", "-m",
                                help="comma-separated methods (default configs unless "
                                     "--set); retrain is the sanity row"),
    scale: str = typer.Option("small", "--scale", help="small (digits-class, K 32: about 3 min "
                              "on 2 CPU cores) or paper (fmnist-random10-conv, the challenge's "
                              "512 models per population: a cluster)"),
    seed: int = typer.Option(0, "--seed", min=0, max=1_000_000, help="base of the model seeds"),
    delta: float = typer.Option(0.01, "--delta", min=0.0, max=0.5, help="δ of the (ε, δ) bound"),
    bucket_width: float = typer.Option(0.5, "--bucket-width", min=0.01, max=100.0,
                                       help="width of the ε buckets"),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (default: "
                                       "$RAY_ADDRESS, else a private local Ray)"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N (on the nodes)"),
    gpus_per_model: float = typer.Option(0.0, "--gpus-per-model", min=0.0, max=8.0,
                                         help="GPUs each model task asks Ray for (with cuda)"),
    overrides: list[str] = typer.Option([], "--set", help="a method's config field, "
                                        "METHOD.FIELD=VALUE, e.g. scrub.lr=1e-4 (repeatable; "
                                        "default: the method's defaults)"),
    out: str = typer.Option("docs/results/forgetting-quality.md", "-o", "--output",
                            help="markdown report; the JSON goes next to it"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report on stdout"),
) -> None:
    """Forgetting quality from many oracles: the NeurIPS 2023 challenge's ε score and a
    U-LiRA-style attack over K originals, K oracles and K unlearned models per method, every
    model one Ray task; results to MLflow and a markdown page. Exit 1 when a model failed."""
    from raysweep.bench.forgetting import EXPERIMENT, SCALES
    from raysweep.bench.tracking import tracking_uri
    from raysweep.errors import ConfigError, did_you_mean
    from raysweep.methods import get_method, make_config
    from raysweep.models import model_kind
    from raysweep.preflight import (
        check_device,
        check_device_format,
        check_env_dirs,
        check_experiment,
        check_num_cpus,
        check_ray_auto,
        check_tracking_store,
    )
    from raysweep.workload import check_workload, load_workload_config, task_of

    if scale not in SCALES:
        raise ConfigError(f"--scale {scale!r}: unknown scale{did_you_mean(scale, SCALES)}; "
                          f"choose one of {', '.join(SCALES)}")
    preset = SCALES[scale]
    wl_ref = workload or preset["workload"]
    k_models = k if k is not None else int(preset["k"])
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not chosen:
        raise ConfigError("--methods: give at least one method, comma-separated (raysweep "
                          "methods list)")
    twice = sorted({m for m in chosen if chosen.count(m) > 1})
    if twice:
        raise ConfigError(f"--methods {methods!r}: {', '.join(twice)} given twice; name each "
                          f"method once")
    cfg = load_workload_config(wl_ref)
    if task_of(cfg) != "classify":
        raise ConfigError(f"--workload {wl_ref}: a language model; forgetting quality from many "
                          f"oracles is defined on classifiers' outputs")
    from raysweep.config import parse_override

    configs: dict[str, dict[str, object]] = {m: {} for m in chosen}
    for item in overrides:
        parts, value, where = parse_override(item)
        if len(parts) != 2:
            raise ConfigError(f"{where}: expected METHOD.FIELD=VALUE, e.g. scrub.lr=1e-4")
        if parts[0] not in configs:
            raise ConfigError(f"{where}: {parts[0]!r} is not in --methods "
                              f"({','.join(chosen)}); add it there or drop this --set")
        configs[parts[0]][parts[1]] = value
    for m in chosen:
        info = get_method(m)          # an unknown name: one line with a did-you-mean
        make_config(m, configs[m], where=f"--set {m}" if configs[m] else f"--methods {m}")
        if model_kind(cfg.model.name) == "text" and not info.supports_text:
            raise ConfigError(f"--methods {m}: works on image models only, and workload "
                              f"{cfg.name!r} is text; drop it from --methods")
    addr = address or os.environ.get("RAY_ADDRESS") or None
    if addr:   # the models train on the cluster's nodes, whose devices are not ours to see
        check_device_format(device, "--device")
    else:
        check_device(device, "--device")
    if device.startswith("cuda") and gpus_per_model <= 0:
        raise ConfigError(f"--device {device}: give --gpus-per-model > 0 (e.g. 0.25) so that Ray "
                          f"places each model task on a GPU")
    if gpus_per_model > 0 and not device.startswith("cuda"):
        raise ConfigError(f"--gpus-per-model {gpus_per_model}: the models train on --device "
                          f"{device}; use --device cuda or --gpus-per-model 0")
    if gpus_per_model > 0 and not addr:   # a local Ray would queue the tasks forever
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus_per_model > have:
            raise ConfigError(f"--gpus-per-model {gpus_per_model:g}: this machine has {have} "
                              f"GPU(s); give at most {have}, or run on a cluster with --address")
    path = _markdown_output(out)
    if path.with_suffix(".json").is_dir():
        raise ConfigError(f"--output {out!r}: {path.with_suffix('.json')} (the JSON report) is a "
                          f"directory; choose another path")
    for existing in (path, path.with_suffix(".json")):   # overwritten only after training
        if existing.exists() and not os.access(existing, os.W_OK):
            raise ConfigError(f"--output {out!r}: {existing} exists and is read-only; fix its "
                              f"permissions or choose another path")
    check_num_cpus()
    check_env_dirs(home=False)
    check_ray_auto(addr)
    from raysweep.sweep.runner import check_ray_address

    check_ray_address(addr)   # malformed or unreachable: one line, before anything trains
    uri = tracking_uri()
    check_tracking_store(uri)
    check_experiment(uri, EXPERIMENT, "forgetting-quality experiment")
    check_workload(cfg)   # data, sizes, model and forget set: before Ray or MLflow start
    from raysweep.bench.forgetting import log_to_mlflow, run_forgetting_quality, write_report
    from raysweep.sweep.runner import err_console

    command = (f"raysweep bench forgetting-quality --workload {shlex.quote(wl_ref)} --k "
               f"{k_models} --methods {','.join(chosen)} --seed {seed}"
               + (f" --delta {delta}" if delta != 0.01 else "")
               + (f" --bucket-width {bucket_width}" if bucket_width != 0.5 else "")
               + (f" --device {device}" if device != "cpu" else "")
               + (f" --gpus-per-model {gpus_per_model}" if gpus_per_model else "")
               + "".join(f" --set {shlex.quote(o)}" for o in overrides)
               + f" -o {shlex.quote(out)}")
    report = run_forgetting_quality(cfg, methods=chosen, configs=configs, k=k_models, seed=seed,
                                    device=device,
                                    address=addr, delta=delta, width=bucket_width,
                                    gpus_per_model=gpus_per_model, command=command,
                                    log=lambda m: err_console().print(m, highlight=False))
    try:
        log_to_mlflow(report, path)
    except Exception:
        # The models are trained: keep their results on disk even when MLflow fails now.
        write_report(report, path)
        raise
    if json_out:
        print_json(report.to_json())
    else:
        for row in report.rows:
            if row.get("error"):
                stdout.print(f"{row['row']}: [red]failed[/]: {row['error']}")
                continue
            stdout.print(f"{row['row']}: F {row['forgetting_quality']:.3f} (null "
                         f"{row['permutation_null']:.3f})  score {row['score']:.3f}  U-LiRA AUC "
                         f"{row['lira_auc']:.3f}  adv. {row['lira_advantage']:.3f}")
        stdout.print(f"report: {path}   MLflow run: {report.run_id}")
    if report.failed:
        raise typer.Exit(1)


def _markdown_output(out: str) -> Path:
    """``--output`` of a report page, checked before anything runs: a ``.md`` path whose
    nearest existing ancestor is a writable directory (a late failure would waste the run)."""
    from raysweep.errors import ConfigError

    path = Path(out)
    if path.suffix != ".md":
        raise ConfigError(f"--output {out!r}: the report is markdown; give a path ending in .md")
    if path.is_dir():
        raise ConfigError(f"--output {out!r} is a directory; give a file path ending in .md")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"--output {out!r}: {parent} is not a writable directory; choose "
                          f"another path")
    return path
