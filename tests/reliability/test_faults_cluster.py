"""A worker node SIGKILLed mid-sweep on a real 2-node local Ray cluster.

Head and worker have one CPU each and the sweep runs two trials at a time, so once two trials
run, one of them is on the worker. Killing that node (raylet, agents and workers, as a crashed
machine) must cost nothing but time: Tune restarts the lost trial (``search.trial_retries``)
from its last checkpoint on the surviving node, the sweep finishes with every trial finished,
and MLflow holds exactly one run per trial with each epoch logged once. The runs' node tags
show that the sweep, started through ``--address``, ran trials on both nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rs_counts import COUNTS

pytestmark = pytest.mark.cluster

N_TRIALS = 4
EPOCHS = 4
SWEEP = f"""\
schema_version: 1
name: node-kill
workload: digits-class
methods:
  faulty:
    parameters:
      mode: {{value: sleep}}
      seconds: {{values: [2.0, 2.1, 2.2, 2.3]}}
      epochs: {{value: {EPOCHS}}}
search: {{algorithm: grid, max_concurrent: 2, seed: 0, trial_retries: 2}}
budget: {{max_epochs: {EPOCHS}}}
seeds: [0]
resources_per_trial: {{cpu: 1}}
tracking: {{checkpoints: none}}
"""


def _running(home: Path) -> int:
    for p in home.glob("sweeps/*/progress.json"):
        try:
            return int(json.loads(p.read_text()).get("running") or 0)
        except (OSError, ValueError):
            pass
    return 0


def _reported(home: Path) -> int:
    """Trials with at least one reported result (Tune's per-trial ``result.json``)."""
    return sum(1 for p in home.glob("sweeps/*/ray/tune/*/result.json")
               if p.is_file() and p.stat().st_size > 0)


def _num_failures(sweep_dir: Path) -> int:
    """Restarts Tune recorded, from its newest experiment snapshot."""
    states = sorted((sweep_dir / "ray" / "tune").glob("experiment_state-*.json"))
    text = states[-1].read_text() if states else ""
    total = 0
    for key in ('"num_failures": ', '\\"num_failures\\": '):
        for chunk in text.split(key)[1:]:
            digits = "".join(ch for ch in chunk[:6] if ch.isdigit())
            total += int(digits or 0)
    return total


@pytest.mark.timeout(600)
def test_worker_node_killed_mid_sweep(private_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from raysweep.testing_cluster import local_cluster

    root = private_env
    # The plugin must import on every node: `ray start` passes its environment to the workers.
    monkeypatch.delenv("RAYSWEEP_NUM_CPUS", raising=False)
    path = root / "node-kill.yaml"
    path.write_text(SWEEP)
    with local_cluster(n_nodes=2, cpus_per_node=1, auth_mode="token") as cluster:
        env = cluster.env()
        cmd = [sys.executable, "-m", "raysweep", "run", str(path), "--address",
               cluster.gcs_address, "--json"]
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and _running(root / "home") < 2 and proc.poll() is None:
                time.sleep(0.5)
            assert _running(root / "home") >= 2, proc.communicate(timeout=60)[1][-4000:]
            # Kill only once both running trials have reported an epoch (a started trial may
            # still be importing torch on the worker; killed then, it never reported from there).
            while time.time() < deadline + 120 and _reported(root / "home") < 2 \
                    and proc.poll() is None:
                time.sleep(0.5)
            time.sleep(1)
            killed = cluster.kill_node(1)
            COUNTS["faults_injected"] += 1
            out, err = proc.communicate(timeout=420)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert killed > 0
    assert proc.returncode == 0, err[-4000:]
    assert out.strip(), err[-4000:]
    doc = json.loads(out)
    assert doc["status"] == "finished", err[-4000:]
    assert doc["counts"] == {"trials": N_TRIALS, "finished": N_TRIALS, "failed": 0,
                             "unfinished": 0}, err[-4000:]
    sweep_dir = root / "home" / "sweeps" / doc["sweep_id"]
    assert _num_failures(sweep_dir) >= 1  # a trial was lost and restarted, not skipped

    from mlflow.tracking import MlflowClient

    c = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = c.get_experiment_by_name("raysweep")
    runs = c.search_runs([exp.experiment_id], f"tags.`raysweep.sweep_id` = '{doc['sweep_id']}'",
                         max_results=1000)
    trials = [r for r in runs if r.data.tags.get("raysweep.kind") == "trial"]
    ids = {r.data.tags["raysweep.trial_id"] for r in trials}
    COUNTS["runs_lost"] += max(0, N_TRIALS - len(ids))
    assert len(trials) == N_TRIALS == len(ids)
    for r in trials:
        assert r.info.status == "FINISHED"
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "epoch")]
        assert steps == list(range(1, EPOCHS + 1)), (r.data.tags["raysweep.trial_id"], steps)
    # Trials ran on both nodes (raysweep.node: where a run finished; raysweep.nodes: every
    # node a restarted trial reported from, here the killed worker, then the head).
    seen = set()
    for r in trials:
        seen.add(r.data.tags["raysweep.node"])
        seen.update(filter(None, r.data.tags.get("raysweep.nodes", "").split(",")))
    assert len(seen) == 2, seen
    assert any("," in r.data.tags.get("raysweep.nodes", "") for r in trials)
    COUNTS["faults_survived"] += 1
