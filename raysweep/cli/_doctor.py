"""``raysweep doctor``: versions, data, Ray reachability and auth, MLflow, GPU; what to fix."""

from __future__ import annotations

import typer

from raysweep.cli import app
from raysweep.cli._common import print_json, stdout

_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}


@app.command("doctor")
def doctor_cmd(
    address: str | None = typer.Option(None, "--address", help="Ray address to check "
                                                               "(default: $RAY_ADDRESS)"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri",
                                            help="MLflow URI to check (default: "
                                                 "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db)"),
    data: bool = typer.Option(True, "--data/--no-data", help="check the data packages"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Check the environment; print OK/WARN/FAIL per check with the fix. Exit 1 on any FAIL."""
    from rich.table import Table

    from raysweep._secrets import redact_uri
    from raysweep.doctor import FAIL, run_checks, summary

    checks = run_checks(address, tracking_uri, data=data)
    counts = summary(checks)
    if json_out:
        print_json({"checks": [{k: redact_uri(v) if isinstance(v, str) else v
                                for k, v in c.to_dict().items()} for c in checks],
                    "summary": counts})
    else:
        table = Table(header_style="bold", title="raysweep doctor")
        for col in ("", "group", "check", "found", "fix"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(f"[{_STYLE[c.status]}]{c.status}[/]", c.group, c.name,
                          redact_uri(c.detail), redact_uri(c.fix))  # no passwords on screen
        stdout.print(table)
        stdout.print(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    if any(c.status == FAIL for c in checks):
        raise typer.Exit(1)
