"""Pruning finished trials' older checkpoints against Tune's experiment snapshot."""

from __future__ import annotations

import json
from pathlib import Path

from raysweep.sweep._snapshot import prune_finished_checkpoints


def _experiment(tmp_path: Path, trials: dict[str, tuple[str, str, int]]) -> Path:
    """An experiment dir: trial id -> (status, logdir, number of checkpoints written)."""
    exp = tmp_path / "tune"
    exp.mkdir()
    data = []
    for tid, (status, logdir, n) in trials.items():
        d = exp / logdir
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (d / f"checkpoint_{i:06d}").mkdir()
            (d / f"checkpoint_{i:06d}" / "state.pt").write_text("x")
        blob = {"trial_id": tid, "status": status, "relative_logdir": logdir}
        data.append([json.dumps(blob), json.dumps({})])
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": data, "runner_data": {}, "stats": {}}))
    return exp


def test_finished_trials_keep_their_newest_checkpoint_running_ones_keep_all(
        tmp_path: Path) -> None:
    exp = _experiment(tmp_path, {"a": ("TERMINATED", "trial_a", 3),
                                 "b": ("RUNNING", "trial_b", 2),
                                 "c": ("ERROR", "trial_c", 2),
                                 "d": ("TERMINATED", "trial_d", 1)})
    done: set[str] = set()
    assert prune_finished_checkpoints(exp, done) == 2
    assert sorted(p.name for p in (exp / "trial_a").iterdir()) == ["checkpoint_000002"]
    assert len(list((exp / "trial_b").iterdir())) == 2  # a resume continues from either
    assert len(list((exp / "trial_c").iterdir())) == 2  # resume_errored restores the newest
    assert done == {"a", "d"}
    # A pruned trial is not looked at again; a checkpoint that appears later stays.
    (exp / "trial_a" / "checkpoint_000001").mkdir()
    assert prune_finished_checkpoints(exp, done) == 0
    assert (exp / "trial_a" / "checkpoint_000001").is_dir()


def test_nothing_outside_the_experiment_and_nothing_on_a_torn_snapshot(tmp_path: Path) -> None:
    (tmp_path / "checkpoint_000000").mkdir()  # beside the experiment dir: must survive
    exp = _experiment(tmp_path, {"a": ("TERMINATED", "trial_a", 2)})
    state = next(exp.glob("experiment_state-*.json"))
    doc = json.loads(state.read_text())
    doc["trial_data"].append([json.dumps({"trial_id": "x", "status": "TERMINATED",
                                          "relative_logdir": ".."}), "{}"])
    state.write_text(json.dumps(doc))
    assert prune_finished_checkpoints(exp, set()) == 1
    assert (tmp_path / "checkpoint_000000").is_dir()
    (tmp_path / "torn").mkdir()
    exp2 = _experiment(tmp_path / "torn", {"a": ("TERMINATED", "trial_a", 2)})
    state2 = next(exp2.glob("experiment_state-*.json"))
    state2.write_text(state2.read_text()[:40])  # torn mid-write
    assert prune_finished_checkpoints(exp2, set()) == 0
    assert len(list((exp2 / "trial_a").iterdir())) == 2
