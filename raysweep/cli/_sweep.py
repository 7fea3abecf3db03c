"""``raysweep run | resume | status | validate | leaderboard | show | plot``.

Output rules (STYLE.md part 2): tables and results on stdout, progress and logs on stderr;
``run`` ends with the sweep id alone on stdout (``--json``: one JSON document). Exit codes:
0 ok, 1 the sweep failed (e.g. over ``search.max_failed_trials``), 2 bad usage or config,
130 interrupted (``raysweep resume SWEEP`` continues).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from raysweep.cli import EXIT_INTERRUPTED, EXIT_RUNTIME, app
from raysweep.cli._common import Format, print_json, stdout


def _overrides(overrides: list[str], num_samples: int | None,
               max_concurrent: int | None) -> list[str]:
    out = list(overrides)
    if num_samples is not None:
        out.append(f"search.num_samples={num_samples}")
    if max_concurrent is not None:
        out.append(f"search.max_concurrent={max_concurrent}")
    return out


def _finish(outcome: Any, json_out: bool) -> None:
    """Leaderboard + MLflow hint on stderr, the id (or JSON) on stdout, the exit code."""
    from raysweep._secrets import redact_uri
    from raysweep.report import rich_table
    from raysweep.sweep.leaderboard import leaderboard, leaderboard_columns, legend
    from raysweep.sweep.runner import err_console
    from raysweep.sweep.tracking import fetch_runs, mlflow_ui_hint

    rows: list[dict[str, Any]] = []
    try:
        rows = leaderboard(fetch_runs(outcome.tracking_uri, outcome.experiment,
                                      sweep_id=outcome.sweep_id))
    except Exception as exc:
        err_console().print(f"[yellow]could not build the leaderboard: {escape(str(exc))}[/]")
    if rows:
        _log_leaderboard(outcome, rows)
        sort = rows[0].get("sort", "objective:min")
        err_console().print(rich_table(rows, leaderboard_columns(rows, sort.split(":")[0]),
                                 title=f"sweep {outcome.sweep_id} on {rows[0]['workload']}: best "
                                       f"configuration per method (sorted by {sort})",
                                 caption=escape(legend(rows))))
    err_console().print(f"MLflow: {redact_uri(mlflow_ui_hint(outcome.tracking_uri))}   "
                        f"(experiment {outcome.experiment_id}, "
                        f"parent run {outcome.parent_run_id})")
    err_console().print(f"details: raysweep leaderboard --sweep {outcome.sweep_id}   |   "
                        f"raysweep show RUN_ID   "
                        f"|   raysweep plot {outcome.sweep_id} --kind history -o history.html")
    if outcome.status != "finished":
        color = "yellow" if outcome.status == "interrupted" else "red"
        hint = (f"; continue with: raysweep resume {outcome.sweep_id}"
                if outcome.status == "interrupted" else "")
        err_console().print(f"[{color}]sweep {outcome.sweep_id} {outcome.status}: "
                            f"{escape(outcome.message + hint)}[/]")
    else:
        err_console().print(f"[green]sweep {outcome.sweep_id} finished[/] "
                            f"in {outcome.wall_seconds:.0f}s "
                            f"({outcome.counts.get('finished', 0)} trials, "
                            f"{outcome.counts.get('failed', 0)} failed)")
    if json_out:
        print_json({**outcome.to_json(), "leaderboard": leaderboard_records(rows)})
    else:
        print(outcome.sweep_id, flush=True)
    if outcome.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.status == "failed":
        raise typer.Exit(EXIT_RUNTIME)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While a sweep runs, anything printed to stdout (Ray forwards worker and raylet lines
    there) goes to stderr: stdout carries only the sweep id or the --json document."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@app.command("run")
def run_cmd(
    space: Path = typer.Argument(..., help="sweep YAML (search_spaces/sweeps/*.yaml or "
                                 "search_spaces/<method>.yaml)"),
    address: str | None = typer.Option(None, "--address",
                                       help="Ray cluster address (default: $RAY_ADDRESS, "
                                            "else a local Ray on 127.0.0.1)"),
    num_samples: int | None = typer.Option(None, "--num-samples", min=1,
                                           help="configurations to try "
                                                "(overrides search.num_samples)"),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", min=1,
                                              help="trials at a time "
                                                   "(overrides search.max_concurrent)"),
    overrides: list[str] = typer.Option([], "--set",
                                        help="override a YAML field: key.path=value "
                                             "(repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="validate and show the plan; start nothing"),
    json_out: bool = typer.Option(False, "--json",
                                  help="print one JSON document instead of the id"),
) -> None:
    """Run a sweep: Ray Tune trials, Optuna search, MLflow runs; prints the sweep id."""
    from raysweep.sweep.space import load_sweep

    spec = load_sweep(space, _overrides(overrides, num_samples, max_concurrent))
    if dry_run:
        from raysweep.preflight import static_sweep_checks
        from raysweep.sweep.runner import dry_run_plan

        static_sweep_checks(spec)   # what validate checks too: the workload exists and parses

        plan = dry_run_plan(spec)
        if json_out:
            print_json({"spec": spec.model_dump(mode="json"), "plan": plan})
        else:
            _print_spec(spec)
            stdout.print(f"\n[bold]plan[/]: {plan['trials']} trials = {plan['configurations']} "
                         f"configurations x {len(plan['seeds'])} seed(s); searcher optimises "
                         f"{plan['searcher_metrics']}; max concurrent {plan['max_concurrent']}")
            for ex in plan["example_configs"]:
                stdout.print(f"  e.g. {ex['method']} {ex['params']}")
        return
    from raysweep.sweep.runner import err_console, run_sweep

    if _nothing_to_search(spec):
        err_console().print(escape(_nothing_to_search(spec)))
    with _stdout_to_stderr():
        outcome = run_sweep(spec, address=address)
    _finish(outcome, json_out)


@app.command("resume")
def resume_cmd(
    sweep: str = typer.Argument(...,
                                help="sweep id (or unique prefix, 'latest', or its directory)"),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address"),
    errored: str = typer.Option("skip", "--errored",
                                help="trials that failed: skip (keep them failed), "
                                     "resume (from their checkpoint) or restart"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
    trust: bool = typer.Option(False, "--trust", help="accept the sweep directory as it is "
                               "(unsigned, re-signed elsewhere, or state.json edited) after "
                               "checking who wrote it; prints what changed and signs it"),
    more: str | None = typer.Option(None, "--num-samples", metavar="+N",
                                    help="add N configurations (each run once per seed) on the "
                                         "same Optuna study; works on a finished sweep too"),
) -> None:
    """Continue an interrupted or crashed sweep; finished trials are not run again.
    With --num-samples +N, extend it (finished or not) by N more configurations."""
    from raysweep.errors import ConfigError
    from raysweep.sweep.runner import resume_sweep

    if errored not in ("resume", "restart", "skip"):
        raise ConfigError(f"--errored {errored!r}: choose resume, restart or skip")
    more_samples = parse_more_samples(more) if more is not None else 0
    from raysweep.sweep._trust import check_sweep_dir
    from raysweep.sweep.catalog import find_sweep, store_for

    check_sweep_dir(find_sweep(sweep), trust=trust)  # a redirected store is refused, not noted
    uri, _, sweep_id = store_for(find_sweep(sweep))
    _note_store({"mlflow_tracking_uri": uri, "sweep_id": sweep_id})  # it writes to that store
    with _stdout_to_stderr():
        outcome = resume_sweep(sweep, address=address, errored=errored, trust=trust,
                               more_samples=more_samples)
    _finish(outcome, json_out)


def parse_more_samples(text: str) -> int:
    """``+N`` (N >= 1) as N; anything else is one :class:`ConfigError` line with the fix."""
    from raysweep.errors import ConfigError

    m = re.fullmatch(r"\+([0-9]{1,9})", text.strip())
    if m is None or int(m.group(1)) < 1:
        bare = re.fullmatch(r"[0-9]{1,9}", text.strip())
        fix = (f"write +{text.strip()} to add {text.strip()} configurations (a total is not "
               f"accepted: the sweep's count is in raysweep status)" if bare and int(text) > 0
               else "write +N with N a whole number >= 1, e.g. --num-samples +4")
        raise ConfigError(f"resume --num-samples {text!r}: expected +N, the number of "
                          f"configurations to add; {fix}")
    return int(m.group(1))


def sweep_status(ref: str) -> dict[str, Any]:
    """A sweep's state, trial counts, budget stops, best and stores, read without Ray."""
    from raysweep.sweep._state import SweepState
    from raysweep.sweep.catalog import find_sweep, read_sweep, study_summary

    sweep_dir = find_sweep(ref)
    SweepState.read(sweep_dir)  # a torn or foreign state.json: one line naming it
    st = read_sweep(sweep_dir)
    if st["status"] == "crashed":
        from raysweep.sweep.runner import resume_blocker

        # Never suggest a resume that resume would refuse (e.g. killed before Tune started).
        blocker = resume_blocker(sweep_dir)
        st["message"] = (f"the driver is gone (it was killed or crashed): {blocker}" if blocker
                         else f"the driver is gone (it was killed or crashed): raysweep resume "
                              f"{st['sweep_id']}")
    from raysweep.sweep._storage import spec_storage, storage_label

    st["optuna_storage"] = storage_label(sweep_dir, spec_storage(sweep_dir))
    st.update(study_summary(sweep_dir))
    return st


@app.command("status")
def status_cmd(
    sweep: str = typer.Argument("latest", help="sweep id (or prefix, 'latest', or directory)"),
    json_out: bool = typer.Option(False, "--json",
                                  help="print JSON (with --watch: one line per poll)"),
    fmt: Format = typer.Option(Format.table, "--format", "-f",
                               help="table or json (json = --json)"),
    watch: float | None = typer.Option(None, "--watch", "-w", min=1.0, metavar="SECONDS",
                                       help="print again every SECONDS until the sweep "
                                            "stops running"),
) -> None:
    """Trial counts (running / complete / failed / budget-stopped), the current best, the \
stores."""
    from raysweep.errors import UserError

    if fmt in (Format.csv, Format.md):
        raise UserError(f"status --format {fmt.value}: status is one record; choose table or json")
    json_out = json_out or fmt == Format.json
    first = True
    while True:
        st = sweep_status(sweep)
        if first:
            _note_store(st)
            first = False
        if json_out:
            if watch is None:
                print_json(st)
            else:
                print(json.dumps(st, default=str), flush=True)
        else:
            if watch is not None:
                stdout.print(f"[dim]{time.strftime('%H:%M:%S')}[/]")
            _print_status(st)
        if watch is None or st["status"] not in ("preparing", "running"):
            return
        time.sleep(watch)


def _note_store(st: dict[str, Any]) -> None:
    from raysweep._console import console
    from raysweep.sweep.catalog import store_note

    note = store_note(st.get("mlflow_tracking_uri"), st["sweep_id"])
    if note:
        console.print(escape(note), soft_wrap=True)


def _print_status(st: dict[str, Any]) -> None:
    t = st["trials"]
    e = escape
    stdout.print(f"[bold]sweep {e(st['sweep_id'])}[/] ({e(str(st['name']))})  status: "
                 f"[bold]{e(st['status'])}[/]")
    stdout.print(e(f"  {', '.join(st['methods'])} on {st['workload']}"))
    stopped = (f", {t['budget_stopped']} of them stopped by the budget"
               if t.get("budget_stopped") else "")
    running = f", {t['running']} running" if t.get("running") else ""
    stdout.print(f"  trials: {t['completed']} complete{stopped}, {t['failed']} failed{running}, "
                 f"of {t['total']}")
    if "optuna" in st:
        stdout.print(e(f"  optuna: {st['optuna']['configurations']} configurations "
                       f"{st['optuna']['states']}"))
    if st.get("best"):  # None until a trial finished
        b = st["best"]
        if "number" in b:  # Optuna's best trial (parameters known)
            stdout.print(e(f"  best trial: {b['metric']} = {b['value']:.4f}  (optuna trial "
                           f"{b['number']}) {b['params']}"))
        elif isinstance(b, dict) and isinstance(b.get("value"), (int, float)):
            stdout.print(e(f"  best so far: {st.get('objective', 'objective')} = "
                           f"{b['value']:.4f} ({b.get('method')})"))
    for p in st.get("pareto", []):
        stdout.print(e(f"  pareto: trial {p['number']} values {p['values']} {p['params']}"))
    if st.get("message"):
        stdout.print(e(f"  {st['message']}"))
    stdout.print(e(f"  mlflow: {st['mlflow_tracking_uri']} (parent run "
                   f"{st['mlflow_parent_run_id']})"))
    stdout.print(e(f"  state: {st['sweep_dir']}"))


def _nothing_to_search(spec: Any) -> str:
    """The line saying a space has nothing to search ('' when it has)."""
    if spec.searchable():
        return ""
    asked = spec.search.num_samples
    return (f"nothing to search: no parameter takes more than one value, so each method runs "
            f"once per seed ({spec.num_configs()} configuration(s) x {len(spec.seeds)} seed(s))"
            + (f"; search.num_samples={asked} is not used" if asked and asked > 1 else "")
            + "; add parameters: ranges to tune, or more seeds: to replicate")


def _print_spec(spec: Any) -> None:
    from rich.table import Table

    table = Table(header_style="bold", title=f"{spec.name}: {spec.workload}")
    for col in ("method", "parameter", "distribution", "range / values", "when"):
        table.add_column(col)
    for method, params in spec.spaces().items():
        if not params:
            table.add_row(method, "(defaults)", "", "", "")
        for name, p in params.items():
            if p.distribution == "constant":
                rng = repr(p.value)
            elif p.distribution == "categorical":
                rng = ", ".join(map(repr, p.values or []))
            else:
                rng = f"[{p.min:g}, {p.max:g}]" + (f" step {p.step:g}" if p.step else "")
            when = ", ".join(f"{k}={v}" for k, v in p.when.items())
            table.add_row(*(escape(str(c))
                            for c in (method, name, p.distribution or "", rng, when)))
    stdout.print(table)
    note = _nothing_to_search(spec)
    if note:
        stdout.print(escape(note))
    objs = ", ".join(f"{o.goal} {o.metric}"
                     + (f" (target {o.target:g})" if o.target is not None else "")
                     for o in spec.objectives)
    from raysweep.workload import load_workload_config, task_of

    task = task_of(load_workload_config(spec.workload))
    composite = (f"  ({spec.objective.for_task(task).describe()})"
                 if any(o.metric == "composite" for o in spec.objectives) else "")
    stdout.print(escape(f"objectives: {objs}{composite}"))
    s = spec.search
    stdout.print(f"search: {s.algorithm}, {spec.num_configs()} configurations x {len(spec.seeds)} "
                 f"seed(s), max_concurrent {s.max_concurrent or 'auto'}, seed {s.seed}"
                 + (f", ASHA grace {s.early_terminate.grace_period}" if s.early_terminate else ""))
    b = spec.budget
    stdout.print(f"budget: max_epochs {b.max_epochs}, max_cost_ratio {b.max_cost_ratio}, "
                 f"max_time_ratio {b.max_time_ratio}, max_seconds {b.max_seconds}; "
                 f"resources {spec.resources_per_trial.cpu:g} CPU, "
                 f"{spec.resources_per_trial.gpu:g} GPU per trial")


@app.command("validate")
def validate_cmd(
    space: Path = typer.Argument(..., help="sweep or search-space YAML"),
    overrides: list[str] = typer.Option([], "--set", help="override a YAML field: key.path=value"),
    json_out: bool = typer.Option(False, "--json", help="print the resolved spec as JSON"),
) -> None:
    """Check a sweep / search-space YAML and print the resolved space (exit 2 with one line if \
invalid)."""
    from raysweep.preflight import static_sweep_checks
    from raysweep.sweep.space import load_sweep

    spec = load_sweep(space, overrides)
    static_sweep_checks(spec)   # a misspelled workload fails here, as it does in run --dry-run
    if json_out:
        print_json(spec.model_dump(mode="json"))
        return
    _print_spec(spec)
    _signal_note(spec)
    stdout.print(f"[green]{space}: valid[/]")


def _signal_note(spec: Any) -> None:
    """Warn about weighted objective terms without signal, when the workload is cached (no
    training happens in validate)."""
    from raysweep.errors import UserError
    from raysweep.sweep.runner import err_console, warn_no_signal
    from raysweep.workload import load_workload_config, prepare

    if not any(o.metric == "composite" for o in spec.objectives):
        return
    try:
        prepared = prepare(load_workload_config(spec.workload), quiet=True, cached_only=True)
    except UserError:
        return  # the workload itself is checked when the sweep runs
    if prepared is None:
        err_console().print(escape(f"signal check: workload {spec.workload} is not prepared yet; "
                                   f"raysweep workload prepare {spec.workload} shows which "
                                   f"objective terms separate original from oracle"))
        return
    if not warn_no_signal(prepared.signal_check(spec.objective), spec.objective):
        err_console().print("signal check: every weighted objective term separates original "
                            "from oracle (>= 2 sigma)")


def _store(sweep: str | None) -> tuple[str, str, str | None]:
    from raysweep.sweep.catalog import resolve_store

    return resolve_store(sweep)


def _leaderboard_rows(sweep: str | None, **kw: Any) -> tuple[list[dict[str, Any]], str | None]:
    from raysweep.sweep.catalog import leaderboard_rows

    return leaderboard_rows(sweep, **kw)


def _log_leaderboard(outcome: Any, rows: list[dict[str, Any]]) -> None:
    """The final leaderboard on the sweep's parent MLflow run: ``leaderboard.json`` as an MLflow
    table (the UI's artifact view and ``mlflow.load_table`` read it), ``leaderboard.csv`` (raw
    values) and ``leaderboard.md`` (what the terminal showed, with its legend)."""
    from raysweep.report import render
    from raysweep.sweep.leaderboard import leaderboard_columns, legend

    try:
        import pandas as pd

        from raysweep.sweep.tracking import log_leaderboard

        cols = leaderboard_columns(rows, rows[0]["sort"].split(":")[0])
        extra = [k for k in LEADERBOARD_FIELDS if any(k in r for r in rows)]
        raw = json.loads(render(rows, cols, "json", extra=extra))
        table = pd.DataFrame([{k: json.dumps(v) if isinstance(v, (list, dict)) else v
                               for k, v in r.items()} for r in raw])
        log_leaderboard(outcome.tracking_uri, outcome.parent_run_id, table, {
            "leaderboard.csv": render(rows, cols, "csv", extra=extra),
            "leaderboard.md": render(rows, cols, "md") + "\n" + legend(rows, cols)})
    except Exception as exc:
        from raysweep.sweep.runner import err_console

        err_console().print(escape(f"could not store the leaderboard in MLflow: {exc}"))


#: Leaderboard keys printed by --format csv/json besides the columns' metrics.
LEADERBOARD_FIELDS = ("workload", "sweep_id", "kind", "rank", "run_id", "run_ids", "trial_id",
                      "n_seeds", "n_trials", "seeds", "budget_stopped", "params", "objective_def",
                      "selection_split", "sort")


def print_leaderboard(rows: list[dict[str, Any]], fmt: Format, *, title: str = "") -> None:
    """A leaderboard on stdout: a table with its legend, ``md``, or raw ``csv`` / ``json``."""
    from raysweep.report import render, rich_table
    from raysweep.sweep.leaderboard import leaderboard_columns, legend

    sort_metric = rows[0]["sort"].split(":")[0] if rows else "objective"
    cols = leaderboard_columns(rows, sort_metric)
    if fmt == Format.table:
        stdout.print(rich_table(rows, cols, title=title, caption=legend(rows, cols)))
    elif fmt == Format.md:
        print(render(rows, cols, "md") + "\n" + legend(rows, cols))
    elif fmt == Format.json:
        print(json.dumps(leaderboard_records(rows), indent=2, default=str))
    else:
        extra = [k for k in LEADERBOARD_FIELDS if any(k in r for r in rows)]
        print(render(rows, cols, "csv", extra=extra), end="")


def leaderboard_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every field of every row, raw (non-finite numbers as null): the JSON of ``leaderboard
    --format json``, ``run --json`` and ``resume --json``."""
    from raysweep.report import json_safe

    return [json_safe(dict(r)) for r in rows]


@app.command("leaderboard")
def leaderboard_cmd(
    sweep: str | None = typer.Option(None, "--sweep",
                                     help="one sweep (id, prefix or 'latest'); default: all"),
    workload: str | None = typer.Option(None, "--workload", "-w", help="only this workload"),
    method: str | None = typer.Option(None, "--method", "-m", help="only this method"),
    sort: str | None = typer.Option(None, "--sort",
                                    help="metric key or column label[:asc|desc] "
                                         "(default: the sweep's objective)"),
    pareto: str | None = typer.Option(None, "--pareto",
                                      help="M1,M2[,...]: the non-dominated configurations "
                                           "(suffix :max/:min)"),
    top: int | None = typer.Option(None, "--top", min=1,
                                   help="keep the first N rows per workload"),
    all_configs: bool = typer.Option(False, "--all",
                                     help="every configuration, not only the best per method"),
    fmt: Format = typer.Option(Format.table, "--format", "-f",
                               help="table, md, csv or json (csv/json: raw values, full run ids)"),
) -> None:
    """Best configuration per workload x method (mean ± std over seeds), with original and \
retrain rows."""
    rows, sweep_id = _leaderboard_rows(
        sweep, workload=workload, method=method, sort=sort,
        pareto=[p.strip() for p in pareto.split(",") if p.strip()] if pareto else None,
        top=top, all_configs=all_configs)
    workloads = sorted({r["workload"] for r in rows})
    title = "leaderboard" + (f" of sweep {sweep_id}" if sweep_id else "") + (
        f" on {workloads[0]}" if len(workloads) == 1 else "")
    print_leaderboard(rows, fmt, title=title + (f" (sorted by {rows[0]['sort']})" if rows else ""))


def _repro(rec: dict[str, Any]) -> str:
    """The command that reproduces a run, built from tags read back from MLflow: every value
    is shell-quoted (a tag such as ``0; touch X #`` stays one argument when pasted) and
    control characters are escaped."""
    from raysweep._quoting import shell_join

    tags = rec["tags"]
    wl = tags.get("raysweep.workload_ref") or tags.get("raysweep.workload", "WORKLOAD")
    method = tags.get("raysweep.method", "METHOD")
    if tags.get("raysweep.kind") == "reference":
        return shell_join(["raysweep", "workload", "prepare", wl])
    try:
        params = json.loads(tags.get("raysweep.params_json") or "{}")
    except ValueError:
        params = None
    if not isinstance(params, dict):
        from raysweep.errors import UserError

        raise UserError(f"MLflow run {rec['run_id']}: tag raysweep.params_json is not a JSON "
                        f"object; the run's tags were changed outside raysweep (see its params "
                        f"in MLflow instead)")
    argv = ["raysweep", "unlearn", "--workload", wl, "--method", method,
            "--seed", tags.get("raysweep.seed", 0)]
    if tags.get("raysweep.best_epoch"):
        argv += ["--max-epochs", tags["raysweep.best_epoch"]]
    for k, v in params.items():
        val = (json.dumps(v) if isinstance(v, (bool, type(None)))
               else repr(v) if isinstance(v, float) else str(v))
        argv += ["--set", f"{k}={val}"]
    return shell_join(argv)


@app.command("show")
def show_cmd(
    trial: str = typer.Argument(..., help="MLflow run id (or prefix) or Tune trial id"),
    experiment: str = typer.Option("raysweep", "--experiment", help="MLflow experiment"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """A trial's params, best metrics, checkpoint and the exact command that reproduces it."""
    from rich.table import Table

    from raysweep._quoting import printable
    from raysweep._secrets import redact_uri
    from raysweep.sweep.tracking import find_trial_run, list_artifacts, tracking_uri

    uri = tracking_uri()
    rec = find_trial_run(uri, experiment, trial)
    # Tags come from a store others may write: no control characters or markup reach the
    # terminal (the reproduce line quotes the raw values itself).
    tags = {k: printable(v) for k, v in rec["tags"].items()}
    best = {k[len("best/"):]: v for k, v in rec["metrics"].items() if k.startswith("best/")}
    artifacts = (list_artifacts(uri, rec["run_id"], "checkpoint")
                 if tags.get("raysweep.checkpoint") else [])
    doc = {"run_id": rec["run_id"], "status": rec["status"], "experiment_id": rec["experiment_id"],
           "sweep_id": tags.get("raysweep.sweep_id"), "trial_id": tags.get("raysweep.trial_id"),
           "method": tags.get("raysweep.method"), "workload": tags.get("raysweep.workload"),
           "seed": tags.get("raysweep.seed"), "best_epoch": tags.get("raysweep.best_epoch"),
           "git_sha": tags.get("raysweep.git_sha"), "error": tags.get("raysweep.error"),
           "params": rec["params"], "best_metrics": best, "checkpoint": artifacts,
           "mlflow_tracking_uri": redact_uri(uri), "reproduce": _repro(rec)}
    if json_out:
        print_json(doc)
        return
    stdout.print(f"[bold]{escape(str(doc['method']))}[/] " + escape(
        f"run {doc['run_id']} ({doc['status']}) of sweep {doc['sweep_id']}, trial "
        f"{doc['trial_id']}, seed {doc['seed']}, workload {doc['workload']}"))
    if doc["error"]:
        stdout.print(f"[red]error: {escape(doc['error'])}[/]")
    table = Table(header_style="bold", title="params")
    table.add_column("param")
    table.add_column("value")
    for k, v in sorted(rec["params"].items()):
        table.add_row(escape(printable(k)), escape(printable(v)))
    stdout.print(table)
    mt = Table(header_style="bold", title=f"metrics at the best epoch ({doc['best_epoch']})")
    mt.add_column("metric")
    mt.add_column("value", justify="right")
    for k, v in sorted(best.items()):
        mt.add_row(k, f"{v:.4f}")
    stdout.print(mt)
    if artifacts:
        stdout.print(f"checkpoint: {', '.join(artifacts)} "
                     f"(mlflow artifacts of run {doc['run_id']})")
    stdout.print(f"reproduce:\n  {escape(doc['reproduce'])}")


@app.command("plot")
def plot_cmd(
    sweep: str = typer.Argument(..., help="sweep id (or prefix, 'latest', or directory)"),
    kind: str = typer.Option("history", "--kind", "-k",
                             help="history, pareto, importance or parallel"),
    out: Path = typer.Option(..., "-o", "--output",
                             help="output file: .html (interactive) or .png/.svg/.pdf"),
    method: str | None = typer.Option(None, "--method", "-m", help="one method's configurations "
                                      "(needed by importance and parallel when the sweep has "
                                      "several)"),
) -> None:
    """Plots of the sweep's stored Optuna study: history (per-method colours), importance and
    parallel (per method), pareto."""
    from raysweep.api import load_sweep
    from raysweep.sweep.plots import plot_study

    s = load_sweep(sweep)
    path = plot_study(s.study(), s.spec, kind, out, method=method)
    print(path)
