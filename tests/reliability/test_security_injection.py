"""Issue 13, security 4: values read from MLflow or given on the command line stay values.

``raysweep show`` prints a reproduce command built from tags anyone with write access to the
MLflow store can set: pasted into a shell it must run exactly one command with exactly those
arguments. Ids placed into MLflow filter strings must not change the query.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from raysweep._quoting import filter_literal, printable, shell_join, tag_filter
from raysweep.cli import main
from raysweep.errors import UserError

HOSTILE = ["0; touch {m} #", "$(touch {m})", "`touch {m}`", "x' ; touch {m} ; '",
           'a" && touch {m} && "', "a\ntouch {m}", "a\rb\x1b[2J"]


def _run_pasted(line: str, cwd: Path) -> list[str]:
    """Paste ``line`` into bash with ``raysweep`` swapped for a printer of its arguments."""
    assert line.startswith("raysweep ")
    script = "printf '%s\\0' " + line[len("raysweep "):]
    out = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_reproduce_line_is_one_command_with_the_tags_as_arguments(tmp_path: Path,
                                                                  hostile: str) -> None:
    from raysweep.cli._sweep import _repro

    marker = tmp_path / "PWNED"
    value = hostile.format(m=marker)
    tags = {"raysweep.kind": "trial", "raysweep.workload_ref": value, "raysweep.method": value,
            "raysweep.seed": value, "raysweep.best_epoch": value,
            "raysweep.params_json": json.dumps({value: value, "lr": 0.1})}
    line = _repro({"run_id": "r", "tags": tags})
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    args = _run_pasted(line, tmp_path)
    assert not marker.exists()
    shown = printable(value)
    assert args == ["unlearn", "--workload", shown, "--method", shown, "--seed", shown,
                    "--max-epochs", shown, "--set", f"{shown}={shown}", "--set", "lr=0.1"]


def test_reference_runs_are_quoted_too(tmp_path: Path) -> None:
    from raysweep.cli._sweep import _repro

    marker = tmp_path / "PWNED"
    line = _repro({"run_id": "r", "tags": {"raysweep.kind": "reference",
                                           "raysweep.workload_ref": f"w; touch {marker}"}})
    assert _run_pasted(line, tmp_path) == ["workload", "prepare", f"w; touch {marker}"]
    assert not marker.exists()


def test_a_params_tag_that_is_not_json_is_one_clear_error() -> None:
    from raysweep.cli._sweep import _repro

    with pytest.raises(UserError, match=r"raysweep.params_json"):
        _repro({"run_id": "r", "tags": {"raysweep.kind": "trial",
                                        "raysweep.params_json": "{not json"}})


def test_shell_join_round_trips() -> None:
    argv = ["a b", "it's", "$HOME", "", "--set", "k=v;rm"]
    assert shlex.split(shell_join(argv)) == argv


def test_show_prints_quoted_values_and_no_control_characters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(uri)
    exp = client.create_experiment("raysweep", artifact_location=(tmp_path / "a").as_uri())
    marker = tmp_path / "PWNED"
    run = client.create_run(exp, tags={
        "raysweep.kind": "trial", "raysweep.sweep_id": "s1", "raysweep.trial_id": "t1",
        "raysweep.method": "ssd[/]\x1b[31m", "raysweep.workload_ref": "digits-class",
        "raysweep.seed": f"0; touch {marker} #", "raysweep.error": "boom\x1b[2J[bold]",
        "raysweep.params_json": json.dumps({"alpha": 1.5})})
    client.set_terminated(run.info.run_id)
    assert main(["show", run.info.run_id]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    line = out.split("reproduce:")[1].strip()
    args = _run_pasted(line, tmp_path)
    assert not marker.exists()
    assert args[args.index("--seed") + 1] == f"0; touch {marker} #"
    assert main(["show", run.info.run_id, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "ssd[/]\\x1b[31m" and doc["error"] == "boom\\x1b[2J[bold]"


@pytest.mark.parametrize("value,literal", [("ab12", "'ab12'"), ("it's", '"it\'s"'),
                                           ('say "x"', "'say \"x\"'")])
def test_filter_literal(value: str, literal: str) -> None:
    assert filter_literal(value) == literal


@pytest.mark.parametrize("value", ["a'b\"c", "x\ny", "nul\x00"])
def test_unsearchable_values_are_one_clear_error(value: str) -> None:
    with pytest.raises(UserError) as err:
        filter_literal(value, "sweep id")
    assert "sweep id" in str(err.value) and "\n" not in str(err.value)


def test_ids_cannot_widen_an_mlflow_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    from raysweep.sweep.tracking import fetch_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("raysweep", artifact_location=(tmp_path / "a").as_uri())
    odd = "s2' and tags.`raysweep.kind` = 'trial"
    for sid in ("s1", odd):
        client.create_run(exp, tags={"raysweep.kind": "trial", "raysweep.sweep_id": sid,
                                     "raysweep.method": "ssd\x1b[2J\n",
                                     "mlflow.note.content": "a\nb"})
    # The quote is part of the id: exactly the run carrying that id, never the other one.
    runs = fetch_runs(uri, "raysweep", sweep_id=odd)
    assert [r["tags"]["raysweep.sweep_id"] for r in runs] == [odd]
    # Tags read back are checked: raysweep's own lose their control characters.
    assert runs[0]["tags"]["raysweep.method"] == "ssd\\x1b[2J\\x0a"
    assert runs[0]["tags"]["mlflow.note.content"] == "a\nb"
    assert fetch_runs(uri, "raysweep", sweep_id="s1' or '1'='1") == []
    client_filter = tag_filter({"raysweep.sweep_id": odd, "raysweep.kind": "trial"})
    assert len(client.search_runs([exp], client_filter)) == 1
    # Through the CLI, an id that cannot be expressed is one line and exit 2.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "rs"))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()  # MLflow's own log lines from creating the store above
    assert main(["leaderboard", "--sweep", "a'b\"c"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raysweep: error:") and "\n" not in err
