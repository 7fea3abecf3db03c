"""Issue 13, security 3: a password in a URI is never printed, stored or forwarded.

One helper, :func:`raysweep._secrets.redact_uri`, is used wherever a URI is printed or
stored; these tests plant a password and look for it in ``state.json``, ``status``, error
lines, MLflow tags and a job's runtime env.
"""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from raysweep._secrets import (
    has_credentials,
    redact_uri,
    restore_credentials,
    strip_credentials,
    write_private,
)
from raysweep.cli import main
from raysweep.errors import ConfigError, UserError
from raysweep.sweep import jobs

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-Zq9"
URI = f"https://alice:{PASSWORD}@mlflow.example.org:5000/base"


@pytest.mark.parametrize("text,expected", [
    (URI, "https://alice:***@mlflow.example.org:5000/base"),
    ("postgresql://u:p%40ss@db:5432/mlflow", "postgresql://u:***@db:5432/mlflow"),
    ("http://h:5000/?token=abc&x=1", "http://h:5000/?token=***&x=1"),
    ("cannot reach http://u:pw@h:1 (refused) nor ray://head:10001",
     "cannot reach http://u:***@h:1 (refused) nor ray://head:10001"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("http://bob@h:5000", "http://bob@h:5000"),  # a user without a password stays
    ("", ""),
])
def test_redact_uri(text: str, expected: str) -> None:
    assert redact_uri(text) == expected
    assert has_credentials(text) is (text != expected)


def test_strip_credentials() -> None:
    assert strip_credentials(URI) == "https://mlflow.example.org:5000/base"
    assert strip_credentials("http://h/?password=x&a=1") == "http://h/?a=1"


def test_restore_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = redact_uri(URI)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", URI)
    assert restore_credentials(stored) == URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://other.example.org")
    with pytest.raises(UserError, match="without its password"):
        restore_credentials(stored)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    assert restore_credentials(stored) == "https://mlflow.example.org:5000/base"
    assert restore_credentials("sqlite:///x.db") == "sqlite:///x.db"


def test_write_private_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        write_private(tmp_path / "f", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600


def _sweep_with(root: Path, uri: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    from raysweep.sweep._state import SweepState
    from raysweep.sweep._trust import KEY_ENV
    from raysweep.sweep.runner import _save_state, sweeps_home
    from raysweep.sweep.space import load_sweep

    monkeypatch.setenv("RAYSWEEP_HOME", str(root / "rs"))
    monkeypatch.setenv(KEY_ENV, str(root / "cfg" / "secret"))
    sweep = sweeps_home() / "c0ffee00"
    sweep.mkdir(parents=True, mode=0o700)
    smoke = REPO / "search_spaces" / "sweeps" / "smoke.yaml"
    (sweep / "spec.json").write_text(load_sweep(smoke).model_dump_json())
    _save_state(sweep, SweepState(
        id=sweep.name, name="smoke", status="interrupted", created=1.0, workload="digits-class",
        tracking_uri=uri, experiment="raysweep", experiment_id="1", parent_run_id="p" * 32,
        address=f"ray://u:{PASSWORD}@head:10001"))
    return sweep


def test_state_json_is_redacted_and_private(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = _sweep_with(tmp_path, URI, monkeypatch)
    text = (sweep / "state.json").read_text()
    assert PASSWORD not in text and "alice:***@mlflow.example.org" in text
    assert stat.S_IMODE((sweep / "state.json").stat().st_mode) == 0o600
    assert PASSWORD not in (sweep / "trusted" / "manifest.json").read_text()


def test_status_never_prints_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", URI)
    sweep = _sweep_with(tmp_path, URI, monkeypatch)
    for argv in (["status", sweep.name], ["status", sweep.name, "--json"]):
        main(argv)
        out, err = capsys.readouterr()
        assert PASSWORD not in out + err
        assert "alice:***@" in out


def test_error_lines_never_print_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{PASSWORD}@127.0.0.1:{port}")
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "rs"))
    monkeypatch.chdir(tmp_path)
    smoke = REPO / "search_spaces" / "sweeps" / "smoke.yaml"
    assert main(["run", str(smoke)]) == 2
    err = capsys.readouterr().err
    assert PASSWORD not in err and "alice:***@127.0.0.1" in err
    assert not (tmp_path / "rs").exists()


def test_job_env_never_carries_credentials(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", URI)
    renv = jobs.runtime_env_for(None)
    assert renv["env_vars"]["MLFLOW_TRACKING_URI"] == "https://mlflow.example.org:5000/base"
    err = capsys.readouterr().err
    assert PASSWORD not in json.dumps(renv) + err and "without one" in err
    for bad in (f"MLFLOW_TRACKING_PASSWORD={PASSWORD}", f"DB=postgresql://u:{PASSWORD}@db/x",
                f"AWS_SECRET_ACCESS_KEY={PASSWORD}", f"HF_TOKEN={PASSWORD}"):
        with pytest.raises(ConfigError) as exc:
            jobs.runtime_env_for(None, [bad], warn=False)
        assert PASSWORD not in str(exc.value) and "secret" in str(exc.value)


def test_submit_dry_run_never_prints_the_password(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import raysweep

    repo = Path(raysweep.__file__).resolve().parent.parent
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", URI)
    assert main(["submit", "search_spaces/sweeps/smoke.yaml", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert json.loads(out)["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == \
        "https://mlflow.example.org:5000/base"


def test_mlflow_tags_are_redacted(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from raysweep.sweep.tracking import _batched

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(exp)
    _batched(client, run.info.run_id,
             tags={"raysweep.error": f"OSError: cannot reach {URI} (refused)"})
    tag = client.get_run(run.info.run_id).data.tags["raysweep.error"]
    assert PASSWORD not in tag and "alice:***@mlflow.example.org" in tag


def test_doctor_never_prints_the_password(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{PASSWORD}@127.0.0.1:{port}")
    for argv in (["doctor", "--no-data", "--json"], ["doctor", "--no-data"]):
        main(argv)
        out, err = capsys.readouterr()
        assert PASSWORD not in out + err and "alice:***@127.0.0.1" in out
