"""``raysweep methods list|show|table``."""

from __future__ import annotations

import fnmatch

import typer

from raysweep.cli import app
from raysweep.cli._common import print_json, stdout

methods_app = typer.Typer(help="Browse the registered unlearning methods.", no_args_is_help=True)
app.add_typer(methods_app, name="methods")


@methods_app.command("list")
def list_cmd(pattern: str = typer.Argument("*", help="glob filter, e.g. 'u*'"),
             json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """One line per method: name, kind, the models it runs on, summary."""
    from rich.table import Table

    from raysweep.methods import get_method, list_methods
    from raysweep.methods._docs import models_cell

    infos = [get_method(n) for n in list_methods() if fnmatch.fnmatch(n, pattern)]
    if json_out:
        print_json([{"name": i.name, "summary": i.summary, "paper": i.paper,
                     "one_shot": i.one_shot, "supports_text": i.supports_text,
                     "tasks": list(i.tasks)} for i in infos])
        return
    table = Table(header_style="bold")
    for col in ("method", "shape", "models", "summary"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.name, "one-shot" if i.one_shot else "epochs", models_cell(i),
                      i.summary)
    stdout.print(table)


@methods_app.command("show")
def show_cmd(name: str = typer.Argument(..., help="method name"),
             json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Config fields with defaults, bounds and descriptions, and the source paper."""
    from rich.table import Table

    from raysweep.methods import get_method

    info = get_method(name)
    fields = info.describe_fields()
    if json_out:
        print_json({"name": info.name, "summary": info.summary, "paper": info.paper,
                    "reference": info.reference, "differences": list(info.differences),
                    "one_shot": info.one_shot, "supports_text": info.supports_text,
                    "tasks": list(info.tasks), "module": info.module, "fields": fields})
        return
    stdout.print(f"[bold]{info.name}[/]: {info.summary}", markup=True)
    stdout.print(f"paper: {info.paper}", markup=False)
    stdout.print(f"checked against: {info.reference or '(no reference recorded)'}", markup=False)
    if info.differences:
        stdout.print("intended differences:")
        for d in info.differences:
            stdout.print(f"  - {d}", markup=False)
    else:
        stdout.print("intended differences: none")
    from raysweep.methods._docs import models_cell

    stdout.print(f"module: {info.module}   one-shot: {info.one_shot}   "
                 f"models: {models_cell(info)}")
    table = Table(header_style="bold")
    for col in ("field", "type", "default", "bounds", "description"):
        table.add_column(col)
    for f in fields:
        bounds = " ".join(f"{k} {v}" for k, v in f["bounds"].items())
        table.add_row(f["name"], f["type"], repr(f["default"]), bounds, f["description"])
    stdout.print(table)


@methods_app.command("table")
def table_cmd(markdown: bool = typer.Option(True, "--markdown/--no-markdown",
                                            help="print the README's markdown table"),
              write: str = typer.Option(
                  "", "--write", metavar="README",
                  help="replace the method table in this file instead")) -> None:
    """The README's method table, generated from the registry.

    Regenerate README.md's table: ``raysweep methods table --markdown --write README.md``.
    """
    from raysweep.methods._docs import readme_table, replace_readme_table

    table = readme_table()
    if write:
        changed = replace_readme_table(write, table)
        stdout.print(f"{write}: method table {'updated' if changed else 'already up to date'}",
                     markup=False)
        return
    print(table, end="")
