"""Paper-style result tables (rich for terminals, Markdown/CSV/JSON for files and scripts)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table

__all__ = ["Column", "PAPER_COLUMNS", "SAPE_COLUMNS", "paper_columns", "rich_table", "render"]


class Column:
    def __init__(self, header: str, key: str, fmt: str = "{:.2f}", scale: float = 1.0,
                 help: str = "") -> None:
        self.header, self.key, self.fmt, self.scale, self.help = header, key, fmt, scale, help

    def cell(self, row: dict[str, Any]) -> str:
        value = row.get(self.key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, str):
            return value
        std = row.get(self.key + ":std")
        text = self.fmt.format(value * self.scale)
        if std is not None and not (isinstance(std, float) and math.isnan(std)):
            text += " ± " + self.fmt.format(std * self.scale)
        return text


def paper_columns(class_forgetting: bool) -> list[Column]:
    """Paper 000's table: Acc_t, Acc_r, Acc_f (in %), ZRF, MIA, time (s)."""
    acc_t = "test/acc_retain_classes" if class_forgetting else "test/acc"
    return [
        Column("Acc_t", acc_t, "{:.2f}", 100, "test accuracy" + (" on retained classes" if class_forgetting else "")),
        Column("Acc_r", "retain/acc", "{:.2f}", 100, "accuracy on D_r"),
        Column("Acc_f", "forget/acc", "{:.2f}", 100, "accuracy on D_f"),
        Column("ZRF", "zrf", "{:.3f}"),
        Column("MIA", "mia/member_rate", "{:.3f}", 1, "share of D_f judged members (paper 000)"),
        Column("MIA-AUC", "mia/lr_auc", "{:.3f}"),
        Column("Time (s)", "time/seconds", "{:.1f}"),
    ]


PAPER_COLUMNS = paper_columns(True)
SAPE_COLUMNS = [
    Column("AccErr (oracle)", "sape/acc_err_oracle", "{:.4f}"),
    Column("AccDis", "sape/acc_dis", "{:.4f}"),
    Column("AccErr (orig)", "sape/acc_err_original", "{:.4f}"),
    Column("JS", "js/original", "{:.4f}"),
    Column("MIA-CatBoost", "mia/catboost", "{:.3f}"),
]


def rich_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str = "",
               first: str = "method", caption: str = "") -> Table:
    table = Table(title=title or None, caption=caption or None, header_style="bold")
    table.add_column(first.capitalize(), style="cyan")
    for col in columns:
        table.add_column(col.header, justify="right")
    for row in rows:
        style = "dim" if row.get(first) in ("original", "retrain") else None
        table.add_row(str(row.get(first, "")), *(c.cell(row) for c in columns), style=style)
    return table


def render(rows: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str, *,
           first: str = "method") -> str:
    """``md``, ``csv`` or ``json`` text for rows (``table`` is printed with :func:`rich_table`)."""
    if fmt == "json":
        return json.dumps(list(rows), indent=2, default=float)
    headers = [first, *(c.header for c in columns)]
    body = [[str(r.get(first, "")), *(c.cell(r) for c in columns)] for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(headers)
        writer.writerows(body)
        return buf.getvalue()
    if fmt == "md":
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
