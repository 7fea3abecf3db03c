"""Extending a finished sweep (``raysweep resume SWEEP --num-samples +N``) and the best model
of each method logged as an MLflow model, used the way a user would: the CLI, then MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from raysweep.cli import main
from raysweep.sweep.space import SEARCH_SPACES


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("raysweep: error:")
    return err[0]


@pytest.mark.parametrize("value", ["3", "+0", "-2", "+-1", "abc", "+1.5", "+", "+ 2", "1e3"])
def test_num_samples_must_be_plus_n(sweep_env: Path, value: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in sweep_env.rglob("*"))
    assert main(["resume", "latest", "--num-samples", value]) == 2
    line = _error_line(capsys)
    assert "--num-samples" in line and repr(value) in line and "+N" in line
    assert sorted(p.name for p in sweep_env.rglob("*")) == before  # nothing written


def test_extended_spec_refuses_what_the_space_cannot_give() -> None:
    from raysweep.errors import UserError
    from raysweep.sweep.runner import extended_spec
    from raysweep.sweep.space import SweepSpec

    def spec(**search: Any) -> SweepSpec:
        return SweepSpec.model_validate({
            "schema_version": 1, "name": "t", "workload": "digits-class",
            "methods": {"finetune": {"parameters": {
                "lr": {"values": [0.01, 0.1]}, "epochs": {"value": 1}}}},
            "search": search})

    assert extended_spec(spec(num_samples=3), 4, "s").search.num_samples == 7
    grid = spec(algorithm="grid", num_samples=1)
    assert extended_spec(grid, 1, "s").num_configs() == 2
    with pytest.raises(UserError,
                       match=r"grid has 2 points and 1 were scheduled; use at most \+1"):
        extended_spec(grid, 2, "s")
    with pytest.raises(UserError, match="none is left"):
        extended_spec(spec(algorithm="grid"), 1, "s")
    with pytest.raises(UserError, match="exceed the limit"):
        extended_spec(spec(num_samples=3), 100_000, "s")
    fixed = SweepSpec.model_validate({
        "schema_version": 1, "name": "t", "workload": "digits-class",
        "methods": {"finetune": {"parameters": {"lr": {"value": 0.01}}}}})
    with pytest.raises(UserError, match="nothing to search"):
        extended_spec(fixed, 1, "s")


@pytest.mark.parametrize("url, says", [
    ("mongodb://h/db", "not one Optuna stores studies in"),
    ("redis://u:hunter2@h:6379", "not one Optuna stores studies in"),
    ("postgres://alice@db.example/studies", "did you mean postgresql://"),
    ("sqlite://", "in-memory"),
    ("sqlite:///", "in-memory"),
    ("postgresql://alice:hunter2@db.example/studies", "carries a password"),
    ("postgresql:///studies", "names no host"),
    ("/tmp/optuna.db", "not a database URL"),
    ("optuna.journal", "not a database URL"),
])
def test_bad_storage_urls_are_one_line_and_write_nothing(
        sweep_env: Path, url: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    space = SEARCH_SPACES / "sweeps" / "smoke.yaml"
    for argv in (["validate", str(space)], ["run", str(space), "--dry-run"], ["run", str(space)]):
        assert main([*argv, "--set", f"search.storage={url}"]) == 2
        line = _error_line(capsys)
        assert "search.storage" in line and says in line and "hunter2" not in line
    assert sorted(p.name for p in sweep_env.iterdir()) == []  # no sweep dir, no MLflow store


def test_a_relative_sqlite_storage_is_stored_absolute(sweep_env: Path) -> None:
    from raysweep.sweep.space import load_sweep

    spec = load_sweep(SEARCH_SPACES / "sweeps" / "smoke.yaml", ["search.storage=sqlite:///s.db"])
    assert spec.search.storage == f"sqlite:///{sweep_env.resolve() / 's.db'}"
    again = type(spec).model_validate_json(spec.model_dump_json())  # spec.json read back
    assert again.search.storage == spec.search.storage
    assert not (sweep_env / "s.db").exists()  # validating creates nothing


def test_storage_without_its_driver_or_directory_stops_before_anything_is_written(
        sweep_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    space = SEARCH_SPACES / "sweeps" / "smoke.yaml"
    cases = [(f"sqlite:///{sweep_env}/missing/dir/optuna.db", "does not exist")]
    if importlib.util.find_spec("psycopg2") is None:
        cases.append(("postgresql://alice@localhost/studies", "pip install psycopg2-binary"))
    for url, says in cases:
        assert main(["run", str(space), "--set", f"search.storage={url}"]) == 2
        assert says in _error_line(capsys)
    assert not (sweep_env / "home").exists() and not (sweep_env / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_extend_a_finished_sweep_and_load_its_best_model(
        sweep_env: Path, storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow
    import mlflow.pyfunc
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.tracking import MlflowClient

    from raysweep.sweep.runner import find_sweep, load_study
    from raysweep.sweep.tracking import tracking_uri
    from raysweep.sweep.trainable import load_best
    from raysweep.workload import load_workload_config, prepare

    space = SEARCH_SPACES / "sweeps" / "smoke.yaml"
    # The study in the sweep's journal (the default), or in an RDB that other sweeps could share.
    db = f"sqlite:///{sweep_env}/studies.db"
    extra = ["--set", f"search.storage={db}"] if storage == "sqlite" else []
    assert main(["run", str(space), "--set", "search.num_samples=2", "--set",
                 "budget.max_epochs=1", "--set", "tracking.checkpoints=best", *extra,
                 "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    sweep_id = first["sweep_id"]
    journal = str(find_sweep(sweep_id) / "optuna.journal")
    where = db if storage == "sqlite" else journal
    assert first["optuna_storage"] == where
    # A finished sweep says how to extend it.
    assert main(["resume", sweep_id]) == 2
    assert "--num-samples +N" in _error_line(capsys)

    assert main(["resume", sweep_id, "--num-samples", "+2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "finished" and out["counts"]["trials"] == 4
    assert out["counts"]["finished"] == 4 and out["counts"]["failed"] == 0

    sweep_dir = find_sweep(sweep_id)
    study = load_study(sweep_dir)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4  # one study, continued
    assert (sweep_dir / "optuna.journal").exists() == (storage == "journal")
    if storage == "sqlite":
        import optuna

        names = [s.study_name for s in optuna.get_all_study_summaries(db)]
        assert names == [f"raysweep-{sweep_id}"]
    assert main(["status", sweep_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["optuna_storage"] == where and status["optuna"]["configurations"] == 4
    client = MlflowClient(tracking_uri=tracking_uri())
    exp = client.get_experiment_by_name("raysweep")
    children = client.search_runs(
        [exp.experiment_id],
        f"tags.raysweep.sweep_id = '{sweep_id}' and tags.raysweep.kind = 'trial'")
    assert len(children) == 4
    assert {r.data.tags["raysweep.trial_id"] for r in children} == {
        d.name.split("_")[2] for d in (sweep_dir / "ray" / "tune").iterdir()
        if d.is_dir() and d.name.startswith("unlearning_trial_")}
    parent = client.get_run(out["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["raysweep.num_samples"] == "4"
    spec = json.loads((sweep_dir / "spec.json").read_text())
    assert spec["search"]["num_samples"] == 4

    capsys.readouterr()
    assert main(["leaderboard", "--sweep", sweep_id, "--all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    listed = {rid for r in rows if r.get("kind") == "trial" for rid in r["run_ids"]}
    assert listed == {r.info.run_id for r in children}, rows

    # Every method's best configuration: an MLflow model that gives the checkpoint's logits.
    with_model = [r for r in children if "raysweep.model" in r.data.tags]
    assert {r.data.tags["raysweep.method"] for r in with_model} == {"finetune", "ssd"}
    workload = prepare(load_workload_config("digits-class"), quiet=True)
    x = workload.splits["test"].tensors[0][:32]
    for run in with_model:
        run_id = run.info.run_id
        model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
        assert isinstance(model, torch.nn.Module)
        ckpt = Path(client.download_artifacts(run_id, "checkpoint", str(sweep_env / run_id)))
        ref = workload.build_model("original")
        ref.load_state_dict(load_best(ckpt))
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x), ref.eval()(x))
        info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
        assert info.signature is not None and info.saved_input_example_info is not None
    # The Model Registry takes it, and serves it through pyfunc as `mlflow models` does.
    version = mlflow.register_model(f"runs:/{with_model[0].info.run_id}/model", "best-unlearned")
    served = mlflow.pyfunc.load_model(f"models:/best-unlearned/{version.version}")
    model = mlflow.pytorch.load_model(f"runs:/{with_model[0].info.run_id}/model")
    with torch.no_grad():
        np.testing.assert_allclose(served.predict(x.numpy()), model(x).numpy(), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.slow
def test_an_interrupted_extension_finishes_with_a_plain_resume(
        sweep_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C during ``resume --num-samples +N``: ``raysweep resume`` runs what is left of the
    extension, and every trial is counted and logged once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    from raysweep.sweep.runner import find_sweep, load_study
    from raysweep.sweep.tracking import tracking_uri

    space = SEARCH_SPACES / "sweeps" / "smoke.yaml"
    assert main(["run", str(space), "--set", "search.num_samples=1", "--set",
                 "budget.max_epochs=1", "--set", "search.max_concurrent=1", "--json"]) == 0
    sweep_id = json.loads(capsys.readouterr().out)["sweep_id"]
    progress = find_sweep(sweep_id) / "progress.json"

    proc = subprocess.Popen([sys.executable, "-m", "raysweep", "resume", sweep_id,
                             "--num-samples", "+3"], env=dict(os.environ), cwd=sweep_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads(progress.read_text())["completed"] >= 2:  # one new trial done
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Two of the three new trials were still to run (one at a time) when Ctrl-C came.
    assert proc.returncode == 130, err[-2000:]
    assert f"continue with: raysweep resume {sweep_id}" in err
    capsys.readouterr()
    assert main(["resume", sweep_id, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "finished" and out["counts"]["trials"] == 4
    status = json.loads(progress.read_text())
    assert status["total"] == 4 and status["completed"] == 4 and status["failed"] == 0
    study = load_study(find_sweep(sweep_id))
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 4
    client = MlflowClient(tracking_uri=tracking_uri())
    exp = client.get_experiment_by_name("raysweep")
    children = client.search_runs(
        [exp.experiment_id],
        f"tags.raysweep.sweep_id = '{sweep_id}' and tags.raysweep.kind = 'trial'")
    trial_ids = [r.data.tags["raysweep.trial_id"] for r in children]
    assert len(trial_ids) == 4 == len(set(trial_ids))
    assert all(r.info.status == "FINISHED" for r in children)
