"""``raysweep bench scale``: trials per hour on 1 node vs 2 nodes with the same total cores.

Both layouts are real ``ray start`` clusters on this machine (:mod:`raysweep.testing_cluster`):
one node with ``cores`` CPUs, and ``cores`` nodes with one CPU each. The same sweep (random
search, fixed seeds, one CPU per trial) runs on each through ``--address``, in alternation
(``1 node, N nodes, 1 node, ...``) so that drift in the machine's load hits both alike.
Reported per layout: ``Tuner.fit`` wall time, trials per hour, the trials' own compute and
the overhead share (as in ``bench overhead``), and the ratio N-node / 1-node trials per hour.
On one host the ratio measures what spreading a sweep over nodes costs (object transfers of
the workload, remote scheduling, node-to-node checkpoint syncing), not extra hardware.

The per-trial costs it records (compute seconds, method seconds) are what
``docs/results/scale.md`` projects a GPU cluster run from.
"""

from __future__ import annotations

import json
import os
import statistics
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raysweep.bench.overhead import bench_spec, config_fields
from raysweep.sweep.space import default_space
from raysweep.testing_cluster import local_cluster

__all__ = ["measure_scale"]


@contextmanager
def _cluster_env(env: dict[str, str]) -> Any:
    keys = set(env) | {k for k in os.environ if k.startswith("RAY_")}
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        if k in env:
            os.environ[k] = env[k]
        else:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _one(spec: Any, n_nodes: int, cores: int) -> dict[str, Any]:
    from raysweep.sweep.runner import run_sweep

    per_node = cores // n_nodes
    with local_cluster(n_nodes=n_nodes, cpus_per_node=per_node, auth_mode="token") as cluster, \
            _cluster_env(cluster.env()):
        out = run_sweep(spec, address=cluster.gcs_address)
    compute = sum(out.trial_seconds)
    finished = int(out.counts.get("finished", 0))
    conc = int(json.loads((out.sweep_dir / "state.json").read_text()).get("max_concurrent", cores))
    return {
        "nodes": n_nodes, "cpus_per_node": per_node, "sweep_id": out.sweep_id,
        "finished": finished, "failed": int(out.counts.get("failed", 0)),
        "max_concurrent": conc,
        "fit_seconds": round(out.fit_seconds, 2),
        "trials_per_hour": (round(finished / out.fit_seconds * 3600, 1)
                            if out.fit_seconds else None),
        "sum_trial_compute_seconds": round(compute, 2),
        "mean_trial_seconds": round(compute / max(1, len(out.trial_seconds)), 3),
        "mean_method_seconds": round(sum(out.method_seconds) / max(1, len(out.method_seconds)), 3),
        "overhead_fit": round(out.fit_seconds * conc / compute - 1, 4) if compute else None,
    }


def measure_scale(workload: str = "fmnist-class-small", method: str = "finetune",
                  trials: int = 8, epochs: int = 2, cores: int = 2, repeats: int = 1,
                  out: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Run the same sweep on 1 node x ``cores`` CPUs and ``cores`` nodes x 1 CPU, alternating."""
    if cores < 2:
        raise ValueError("cores must be >= 2 (1 node x cores vs cores nodes x 1)")
    params = {k: v.model_dump(mode="json")
              for k, v in (default_space(method) or {}).items()
              if k != "epochs"}
    if "epochs" in config_fields(method):
        params["epochs"] = {"value": epochs}
    spec = bench_spec({
        "name": f"bench-scale-{method}", "workload": workload, "method": method,
        "parameters": params,
        "search": {"algorithm": "random", "num_samples": trials, "start_from_defaults": False,
                   "max_concurrent": cores},
        "budget": {"max_epochs": epochs}, "resources_per_trial": {"cpu": 1},
        "tracking": {"experiment": "raysweep-bench", "checkpoints": "none"},
    })
    runs: dict[int, list[dict[str, Any]]] = {1: [], cores: []}
    for r in range(repeats):
        for n in (1, cores):
            log(f"scale benchmark: repeat {r + 1}/{repeats}, {n} node(s) x {cores // n} CPU(s), "
                f"{trials} trials of {method} on {workload}")
            res = _one(spec, n, cores)
            log(f"  {res['finished']} trials in {res['fit_seconds']:.1f} s: "
                f"{res['trials_per_hour']} trials/hour")
            runs[n].append(res)

    def med(n: int, key: str) -> float:
        vals = [x[key] for x in runs[n] if x.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")

    one, many = med(1, "trials_per_hour"), med(cores, "trials_per_hour")
    report = {
        "benchmark": "scale", "workload": workload, "method": method, "trials": trials,
        "epochs": epochs, "cores": cores, "repeats": repeats,
        "runs": {"1_node": runs[1], f"{cores}_nodes": runs[cores]},
        "trials_per_hour_1_node": one, f"trials_per_hour_{cores}_nodes": many,
        "ratio_multi_over_single": round(many / one, 3) if one else None,
        "mean_trial_seconds": med(1, "mean_trial_seconds"),
        "mean_method_seconds": med(1, "mean_method_seconds"),
        "summary": [
            f"trials/hour: 1 node x {cores} CPUs {one:.0f}, {cores} nodes x 1 CPU {many:.0f} "
            f"(ratio {many / one:.2f}; median of {repeats} alternating run(s))" if one else
            "no trial finished",
        ],
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report
