"""Result tables: one declaration per metric, rendered for terminals (rich), files and scripts.

Every column's label, unit and meaning come from :data:`METRICS` (read from the metric
registry, :mod:`raysweep.metrics.registry`), so a name means one thing in
every table (``Acc_r`` is always the absolute accuracy on D_r in %, never a share of the
original's), and every table printed for people carries a legend built from the same
declarations. ``csv`` and ``json`` carry raw values (fractions, seconds, full run ids) under the
metric keys, never display strings.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raysweep.metrics.registry import METRICS as DECLARED

if TYPE_CHECKING:  # rich is imported when a table is built, not when the module is
    from rich.table import Table

__all__ = ["Column", "Metric", "METRICS", "PAPER_COLUMNS", "SAPE_COLUMNS", "metric_column",
           "paper_columns", "column_legend", "rich_table", "render", "raw_rows", "json_safe"]


@dataclass(frozen=True)
class Metric:
    """How a metric key is shown: ``label`` (one meaning everywhere), display ``unit`` and
    ``scale`` (raw value x scale), which way is better, and a one-phrase meaning."""

    key: str
    label: str
    meaning: str
    unit: str = ""
    scale: float = 1.0
    fmt: str = "{:.3f}"
    better: str = ""  # "max", "min", "oracle" (the retrain oracle's value is the target) or ""

    @property
    def header(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


def _from_registry() -> dict[str, Metric]:
    """A :class:`Metric` for every declared metric with a column label."""
    return {k: Metric(k, m.label, m.meaning, m.display_unit, m.scale, m.display_fmt,
                      "" if m.direction == "none" else m.direction)
            for k, m in DECLARED.items() if m.label}


#: Row columns that are bookkeeping, not metrics: shown in tables, never declared as metrics.
_BOOKKEEPING = (
    Metric("n_seeds", "Seeds", "distinct seeds averaged (mean ± std)", fmt="{:.0f}"),
    Metric("budget_stopped", "Budget stop", "seeds the time or cost budget stopped",
           fmt="{:.0f}"),
)

#: The single source of column names: every table in raysweep takes its labels from here. The
#: metrics' labels, units and meanings are declared in :mod:`raysweep.metrics.registry`.
METRICS: dict[str, Metric] = {**_from_registry(), **{m.key: m for m in _BOOKKEEPING}}


class Column:
    """One table column: ``header`` over the display of ``row[key]`` (x ``scale``, ± ``:std``)."""

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


def metric_column(key: str, meaning: str | None = None) -> Column:
    """The column of a declared metric; an undeclared key is shown raw under its own name."""
    m = METRICS.get(key)
    if m is None:
        return Column(key, key, "{:.4f}", 1.0, meaning or "")
    return Column(m.header, key, m.fmt, m.scale, meaning or m.meaning)


def paper_columns(class_forgetting: bool) -> list[Column]:
    """Paper 000's table: Acc_t, Acc_r, Acc_f (in %), ZRF, MIA, time (s)."""
    acc_t = "test/acc_retain_classes" if class_forgetting else "test/acc"
    return [metric_column(k) for k in (acc_t, "retain/acc", "forget/acc", "zrf",
                                       "mia/member_rate", "mia/lr_auc", "time/seconds")]


def lm_columns() -> list[Column]:
    """A language-model workload's table: perplexities, verbatim memorisation, next-token
    accuracy on D_f, both membership attacks on test, JS to the oracle, time."""
    return [metric_column(k) for k in ("forget/ppl", "retain/ppl", "test/ppl", "forget/verbatim",
                                       "forget/acc", "mia/auc/test", "mia/mink_auc/test",
                                       "dist/js", "time/seconds")]


def workload_columns(workload: Any) -> list[Column]:
    """The reference table's columns for a prepared workload of either task."""
    if getattr(workload, "task", "classify") == "generate":
        return lm_columns()
    return paper_columns(bool(workload.forget_classes))


PAPER_COLUMNS = paper_columns(True)
SAPE_COLUMNS = [metric_column(k) for k in ("sape/acc_err_oracle", "sape/acc_dis",
                                           "sape/acc_err_original", "js/original",
                                           "mia/catboost")]


def column_legend(columns: Sequence[Column]) -> str:
    """``Header = meaning`` for every column that has one; units are in the headers."""
    seen: dict[str, str] = {}
    for c in columns:
        if c.help and c.header not in seen:
            seen[c.header] = c.help
    return "; ".join(f"{h} = {m}" for h, m in seen.items())


def rich_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str = "",
               first: str = "method", caption: str = "") -> Table:
    """A rich table whose every text is escaped (a value like ``[composite: ...]`` is printed,
    not parsed as a style), with the columns' legend under it (after ``caption``, unless the
    caption already carries it)."""
    from rich.markup import escape
    from rich.table import Table

    meanings = column_legend(columns)
    if meanings and meanings not in caption:
        caption = f"{caption}. {meanings}" if caption else meanings
    table = Table(title=escape(title) if title else None,
                  caption=escape(caption) if caption else None, header_style="bold",
                  caption_justify="left")
    table.add_column(escape(first.capitalize()), style="cyan")
    for col in columns:
        table.add_column(escape(col.header), justify="right")
    for row in rows:
        style = "dim" if row.get(first) in ("original", "retrain") else None
        table.add_row(escape(str(row.get(first, ""))), *(escape(c.cell(row)) for c in columns),
                      style=style)
    return table


def raw_rows(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *,
             first: str = "method", extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows for machine-readable output: each column's raw value (and ``<key>:std`` when any row
    has it) under the metric key, unscaled and unformatted, plus ``extra`` keys."""
    keys = [first, *extra]
    for c in columns:
        for k in (c.key, c.key + ":std"):
            if k not in keys and any(k in r for r in rows):
                keys.append(k)
    return [{k: json_safe(r.get(k)) for k in keys} for r in rows]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float, however nested, as ``None`` (JSON's null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def render(rows: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str, *,
           first: str = "method", extra: Sequence[str] = ()) -> str:
    """``md`` (display strings and a legend), ``csv`` or ``json`` (raw values) for rows; the
    ``table`` format is printed with :func:`rich_table`."""
    if fmt == "json":
        return json.dumps(raw_rows(rows, columns, first=first, extra=extra), indent=2,
                          default=str)
    if fmt == "csv":
        data = raw_rows(rows, columns, first=first, extra=extra)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        keys = list(data[0]) if data else [first, *extra, *(c.key for c in columns)]
        writer.writerow(keys)
        for r in data:
            writer.writerow(["" if r[k] is None else
                             json.dumps(r[k]) if isinstance(r[k], (list, dict)) else r[k]
                             for k in keys])
        return buf.getvalue()
    if fmt == "md":
        headers = [first, *(c.header for c in columns)]
        body = [[str(r.get(first, "")), *(c.cell(r) for c in columns)] for r in rows]
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        legend = column_legend(columns)
        return "\n".join(lines) + "\n" + (f"\n{legend}\n" if legend else "")
    raise ValueError(f"unknown format {fmt!r}: choose table, md, csv or json")
