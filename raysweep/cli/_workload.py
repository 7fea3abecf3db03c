"""``raysweep workload prepare|list`` and ``raysweep unlearn``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from raysweep.cli import app
from raysweep.cli._common import print_json, stdout

workload_app = typer.Typer(help="Prepare workloads: original model + retrain oracle, cached.",
                           no_args_is_help=True)
app.add_typer(workload_app, name="workload")


def _row(name: str, metrics: dict[str, float]) -> dict[str, object]:
    return {"method": name, **metrics}


@workload_app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The bundled workloads (search_spaces/workloads/*.yaml)."""
    from rich.table import Table

    from raysweep.workload import BUNDLED_WORKLOADS, load_workload_config

    cfgs = [load_workload_config(p) for p in sorted(BUNDLED_WORKLOADS.glob("*.yaml"))]
    if json_out:
        print_json([c.model_dump(mode="json") for c in cfgs])
        return
    table = Table(header_style="bold")
    for col in ("name", "dataset", "model", "scenario", "description"):
        table.add_column(col)
    for c in cfgs:
        table.add_row(c.name, c.dataset.name, c.model.name, c.scenario.kind, c.description)
    stdout.print(table)


@workload_app.command("prepare")
def prepare_cmd(
    workload: str = typer.Argument(..., help="workload YAML path or bundled name"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1 or auto"),
    force: bool = typer.Option(False, "--force", help="retrain even if cached"),
    catboost: bool = typer.Option(True, "--catboost/--no-catboost",
                                  help="compute the CatBoost MIA"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Train (or load) the original model and the retrain oracle; print their metrics and the
    signal check: does each objective term separate the original from the oracle?"""
    from raysweep.report import rich_table, workload_columns
    from raysweep.workload import load_workload_config, prepare

    cfg = load_workload_config(workload)
    prepared = prepare(cfg, device=device, force=force)
    assert prepared is not None  # only ``cached_only`` returns None
    refs = prepared.reference_metrics(catboost=catboost)
    rows = [_row(k, v) for k, v in refs.items()]
    signal = prepared.signal_check()
    if json_out:
        print_json({"workload": cfg.name, "key": prepared.key, "rows": rows, "signal": signal,
                    "signal_split": "val"})
        return
    cols = workload_columns(prepared)
    stdout.print(rich_table(rows, cols,
                            title=f"{cfg.name}  (|D_f|={len(prepared.splits['forget'])}, "
                                  f"|D_r|={len(prepared.splits['retain'])})"))
    stdout.print(signal_table(signal))


def signal_table(signal: list[dict[str, object]]):
    """The signal check as a table (one row per objective term, on the val split)."""
    from rich.table import Table

    def num(v: object, fmt: str = ".4f") -> str:
        return "-" if v is None else format(float(v), fmt)  # type: ignore[arg-type]

    table = Table(title="signal check (val split): does each objective term separate the "
                        "original from the oracle?", header_style="bold")
    for col in ("term", "metric", "original", "oracle", "distance", "sigma", "separation",
                "verdict"):
        table.add_column(col)
    for r in signal:
        verdict = "signal" if r["signal"] else "[red]no signal[/]"
        table.add_row(str(r["term"]), str(r["metric"]), num(r["original"]), num(r["oracle"]),
                      num(r["distance"]), num(r["sigma"]), num(r["separation"], ".1f"),
                      verdict if r["weighted"] else f"{verdict} (not weighted)")
    table.caption = ("separation = distance / sigma, sigma from resampling the samples of both "
                     "models; under 2 = no signal (the term would add noise to the objective)")
    return table


@app.command("unlearn")
def unlearn_cmd(
    workload: str | None = typer.Option(None, "--workload", "-w",
                                        help="workload YAML path or bundled name"),
    method: str | None = typer.Option(None, "--method", "-m",
                                      help="a method, a comma-separated list, or 'all' "
                                           "(raysweep methods list)"),
    config: Path | None = typer.Option(None, "--config",
                                       help="a configuration written by raysweep "
                                       "export (workload, method, seed, epochs, parameters; "
                                       "options given here win)"),
    overrides: list[str] = typer.Option(
        [], "--set",
        help="config key=value for one method, METHOD.key=value for several (repeatable)"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1 or auto"),
    seed: int = typer.Option(0, help="seed of the unlearning run"),
    max_epochs: int | None = typer.Option(None, help="epoch budget (stops the method early)"),
    catboost: bool = typer.Option(True, "--catboost/--no-catboost",
                                  help="compute the CatBoost MIA"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
    track: bool = typer.Option(False, "--mlflow", help="log each method's result as an MLflow run "
                               "(MLFLOW_TRACKING_URI; experiment $RAYSWEEP_EXPERIMENT, "
                               "default raysweep)"),
) -> None:
    """Run methods on a prepared workload and print them beside the original and retrain rows."""
    from rich.markup import escape

    from raysweep._console import console, info
    from raysweep.config import apply_overrides
    from raysweep.engine import TrialFailure, run_once
    from raysweep.errors import ConfigError
    from raysweep.methods import MethodDivergedError, get_method, list_methods, make_config
    from raysweep.methods._base import MethodContractError, unsupported_task_message
    from raysweep.report import rich_table, workload_columns
    from raysweep.training import resolve_device
    from raysweep.workload import load_workload_config, prepare, task_of

    if config is not None:  # an exported best configuration; explicit options override it
        from raysweep.cli._explore import load_exported

        exported = load_exported(config)
        workload = workload or exported["workload"]
        method = method or exported["method"]
        if method == exported["method"]:
            overrides = [f"{k}={json.dumps(v)}"
                         for k, v in exported.get("config", {}).items()] + list(overrides)
        seed = seed if seed != 0 else int(exported.get("seed", 0))
        max_epochs = max_epochs if max_epochs is not None else exported.get("max_epochs")
    if not workload or not method:
        raise ConfigError(f"unlearn: {'--workload' if not workload else '--method'} is required "
                          f"(or --config FILE written by raysweep export)")
    names = (list_methods() if method == "all"
             else [m.strip() for m in method.split(",") if m.strip()])
    for name in names:
        get_method(name)  # fail fast on a typo, before any training
    wcfg = load_workload_config(workload)
    task = task_of(wcfg)
    if method == "all":   # every method that runs on this kind of model
        names = [n for n in names if task in get_method(n).tasks]
    for name in names:
        if task not in get_method(name).tasks:
            raise ConfigError(f"--method {name}: {unsupported_task_message(name, task)}")
    if max_epochs is not None and max_epochs < 1:
        raise ConfigError(f"--max-epochs must be >= 1, got {max_epochs}")
    values = apply_overrides({}, overrides)
    configs = {}
    for name in names:
        if len(names) == 1:
            mine = {k: v for k, v in values.items() if k != name} | values.get(name, {})
        else:
            unknown = [k for k in values if k not in names]
            if unknown:
                raise ConfigError(f"--set {unknown[0]}=...: with several methods write "
                                  f"METHOD.key=value (methods: {', '.join(names)})")
            mine = values.get(name, {})
        configs[name] = make_config(name, mine, where="--set").model_dump(mode="json")
    dev = resolve_device(device)
    if track:  # an unreachable store fails before any training
        from raysweep.preflight import check_tracking_store
        from raysweep.sweep.tracking import tracking_uri

        check_tracking_store(tracking_uri())
    prepared = prepare(wcfg, device=str(dev))
    assert prepared is not None  # only ``cached_only`` returns None
    refs = prepared.reference_metrics(catboost=catboost)
    rows: list[dict[str, object]] = [_row("original", refs["original"]),
                                     _row("retrain", refs["retrain"])]
    failures = []
    for name in names:
        if prepared.kind == "text" and not get_method(name).supports_text:
            info(f"[yellow]skipping {name}: it does not support text models[/]")
            continue

        def progress(event, seconds, _name=name):
            stats = "  ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
            info(f"  [{_name}] epoch {event.epoch}  {stats}  {seconds:6.1f}s")

        info(escape(f"running {name} on {wcfg.name} {configs[name]}"))  # values may hold [...]
        try:
            metrics = run_once(prepared, name, configs[name], seed, device=dev, catboost=catboost,
                               max_epochs=max_epochs, progress=progress).metrics
        except (MethodDivergedError, MethodContractError, TrialFailure) as exc:  # fails; go on
            console.print(f"[red]{name} failed: {escape(str(exc))}[/]", soft_wrap=True)  # one line
            failures.append(name)
            rows.append({"method": name, "error": str(exc)})
            continue
        # The reference rows are called original/retrain; a rerun of the retrain method is not one.
        rows.append(_row(f"{name} (rerun)" if name in ("original", "retrain") else name, metrics))
        if track:
            from raysweep.sweep.tracking import log_unlearn_run, tracking_uri

            run_id = log_unlearn_run(tracking_uri(),
                                     os.environ.get("RAYSWEEP_EXPERIMENT", "raysweep"),
                                     workload=wcfg.name, method=name, config=configs[name],
                                     seed=seed, metrics=metrics, max_epochs=max_epochs)
            rows[-1]["run_id"] = run_id
            info(f"  MLflow run {run_id}")
    if json_out:
        print_json({"workload": wcfg.name, "configs": configs, "rows": rows})
    else:
        ratio = " ".join(f"{r['method']}={r['time/ratio']:.3f}"
                         for r in rows[2:] if "time/ratio" in r)
        stdout.print(rich_table(rows, workload_columns(prepared),
                                title=f"{method} on {wcfg.name}",
                                caption=f"time / retrain time: {ratio}"))
    if failures:
        raise typer.Exit(1)
