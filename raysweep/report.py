"""Result tables: one declaration per metric, rendered for terminals (rich), files and scripts.

Every column's label, unit and meaning come from :data:`METRICS`, so a name means one thing in
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

if TYPE_CHECKING:  # rich is imported when a table is built, not when the module is
    from rich.table import Table

__all__ = ["Column", "Metric", "METRICS", "PAPER_COLUMNS", "SAPE_COLUMNS", "metric_column",
           "paper_columns", "column_legend", "rich_table", "render", "raw_rows"]


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


def _m(key: str, label: str, meaning: str, **kw: Any) -> tuple[str, Metric]:
    return key, Metric(key, label, meaning, **kw)


_PCT = {"unit": "%", "scale": 100.0, "fmt": "{:.2f}"}

#: The single source of column names: every table in raysweep takes its labels from here.
METRICS: dict[str, Metric] = dict([
    _m("objective", "Obj (val)", "oracle-referenced objective on the val split, which selects "
       "and ranks configurations; the oracle scores 0", fmt="{:.4f}", better="min"),
    _m("objective/test", "Obj (test)", "the same objective measured on test", fmt="{:.4f}",
       better="min"),
    _m("test/acc", "Acc_t", "test accuracy", better="max", **_PCT),
    _m("test/acc_retain_classes", "Acc_t", "test accuracy on the retained classes",
       better="max", **_PCT),
    _m("retain/acc", "Acc_r", "accuracy on the retain set D_r", better="max", **_PCT),
    _m("forget/acc", "Acc_f", "accuracy on the forget set D_f", better="oracle", **_PCT),
    _m("rel/retain_acc", "RelAcc_r", "accuracy on D_r as a share of the original model's",
       better="max", **_PCT),
    _m("rel/forget_acc", "RelAcc_f", "accuracy on D_f as a share of the original model's",
       better="oracle", **_PCT),
    _m("zrf", "ZRF", "zero-retrain forgetting score (1 = outputs unlike a random model's)",
       better="max"),
    _m("mia/member_rate", "MIA rate", "share of D_f a loss attack judges members",
       better="oracle"),
    _m("mia/lr_auc", "MIA-AUC", "loss-attack AUC, D_f vs test", better="oracle"),
    _m("mia/auc/test", "AUC (test)", "loss-attack AUC on D_f vs matched held-out test samples",
       better="oracle"),
    _m("mia/catboost", "MIA-CatBoost", "CatBoost attack on logits (TN / |D_f|)", better="max"),
    _m("dist/js", "JS→RT", "JS divergence to the oracle's outputs on D_f", better="min"),
    _m("probe/test", "Probe (test)", "linear probe on the features recovering the forgotten "
       "data, on test", better="oracle"),
    _m("cost/ratio", "Cost/RT", "sample-passes as a share of retraining's", better="min"),
    _m("time/seconds", "Time", "method wall time", unit="s", fmt="{:.1f}", better="min"),
    _m("epochs", "Epochs", "epochs at the best epoch", fmt="{:.0f}"),
    _m("n_seeds", "Seeds", "distinct seeds averaged (mean ± std)", fmt="{:.0f}"),
    _m("budget_stopped", "Budget stop", "seeds the time or cost budget stopped", fmt="{:.0f}"),
    _m("sape/acc_err_oracle", "AccErr (oracle)", "SAPE of accuracies vs the oracle",
       fmt="{:.4f}", better="min"),
    _m("sape/acc_dis", "AccDis", "SAPE between D_r and D_f accuracy", fmt="{:.4f}"),
    _m("sape/acc_err_original", "AccErr (orig)", "SAPE of accuracies vs the original",
       fmt="{:.4f}"),
    _m("js/original", "JS→orig", "JS divergence to the original's outputs on D_f",
       fmt="{:.4f}"),
])


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
    return [{k: _plain(r.get(k)) for k in keys} for r in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
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
