"""``raysweep datasets`` and ``raysweep models``: what can go into a workload."""

from __future__ import annotations

import typer

from raysweep.cli import app
from raysweep.cli._common import print_json, stdout


@app.command("datasets")
def datasets_cmd(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List datasets: embedded ones load offline, the others from dataset.root."""
    from rich.table import Table

    from raysweep.data import get_dataset_info, list_datasets

    infos = [get_dataset_info(n) for n in list_datasets()]
    if json_out:
        print_json([{"name": i.name, "kind": i.kind, "embedded": i.embedded,
                     "description": i.description} for i in infos])
        return
    table = Table(header_style="bold")
    for col in ("name", "kind", "source", "description"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.name, i.kind, "embedded" if i.embedded else "dataset.root", i.description)
    stdout.print(table)


@app.command("models")
def models_cmd(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List model architectures (``hf:DIR`` wraps any local Hugging Face encoder)."""
    from rich.table import Table

    from raysweep.models import list_models

    models = list_models()
    if json_out:
        print_json([{"name": k, "kind": v[0], "description": v[1]} for k, v in models.items()])
        return
    table = Table(header_style="bold")
    for col in ("name", "kind", "description"):
        table.add_column(col)
    for name, (kind, desc) in models.items():
        table.add_row(name, kind, desc)
    stdout.print(table)
