"""``raysweep workload prepare|list`` and ``raysweep unlearn``."""

from __future__ import annotations

import time

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
    catboost: bool = typer.Option(True, "--catboost/--no-catboost", help="compute the CatBoost MIA"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Train (or load) the original model and the retrain oracle; print their metrics."""
    from raysweep.report import paper_columns, rich_table
    from raysweep.workload import load_workload_config, prepare

    cfg = load_workload_config(workload)
    prepared = prepare(cfg, device=device, force=force)
    refs = prepared.reference_metrics(catboost=catboost)
    rows = [_row(k, v) for k, v in refs.items()]
    if json_out:
        print_json({"workload": cfg.name, "key": prepared.key, "rows": rows})
        return
    cols = paper_columns(bool(prepared.forget_classes))
    stdout.print(rich_table(rows, cols, title=f"{cfg.name}  (|D_f|={len(prepared.splits['forget'])}, "
                                              f"|D_r|={len(prepared.splits['retain'])})"))


@app.command("unlearn")
def unlearn_cmd(
    workload: str = typer.Option(..., "--workload", "-w", help="workload YAML path or bundled name"),
    method: str = typer.Option(..., "--method", "-m", help="registered method (raysweep methods list)"),
    overrides: list[str] = typer.Option([], "--set", help="method config key=value (repeatable)"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1 or auto"),
    seed: int = typer.Option(0, help="seed of the unlearning run"),
    max_epochs: int | None = typer.Option(None, help="epoch budget (stops the method early)"),
    catboost: bool = typer.Option(True, "--catboost/--no-catboost", help="compute the CatBoost MIA"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Run one method on a prepared workload and print it beside the original and retrain rows."""
    import copy

    from raysweep._console import info
    from raysweep.config import apply_overrides
    from raysweep.methods import get_method, make_config, run_method
    from raysweep.metrics import forward_splits
    from raysweep.report import paper_columns, rich_table
    from raysweep.training import resolve_device
    from raysweep.workload import load_workload_config, prepare

    get_method(method)  # fail fast on a typo, before any training
    cfg_values = apply_overrides({}, overrides)
    mcfg = make_config(method, cfg_values, where="--set")
    if max_epochs is not None and max_epochs < 1:
        from raysweep.errors import ConfigError

        raise ConfigError(f"--max-epochs must be >= 1, got {max_epochs}")
    wcfg = load_workload_config(workload)
    dev = resolve_device(device)
    prepared = prepare(wcfg, device=str(dev))
    data = prepared.unlearn_data(batch_size=wcfg.train.batch_size)
    ctx = prepared.context(dev, seed=seed)
    model = copy.deepcopy(ctx.original).to(dev)
    for p in model.parameters():
        p.requires_grad_(True)

    def progress(event, seconds):  # noqa: ANN001, ANN202
        stats = "  ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
        info(f"  [{method}] epoch {event.epoch}  {stats}  {seconds:6.1f}s")

    info(f"running {method} on {wcfg.name} ({mcfg.model_dump()})")
    t0 = time.perf_counter()
    result = run_method(method, model, data, mcfg, ctx, max_epochs=max_epochs, on_epoch=progress)
    seconds = time.perf_counter() - t0
    outputs = forward_splits(model, data, dev, batch_size=wcfg.eval_batch_size)
    metrics = prepared.evaluate(outputs, seconds=seconds, catboost=catboost, seed=seed)
    metrics["epochs"] = float(result.epochs)
    refs = prepared.reference_metrics(catboost=catboost)
    rows = [_row("original", refs["original"]), _row("retrain", refs["retrain"]), _row(method, metrics)]
    if json_out:
        print_json({"workload": wcfg.name, "method": method, "config": mcfg.model_dump(), "rows": rows})
        return
    stdout.print(rich_table(rows, paper_columns(bool(prepared.forget_classes)),
                            title=f"{method} on {wcfg.name}",
                            caption=f"time ratio to retrain: {metrics.get('time/ratio', float('nan')):.3f}"))
