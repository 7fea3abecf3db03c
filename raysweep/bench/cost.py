"""``raysweep bench cost``: is a method's cost the same number on any machine and any load?

Each method runs as a sweep trial (:func:`raysweep.engine.run_trial`) under several
conditions in one process: intra-op thread counts, and optionally with a busy background thread
competing for the cores. For every run three ratios to retraining are reported:

* ``cost/ratio``: sample-passes / retraining's. Counted, so it must not move at all.
* ``time/ratio``: the trial's wall time / a retrain time measured inside the trial under the
  same conditions (:func:`raysweep.sweep.trainable.retrain_seconds_here`).
* ``prepare-time ratio``: the trial's wall time / the retrain time recorded when the workload
  was prepared (another thread count, another load): what raysweep used to report.

The spread of each ratio across conditions (max / min) is the result.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch

from raysweep.engine import TrialPlan, run_trial
from raysweep.metrics import ObjectiveConfig
from raysweep.sweep.space import ObjectiveSpec

__all__ = ["run_cost_bench", "CONDITIONS"]

#: (label, torch threads, background load) per condition.
CONDITIONS: tuple[tuple[str, int, bool], ...] = (
    ("1 thread", 1, False), ("2 threads", 2, False), ("1 thread + busy core", 1, True))


@contextlib.contextmanager
def _busy(on: bool) -> Iterator[None]:
    """A background thread doing matrix products (it releases the GIL in torch's kernels)."""
    if not on:
        yield
        return
    stop = threading.Event()

    def spin() -> None:
        a = torch.randn(384, 384)
        while not stop.is_set():
            a = torch.tanh(a @ a)

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def run_cost_bench(workload_name: str, methods: list[str], *, seed: int = 0,
                   max_epochs: int = 2) -> dict[str, Any]:
    """Rows (method x condition) with the three ratios, and each ratio's spread per method."""
    from raysweep.workload import load_workload_config, prepare

    w = prepare(load_workload_config(workload_name))
    assert w is not None  # only ``cached_only`` returns None
    plan = TrialPlan(objectives=[ObjectiveSpec()], objective_config=ObjectiveConfig(),
                     reference=w.reference_metrics(catboost=False), max_epochs=max_epochs)
    threads0 = torch.get_num_threads()
    rows = []
    try:
        for method in methods:
            for label, threads, busy in CONDITIONS:
                torch.set_num_threads(threads)
                with _busy(busy):
                    t0 = time.perf_counter()
                    last = run_trial({"method": method, method: {}, "seed": seed}, w, plan,
                                     report=lambda *a: None)
                    wall = time.perf_counter() - t0
                rows.append({
                    "method": method, "condition": label, "epochs": last["epoch"],
                    "cost/passes": last["cost/passes"], "cost/ratio": last["cost/ratio"],
                    "time/seconds": last["rs/method_seconds"], "time/ratio": last["time/ratio"],
                    "prepare_time_ratio": last["rs/method_seconds"] / w.retrain_seconds,
                    "wall_seconds": wall})
    finally:
        torch.set_num_threads(threads0)
    spreads = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        spreads[method] = {k: max(r[k] for r in mine) / max(min(r[k] for r in mine), 1e-12)
                           for k in ("cost/ratio", "time/ratio", "prepare_time_ratio")}
    return {"workload": workload_name, "retrain_seconds_at_prepare": w.retrain_seconds,
            "retrain_passes": w.retrain_cost.passes, "rows": rows, "spread": spreads,
            "conditions": [c[0] for c in CONDITIONS]}
