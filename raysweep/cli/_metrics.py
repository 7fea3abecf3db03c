"""``raysweep metrics``: what the objective optimises, term by term, and on which split;
``--all`` (or a KEY) lists the metric registry (:mod:`raysweep.metrics.registry`)."""

from __future__ import annotations

import typer

from raysweep.cli import app
from raysweep.cli._common import print_json, stdout


@app.command("metrics")
def metrics_cmd(
    key: str = typer.Argument(None, metavar="[KEY]",
                              help="one metric key (e.g. dist/mia_auc/val): its declaration; "
                                   "'list': every key, like --all"),
    all_: bool = typer.Option(False, "--all", help="every declared metric key, not only the "
                              "objective's terms"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The objective's terms (each a distance to the retrain oracle), splits and cost units;
    with --all or a KEY, the declared metrics (meaning, direction, unit, role)."""
    from rich.markup import escape
    from rich.table import Table

    if key is not None or all_:
        # ``raysweep metrics list`` reads like ``raysweep methods list``: the same as --all.
        _registry(None if key == "list" else key, json_out)
        return

    from raysweep.methods._cost import BACKWARD_WEIGHT
    from raysweep.metrics import REPORT_SPLIT, SELECTION_SPLIT, TERMS, ObjectiveConfig

    default = ObjectiveConfig()
    weights = default.weights()
    terms = [{"term": t.name, "weight": f"w_{t.name}", "default": weights[t.name],
              "raw": t.raw_key(SELECTION_SPLIT), "distance": t.dist_key(SELECTION_SPLIT),
              "reported": t.dist_key(REPORT_SPLIT), "meaning": t.meaning} for t in TERMS]
    notes = {
        "objective": default.describe(),
        "oracle": "every quality term is |model - retrain oracle|, measured the same way on "
                  "both; the oracle scores 0",
        "selection_split": SELECTION_SPLIT, "report_split": REPORT_SPLIT,
        "cost": f"cost/passes = forward + {BACKWARD_WEIGHT} x backward examples; cost/ratio = "
                f"cost/passes / retraining's (w_cost, default 0; budget.max_cost_ratio)",
        "retain_floor": f"penalty when held-out accuracy drops more than {default.retain_floor} "
                        f"below the lower of the original's and the oracle's "
                        f"(rel/heldout_drop/<split>)",
        "signal": "raysweep workload prepare NAME shows which terms separate original from "
                  "oracle on a workload (>= 2 sigma)",
    }
    if json_out:
        print_json({"terms": terms, **notes})
        return
    table = Table(title="objective terms (lower is better; the oracle scores 0)",
                  header_style="bold")
    for col in ("term", "weight", "default", "selects on", "reported as", "meaning"):
        table.add_column(col)
    for t in terms:
        table.add_row(t["term"], t["weight"], f"{t['default']:g}", t["distance"], t["reported"],
                      escape(str(t["meaning"])))
    stdout.print(table)
    for k, v in notes.items():
        stdout.print(escape(f"{k}: {v}"))


def _registry(key: str | None, json_out: bool) -> None:
    """The declared metrics (all, or one key; an unknown key is a usage error)."""
    from rich.markup import escape
    from rich.table import Table

    from raysweep.errors import UserError
    from raysweep.metrics.registry import METRICS, UnknownMetricError, metric_info

    if key is not None:
        try:
            infos = [metric_info(key)]
        except UnknownMetricError as exc:
            raise UserError(f"raysweep metrics KEY: {exc}") from None
    else:
        infos = list(METRICS.values())
    if json_out:
        print_json({"metrics": [m.as_dict() for m in infos]})
        return
    better = {"max": "higher", "min": "lower", "oracle": "oracle's", "none": "-"}
    table = Table(title="declared metrics (raysweep/metrics/registry.py)", header_style="bold",
                  caption="better: which way is better (oracle's = the retrain oracle's value "
                          "is the target); role: selection may read it, report reads test; "
                          "epoch: recorded every epoch of a trial", caption_justify="left")
    for col in ("key", "label", "better", "unit", "role", "epoch", "distance", "computed by",
                "meaning"):
        table.add_column(col)
    for m in infos:
        unit = m.unit + (f" ({m.display_unit})" if m.display_unit else "")
        table.add_row(m.key, escape(m.label or "-"), better[m.direction], unit, m.role,
                      "yes" if m.per_epoch else "", m.distance or "",
                      m.computed_by.removeprefix("raysweep."),
                      escape(m.meaning + (f" [{', '.join(m.scenarios)} forgetting only]"
                                          if m.scenarios else "")))
    stdout.print(table)
