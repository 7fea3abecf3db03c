"""Issue 16, as a user meets it: leaderboards whose columns mean one thing, machine-readable
output, unknown names refused with the valid choices, sweeps listed, compared and exported,
status after an interrupt, budget stops, the store rule, the Python API and light imports.

The sweeps here are written the way the runner writes them (``state.json``, ``spec.json``,
``progress.json`` and MLflow runs with the runner's tags) so every test takes well under a
second after the module's MLflow store is built.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raysweep.cli import main

OBJ_A = "oracle-referenced composite: 1*forget + 1*heldout; retain floor 0.05"
OBJ_B = "oracle-referenced composite: 1*forget + 5*mia; retain floor off"


def _runs(client: Any, exp: str, sweep: str, objective: str, trials: list[dict[str, Any]]) -> None:
    base = {"raysweep.sweep_id": sweep, "raysweep.workload": "digits-class",
            "raysweep.workload_ref": "digits-class", "raysweep.objective": objective,
            "raysweep.sort_key": "objective", "raysweep.selection_split": "val"}
    for name, obj, acc in (("original", 1.2, 0.98), ("retrain", 0.0, 0.97)):
        run = client.create_run(exp, tags={**base, "raysweep.kind": "reference",
                                           "raysweep.method": name})
        for k, v in {"best/objective": obj, "best/test/acc": acc, "best/forget/acc": acc}.items():
            client.log_metric(run.info.run_id, k, v)
        client.set_terminated(run.info.run_id)
    for t in trials:
        tags = {**base, "raysweep.kind": "trial", "raysweep.method": t["method"],
                "raysweep.seed": str(t.get("seed", 0)), "raysweep.config_hash": t["config"],
                "raysweep.trial_id": t["config"] + str(t.get("seed", 0)),
                "raysweep.params_json": json.dumps(t["params"]), "raysweep.best_epoch": "2"}
        if t.get("stopped"):
            tags["raysweep.stopped"] = "time budget exceeded"
        run = client.create_run(exp, tags=tags)
        for k, v in {"best/objective": t["obj"], "best/test/acc": t["acc"],
                     "best/retain/acc": t["acc"] + 0.01, "best/forget/acc": 0.1,
                     "best/mia/auc/test": 0.52, "best/cost/ratio": 0.1}.items():
            client.log_metric(run.info.run_id, k, v)
        client.set_terminated(run.info.run_id)


def _sweep_dir(home: Path, sweep: str, uri: str, *, status: str = "finished",
               progress: dict[str, Any] | None = None, created: float = 0.0) -> None:
    d = home / "sweeps" / sweep
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({
        "id": sweep, "name": f"ux-{sweep[:4]}", "status": status, "workload": "digits-class",
        "tracking_uri": uri, "experiment": "raysweep", "created": created or time.time(),
        "trials": 4, "parent_run_id": "p" * 32, "experiment_id": "1", "pid": None}))
    (d / "spec.json").write_text(json.dumps({
        "name": f"ux-{sweep[:4]}", "workload": "digits-class",
        "methods": {"ssd": None, "finetune": None}, "search": {"algorithm": "tpe"},
        "objectives": [{"metric": "composite", "goal": "minimize"}]}))
    (d / "progress.json").write_text(json.dumps(progress or {
        "total": 4, "completed": 4, "failed": 0, "running": 0,
        "best": {"value": 0.1, "method": "ssd"}}))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two finished sweeps with different objectives, one interrupted sweep, one MLflow store."""
    root = tmp_path_factory.mktemp("ux")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("raysweep")
    _runs(client, exp, "aaaa1111", OBJ_A, [
        {"method": "ssd", "config": "s1", "params": {"selection_weighting": 10.0}, "obj": 0.10,
         "acc": 0.91, "seed": 0},
        {"method": "ssd", "config": "s1", "params": {"selection_weighting": 10.0}, "obj": 0.14,
         "acc": 0.89, "seed": 1},
        {"method": "finetune", "config": "f1", "params": {"lr": 0.01}, "obj": 0.30, "acc": 0.93,
         "stopped": True},
    ])
    _runs(client, exp, "bbbb2222", OBJ_B, [
        {"method": "ssd", "config": "s2", "params": {"selection_weighting": 3.0}, "obj": 0.50,
         "acc": 0.95},
        # a space with nothing to search run twice: two trials, one seed
        {"method": "finetune", "config": "f2", "params": {}, "obj": 0.40, "acc": 0.90},
        {"method": "finetune", "config": "f2", "params": {}, "obj": 0.42, "acc": 0.90},
    ])
    home = root / "home"
    _sweep_dir(home, "aaaa1111", uri, created=1_000_000)
    _sweep_dir(home, "bbbb2222", uri, created=2_000_000)
    _sweep_dir(home, "cccc3333", uri, status="interrupted", created=3_000_000, progress={
        "total": 4, "completed": 1, "failed": 0, "running": 1, "budget_stopped": 1,
        "best": {"value": 0.2, "method": "ssd"}})
    yield root


@pytest.fixture()
def env(store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAYSWEEP_HOME", str(store / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.delenv("RAYSWEEP_EXPERIMENT", raising=False)
    monkeypatch.chdir(store)
    return store


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("raysweep: error:"), err
    return lines[0]


# -- one meaning per column, legends, raw machine-readable output ------------------------------

def test_table_headers_carry_units_and_a_legend(env: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "leaderboard", "--sweep", "aaaa1111")
    assert rc == 0
    assert "Acc_r (%)" in out and "Acc_f (%)" in out
    # the legend is under the table and explains the units and the objective
    assert "Acc_r (%) = accuracy on the retain set D_r" in " ".join(out.split())
    assert "Objective:" in out and "1*forget" in out


def test_csv_and_json_carry_raw_values_and_full_run_ids(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "leaderboard", "--sweep", "aaaa1111", "--format", "csv")
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    ssd = next(r for r in rows if r["method"] == "ssd")
    assert float(ssd["test/acc"]) == pytest.approx(0.90)          # a fraction, not "90.00"
    assert float(ssd["test/acc:std"]) == pytest.approx(0.01414, abs=1e-4)
    assert len(ssd["run_id"]) == 32                                # never cut to 8 characters
    rc, out, _ = _cli(capsys, "leaderboard", "--sweep", "aaaa1111", "--format", "json")
    doc = json.loads(out)
    assert {r["method"] for r in doc} == {"original", "retrain", "ssd", "finetune"}
    assert all(len(r["run_id"]) == 32 for r in doc)


def test_every_table_has_a_legend() -> None:
    from raysweep.report import paper_columns, rich_table

    table = rich_table([{"method": "ssd", "retain/acc": 0.9}], paper_columns(True))
    assert "Acc_r (%) = accuracy on the retain set D_r" in str(table.caption)


# -- rich markup is printed, not parsed --------------------------------------------------------

def test_markup_in_values_is_printed_literally(capsys: pytest.CaptureFixture[str]) -> None:
    from raysweep.cli._common import stdout
    from raysweep.report import metric_column, rich_table

    stdout.print(rich_table([{"method": "[bold]x[/bold]", "test/acc": "[composite: w]"}],
                            [metric_column("test/acc")], title="[red]t"))
    out = capsys.readouterr().out
    assert "[bold]x[/bold]" in out and "[composite: w]" in out and "[red]t" in out


# -- unknown names are errors with the valid choices -------------------------------------------

@pytest.mark.parametrize("args, names", [
    (["--sweep", "aaaa1111", "--pareto", "nosuch,objective"], ["nosuch", "test/acc"]),
    (["--sweep", "aaaa1111", "--sort", "Acc_x"], ["Acc_x", "test/acc", "Acc_t"]),
    (["--sweep", "zzzz"], ["zzzz", "aaaa1111"]),
    (["--sweep", "aaaa1111", "--workload", "digits-clas"], ["digits-clas", "digits-class"]),
    (["--sweep", "aaaa1111", "--method", "sdd"], ["sdd", "ssd", "finetune"]),
])
def test_unknown_names_exit_2_with_choices(env: Path, capsys: pytest.CaptureFixture[str],
                                           args: list[str], names: list[str]) -> None:
    rc, out, err = _cli(capsys, "leaderboard", *args)
    assert rc == 2 and out == ""
    line = _one_error_line(err)
    for n in names:
        assert n in line


def test_sort_accepts_a_column_label(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "leaderboard", "--sweep", "aaaa1111", "--sort", "Acc_t",
                      "--format", "json")
    assert rc == 0
    trials = [r for r in json.loads(out) if r["kind"] == "trial"]
    assert [r["method"] for r in trials] == ["finetune", "ssd"]   # 0.93 before 0.90
    assert trials[0]["sort"] == "test/acc:max"


# -- across sweeps: a sweep column, never one objective ranking over different objectives ------

def test_leaderboard_across_sweeps(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _cli(capsys, "leaderboard")
    assert rc == 2
    line = _one_error_line(err)
    assert "different objectives" in line and "aaaa1111" in line and "bbbb2222" in line
    rc, out, _ = _cli(capsys, "leaderboard", "--sort", "test/acc", "--all")
    assert rc == 0
    assert "Sweep" in out and "aaaa1111" in out and "bbbb2222" in out
    assert "Obj columns hidden" in " ".join(out.split())


# -- a configuration repeated on one seed is not several seeds; budget stops are visible ------

def test_repeats_are_not_seeds_and_budget_stops_show(env: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _rc, out, _ = _cli(capsys, "leaderboard", "--sweep", "bbbb2222", "--format", "json")
    ft = next(r for r in json.loads(out) if r["method"] == "finetune")
    assert ft["n_seeds"] == 1 and ft["n_trials"] == 2
    _rc, out, _ = _cli(capsys, "leaderboard", "--sweep", "aaaa1111")
    assert "Budget stop" in out
    _rc, out, _ = _cli(capsys, "leaderboard", "--sweep", "aaaa1111", "--format", "json")
    assert next(r for r in json.loads(out) if r["method"] == "finetune")["budget_stopped"] == 1


# -- sweeps, status, store rule ----------------------------------------------------------------

def test_sweeps_lists_state_workload_methods_best(env: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "sweeps", "--format", "json")
    assert rc == 0
    doc = json.loads(out)
    assert [r["sweep"] for r in doc] == ["cccc3333", "bbbb2222", "aaaa1111"]   # newest first
    a = doc[2]
    assert a["status"] == "finished" and a["workload"] == "digits-class"
    assert a["methods"] == "ssd,finetune" and a["best"] == pytest.approx(0.1)
    rc, out, _ = _cli(capsys, "sweeps")
    assert rc == 0 and "interrupted" in out and "Best method" in out


def test_status_after_interrupt_says_nothing_runs(env: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "status", "cccc3333")
    assert rc == 0 and "interrupted" in out
    assert "running" not in out.replace("status: ", "")
    assert "1 of them stopped by the budget" in out
    rc, out, _ = _cli(capsys, "status", "cccc3333", "--format", "json")
    assert json.loads(out)["trials"]["running"] == 0


def test_store_differs_from_environment_is_said(env: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{env / 'elsewhere.db'}")
    rc, out, err = _cli(capsys, "status", "aaaa1111")
    assert rc == 0 and "logged to MLflow store" in err and "elsewhere.db" in err
    rc, out, err = _cli(capsys, "leaderboard", "--sweep", "aaaa1111", "--format", "json")
    assert rc == 0 and "elsewhere.db" in err and json.loads(out)   # read from the sweep's store


# -- compare, export, --version ----------------------------------------------------------------

def test_compare_two_sweeps(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "compare", "aaaa1111", "bbbb2222", "--format", "json")
    assert rc == 0
    doc = json.loads(out)
    ssd = next(r for r in doc["rows"] if r["method"] == "ssd")
    assert ssd["Δ:test/acc"] == pytest.approx(0.95 - 0.90)
    assert "Δ:objective" not in ssd          # different objectives: not compared
    rc, out, _ = _cli(capsys, "compare", "aaaa1111", "bbbb2222")
    assert rc == 0 and "Acc_t (%)" in out and "+5.00" in out
    rc, _, err = _cli(capsys, "compare", "aaaa1111", "nosuch")
    assert rc == 2 and "aaaa1111" in _one_error_line(err)


def test_export_best_configuration(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raysweep.cli._explore import load_exported

    out_file = env / "best.yaml"
    rc, out, _ = _cli(capsys, "export", "aaaa1111", "--method", "ssd", "-o", str(out_file))
    assert rc == 0 and out.strip() == str(out_file)
    doc = load_exported(out_file)
    assert doc["method"] == "ssd" and doc["workload"] == "digits-class"
    assert doc["config"] == {"selection_weighting": 10.0} and doc["max_epochs"] == 2
    rc, _, err = _cli(capsys, "export", "aaaa1111", "--method", "scrub", "-o", str(env / "x.yaml"))
    assert rc == 2 and "ssd" in _one_error_line(err) and not (env / "x.yaml").exists()


def test_unlearn_config_rejects_a_foreign_file(env: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = env / "notexport.yaml"
    bad.write_text("workload: digits-class\nmethod: ssd\n")
    rc, _out, err = _cli(capsys, "unlearn", "--config", str(bad))
    assert rc == 2 and "raysweep export" in _one_error_line(err) and str(bad) in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from raysweep import __version__

    rc, out, _ = _cli(capsys, "--version")
    assert rc == 0 and out.strip() == f"raysweep {__version__}"


# -- Python API --------------------------------------------------------------------------------

def test_python_api(env: Path) -> None:
    import raysweep

    df = raysweep.leaderboard(sweep="aaaa1111")
    assert list(df["method"]) == ["original", "retrain", "ssd", "finetune"]
    assert df.loc[df["method"] == "ssd", "test/acc"].item() == pytest.approx(0.90)
    s = raysweep.load_sweep("aaaa")
    assert s.sweep_id == "aaaa1111" and s.status["status"] == "finished"
    assert set(raysweep.sweeps()["sweep"]) == {"aaaa1111", "bbbb2222", "cccc3333"}
    from raysweep.errors import UserError

    with pytest.raises(UserError, match="valid"):
        raysweep.leaderboard(sweep="aaaa1111", method="nosuch")


# -- read-only commands stay light -------------------------------------------------------------

def test_read_only_commands_import_neither_torch_nor_ray(env: Path) -> None:
    code = ("import sys\nfrom raysweep.cli import main\n"
            "for a in (['--help'], ['sweeps'], ['status', 'aaaa1111'], "
            "['leaderboard', '--sweep', 'aaaa1111', '--format', 'csv']):\n"
            "    assert main(a) == 0, a\n"
            "heavy = [m for m in ('torch', 'ray') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ}, cwd=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- a space with nothing to search runs once per seed, and says so ----------------------------

def test_nothing_to_search_runs_once_per_seed(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "defaults.yaml"
    space.write_text("schema_version: 1\nworkload: digits-class\nmethod: ssd\n"
                     "search: {num_samples: 6}\nseeds: [0, 1]\n")
    rc, out, _ = _cli(capsys, "run", str(space), "--dry-run", "--json")
    assert rc == 0
    plan = json.loads(out)["plan"]
    assert plan["configurations"] == 1 and plan["trials"] == 2
    rc, out, _ = _cli(capsys, "run", str(space), "--dry-run")
    assert rc == 0 and "nothing to search" in out and "num_samples=6 is not used" in out


# -- budget stops and the ETA in progress lines; Ray's own resume hint is dropped --------------

def test_progress_lines_show_budget_stops_and_eta(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    import raysweep.sweep.runner as runner

    runner._ERR = None  # a fresh stderr console, captured by capsys
    p = runner.Progress(tmp_path, total=3, max_failed=None, objective_key="objective",
                        objective_mode="min")
    trial = SimpleNamespace(trial_id="t1", config={"method": "ssd", "seed": 0},
                            last_result={"best/objective": 0.3, "epoch": 2, "budget/over": 1.0})
    p.on_trial_complete(0, [], trial)
    err = capsys.readouterr().err
    assert "budget" in err and "ETA" in err and "[1/3]" in err
    data = json.loads((tmp_path / "progress.json").read_text())
    assert data["budget_stopped"] == 1 and data["completed"] == 1


def test_rays_restore_hint_is_filtered() -> None:
    import logging

    from raysweep.sweep.runner import _QuietTrialErrors

    rec = logging.LogRecord("ray.tune.tune", logging.WARNING, "", 0,
                            "Experiment has been interrupted, but the most recent state was "
                            "saved.\n"
                            "Resume experiment with: "
                            "Tuner.restore(path=\"x\", trainable=...)",
                            None, None)
    assert not _QuietTrialErrors().filter(rec)
    other = logging.LogRecord("ray.tune.tune", logging.WARNING, "", 0, "something else",
                              None, None)
    assert _QuietTrialErrors().filter(other)


# -- MLflow keeps the final leaderboard on the sweep's parent run ------------------------------

def test_leaderboard_is_logged_on_the_parent_run(env: Path) -> None:
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    import raysweep
    from raysweep.cli._sweep import _leaderboard_rows, _log_leaderboard

    uri = f"sqlite:///{env / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    parent = client.create_run(client.get_experiment_by_name("raysweep").experiment_id,
                               tags={"raysweep.kind": "parent"}).info.run_id
    rows, _ = _leaderboard_rows("aaaa1111")
    _log_leaderboard(SimpleNamespace(tracking_uri=uri, parent_run_id=parent), rows)
    names = {a.path for a in client.list_artifacts(parent)}
    assert {"leaderboard.json", "leaderboard.csv", "leaderboard.md"} <= names
    local = client.download_artifacts(parent, "leaderboard.json", str(env / "dl"))
    table = json.loads(Path(local).read_text())  # MLflow's table format: columns + data
    methods = {row[table["columns"].index("method")] for row in table["data"]}
    assert methods == set(raysweep.leaderboard(sweep="aaaa1111")["method"])


def test_shell_completion_completes_commands(tmp_path: Path) -> None:
    code = "import sys\nfrom raysweep.cli import main\nsys.exit(main())\n"
    env = {**os.environ, "_RAYSWEEP_COMPLETE": "complete_bash", "COMP_WORDS": "raysweep lea",
           "COMP_CWORD": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ["leaderboard"]
