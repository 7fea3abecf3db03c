"""``raysweep metrics``: what the objective optimises, term by term, and on which split."""

from __future__ import annotations

import typer

from raysweep.cli import app
from raysweep.cli._common import print_json, stdout


@app.command("metrics")
def metrics_cmd(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The objective's terms (each a distance to the retrain oracle), splits and cost units."""
    from rich.markup import escape
    from rich.table import Table

    from raysweep.metrics import REPORT_SPLIT, SELECTION_SPLIT, TERMS, ObjectiveConfig
    from raysweep.methods._cost import BACKWARD_WEIGHT

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
                        f"below the original's (rel/heldout_drop/<split>)",
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
