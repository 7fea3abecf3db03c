"""End to end on local Ray: ``raysweep run`` of the smoke sweep, interrupted and resumed.

One sweep serves the whole module (Ray, MLflow and the sweep home under a tmp dir, Ray capped
at 2 CPUs): ``raysweep run search_spaces/sweeps/smoke.yaml`` runs in a subprocess, gets SIGINT
(Ctrl-C) once a trial has finished, and ``raysweep resume`` finishes it in-process. The tests
then check the MLflow layout, the leaderboard, ``show``/``status``/``plot`` and that the resume
neither re-ran finished trials nor duplicated runs. An uninterrupted run is the slow test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from raysweep.cli import main
from raysweep.sweep.space import SEARCH_SPACES

SMOKE = str(SEARCH_SPACES / "sweeps" / "smoke.yaml")
N_TRIALS = 4


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _runs(sweep_id: str) -> list:
    c = _client()
    exp = c.get_experiment_by_name("raysweep")
    return list(c.search_runs([exp.experiment_id], f"tags.`raysweep.sweep_id` = '{sweep_id}'",
                              max_results=1000))


def _json_out(capsys: pytest.CaptureFixture[str] | None, argv: list[str]) -> Any:
    if capsys is not None:
        capsys.readouterr()
    assert main(argv) == 0, argv
    return json.loads(capsys.readouterr().out) if capsys is not None else None


def _wait_for(root: Path, pattern: str, predicate, timeout: float) -> Path | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in root.glob(pattern):
            try:
                if predicate(json.loads(p.read_text())):
                    return p
            except (OSError, ValueError):
                pass
        time.sleep(0.5)
    return None


@pytest.fixture(scope="module")
def resumed(module_sweep_env: Path) -> dict[str, Any]:
    """Run the smoke sweep, interrupt it after its first trial, resume it; record both halves."""
    root = module_sweep_env
    cmd = [sys.executable, "-m", "raysweep", "run", SMOKE, "--max-concurrent", "1",
           "--num-samples", str(N_TRIALS)]
    proc = subprocess.Popen(cmd, env=dict(os.environ), cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        progress = _wait_for(root, "home/sweeps/*/progress.json",
                             lambda d: d["completed"] >= 1, 240)
        if progress is None:
            proc.kill()
            pytest.fail(f"no trial finished in time: {proc.communicate()[1][-3000:]}")
        proc.send_signal(signal.SIGINT)  # Ctrl-C; SIGTERM is handled the same way
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    sweep_id = progress.parent.name
    first = {"rc": proc.returncode, "stdout": out, "stderr": err,
             "runs": {r.data.tags["raysweep.trial_id"]: r for r in _runs(sweep_id)
                      if r.data.tags.get("raysweep.kind") == "trial"}}
    import io
    from contextlib import redirect_stderr, redirect_stdout

    buf, errbuf = io.StringIO(), io.StringIO()
    if proc.returncode == 130:
        with redirect_stdout(buf), redirect_stderr(errbuf):
            rc = main(["resume", sweep_id, "--json"])
    else:  # the sweep outran the signal; nothing to resume
        rc = None
    return {"sweep_id": sweep_id, "root": root, "first": first, "resume_rc": rc,
            "resume_stderr": errbuf.getvalue(),
            "resume": json.loads(buf.getvalue()) if buf.getvalue() else None}


def test_interrupt_exits_130_and_prints_the_id(resumed: dict[str, Any]) -> None:
    first = resumed["first"]
    if first["rc"] == 0:
        pytest.skip("the sweep finished before the interrupt arrived")
    assert first["rc"] == 130, first["stderr"][-3000:]
    assert first["stdout"].strip() == resumed["sweep_id"]
    assert f"raysweep resume {resumed['sweep_id']}" in first["stderr"]


def test_resume_finishes_without_rerunning_or_duplicating(
        resumed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    if resumed["first"]["rc"] == 0:
        pytest.skip("the sweep finished before the interrupt arrived")
    assert resumed["resume_rc"] == 0, resumed["resume_stderr"][-4000:]
    assert resumed["resume"]["status"] == "finished"
    assert resumed["resume"]["counts"]["finished"] == N_TRIALS
    runs = _runs(resumed["sweep_id"])
    trials = [r for r in runs if r.data.tags["raysweep.kind"] == "trial"]
    ids = [r.data.tags["raysweep.trial_id"] for r in trials]
    assert len(trials) == N_TRIALS and len(set(ids)) == N_TRIALS  # one run per trial
    assert sum(r.data.tags["raysweep.kind"] == "sweep" for r in runs) == 1
    assert sum(r.data.tags["raysweep.kind"] == "reference" for r in runs) == 2
    before = {t: r for t, r in resumed["first"]["runs"].items() if r.info.status == "FINISHED"}
    assert before
    for tid, old in before.items():  # finished before the interrupt: not run again
        new = next(r for r in trials if r.data.tags["raysweep.trial_id"] == tid)
        assert new.info.end_time == old.info.end_time
        assert new.data.metrics["rs/trial_seconds"] == old.data.metrics["rs/trial_seconds"]
    status = _json_out(capsys, ["status", resumed["sweep_id"], "--json"])
    assert status["status"] == "finished"
    # stopped: one poll
    assert main(["status", resumed["sweep_id"], "--watch", "1", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["status"] == "finished"
    assert status["optuna"]["states"] == {"COMPLETE": N_TRIALS}


def test_finished_trials_keep_only_their_newest_checkpoint(resumed: dict[str, Any]) -> None:
    """Tune keeps every checkpoint (no snapshot forced per checkpoint); the snapshot keeper
    prunes a finished trial to its newest once a checked snapshot says it finished."""
    if resumed["first"]["rc"] == 130 and resumed["resume_rc"] != 0:
        pytest.skip("the resume failed; test_resume_finishes_... says why")
    tune_dir = resumed["root"] / "home" / "sweeps" / resumed["sweep_id"] / "ray" / "tune"
    trial_dirs = [d for d in tune_dir.iterdir() if d.is_dir()]
    assert len(trial_dirs) == N_TRIALS
    for d in trial_dirs:
        kept = sorted(p.name for p in d.glob("checkpoint_*"))
        result = [json.loads(line) for line in (d / "result.json").read_text().splitlines()]
        assert kept == [result[-1]["checkpoint_dir_name"]], (d.name, kept)
    epochs = max(len((d / "result.json").read_text().splitlines()) for d in trial_dirs)
    assert epochs > 1  # trials wrote several checkpoints: there was something to prune
    # ...by the keeper, not by Tune: Tune was told to keep every checkpoint (with num_to_keep
    # it would force an experiment snapshot after each one).
    from ray import cloudpickle

    state = json.loads(sorted(tune_dir.glob("experiment_state-*.json"))[-1].read_text())
    blob = state["runner_data"]["_trial_checkpoint_config"]["value"]
    assert cloudpickle.loads(bytes.fromhex(blob)).num_to_keep is None


def _check_mlflow_layout(sweep_id: str, n: int) -> list:
    runs = _runs(sweep_id)
    parent = [r for r in runs if r.data.tags["raysweep.kind"] == "sweep"]
    trials = [r for r in runs if r.data.tags["raysweep.kind"] == "trial"]
    refs = {r.data.tags["raysweep.method"] for r in runs
            if r.data.tags["raysweep.kind"] == "reference"}
    assert len(parent) == 1 and len(trials) == n and refs == {"original", "retrain"}
    assert parent[0].info.status == "FINISHED"
    c = _client()
    with_checkpoint = 0
    for r in trials:
        tags = r.data.tags
        assert tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert r.info.status == "FINISHED"
        for key in ("raysweep.sweep_id", "raysweep.method", "raysweep.workload",
                    "raysweep.git_sha", "raysweep.trial_id", "raysweep.seed"):
            assert tags.get(key), key
        assert r.data.params["method"] == tags["raysweep.method"]
        assert {"best/objective", "best/forget/acc", "best/mia/lr_auc"} <= set(r.data.metrics)
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "objective")]
        assert steps and steps[0] == 1 and steps == sorted(set(steps))  # per epoch, once each
        arts = [a.path for a in c.list_artifacts(r.info.run_id, "checkpoint")]
        with_checkpoint += "checkpoint/best.pt" in arts
    assert with_checkpoint >= 1  # the best configuration of each method carries its weights
    return trials


def test_mlflow_holds_parent_children_params_epochs_and_checkpoints(
        resumed: dict[str, Any]) -> None:
    _check_mlflow_layout(resumed["sweep_id"], N_TRIALS)


def test_leaderboard_show_plot(resumed: dict[str, Any],
                               capsys: pytest.CaptureFixture[str]) -> None:
    sweep_id, root = resumed["sweep_id"], resumed["root"]
    rows = _json_out(capsys, ["leaderboard", "--sweep", sweep_id, "--format", "json"])
    assert [r["method"] for r in rows[:2]] == ["original", "retrain"]
    trial_rows = [r for r in rows if r["kind"] == "trial"]
    assert trial_rows and all(r["run_id"] and r["params"] is not None for r in trial_rows)
    if resumed["resume"]:
        assert resumed["resume"]["leaderboard"] == rows  # `run/resume --json` give the same rows
    capsys.readouterr()
    assert main(["leaderboard", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("method,")

    best = trial_rows[0]
    shown = _json_out(capsys, ["show", best["run_id"], "--json"])
    assert shown["reproduce"].startswith(
        f"raysweep unlearn --workload digits-class --method {best['method']}")
    assert shown["best_metrics"]["objective"] == pytest.approx(best["objective"])
    assert "checkpoint/best.pt" in shown["checkpoint"]
    by_trial = _json_out(capsys, ["show", shown["trial_id"], "--json"])
    assert by_trial["run_id"] == best["run_id"]

    for kind, name in (("history", "h.html"), ("parallel", "p.png")):
        # parallel/importance are per method: the two methods' parameters differ
        assert main(["plot", sweep_id, "--kind", kind, "-o", str(root / name),
                     "--method", "ssd"]) == 0
        assert (root / name).stat().st_size > 1000
    assert main(["plot", sweep_id, "--kind", "parallel", "-o", str(root / "x.png")]) == 2
    assert main(["plot", sweep_id, "--kind", "pareto", "-o", str(root / "x.html")]) == 2


def test_usage_errors_exit_2(sweep_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = sweep_env / "bad.yaml"
    bad.write_text("method: ssd\nparameters:\n"
                   "  selection_weighting: {distribution: loguniform, min: 0, max: 1}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"raysweep: error: {bad}: parameters.selection_weighting: loguniform needs "
                   f"min > 0, got min=0"]
    assert main(["validate", SMOKE, "--json"]) == 0
    assert main(["run", SMOKE, "--dry-run"]) == 0
    assert main(["status", "nosuchsweep"]) == 2
    assert main(["resume", "nosuchsweep"]) == 2
    assert main(["leaderboard"]) == 2  # no MLflow store here yet


@pytest.mark.slow
def test_uninterrupted_run_in_process(sweep_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _json_out(capsys, ["run", SMOKE, "--set", "search.num_samples=3", "--json"])
    assert out["status"] == "finished" and out["counts"]["finished"] == 3
    _check_mlflow_layout(out["sweep_id"], 3)


@pytest.mark.slow
def test_driver_crash_resumes(sweep_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL the driver (no chance to save anything); ``resume`` continues from the snapshot."""
    cmd = [sys.executable, "-m", "raysweep", "run", SMOKE, "--max-concurrent", "1",
           "--num-samples", str(N_TRIALS)]
    proc = subprocess.Popen(cmd, env=dict(os.environ), cwd=sweep_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        progress = _wait_for(sweep_env, "home/sweeps/*/progress.json",
                             lambda d: d["completed"] >= 1, 240)
        assert progress is not None
        os.kill(proc.pid, signal.SIGKILL)  # Ray's local processes share the driver's fate
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    sweep_id = progress.parent.name
    finished = json.loads(progress.read_text())["completed"]
    if finished >= N_TRIALS:
        pytest.skip("the sweep finished before the crash")
    status = _json_out(capsys, ["status", sweep_id, "--json"])
    assert status["status"] == "crashed" and "raysweep resume" in status["message"]
    resumed = _json_out(capsys, ["resume", sweep_id, "--json"])
    assert resumed["status"] == "finished" and resumed["counts"]["finished"] == N_TRIALS
    trials = _check_mlflow_layout(sweep_id, N_TRIALS)
    assert len({r.data.tags["raysweep.trial_id"] for r in trials}) == N_TRIALS
