"""``raysweep submit`` / ``raysweep jobs`` without a cluster: addresses, dry runs, errors."""

from __future__ import annotations

import json
import socket

import pytest
from _cluster_util import REPO

from raysweep.cli import main
from raysweep.errors import ConfigError
from raysweep.sweep import jobs


def _space() -> str:
    quick = REPO / "search_spaces" / "sweeps" / "quickstart.yaml"
    if quick.is_file():
        return "search_spaces/sweeps/quickstart.yaml"
    return str(sorted((REPO / "search_spaces").rglob("*.yaml"))[0].relative_to(REPO))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the with-block ends


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("argv", [
    ["jobs", "list", "--address", "http://127.0.0.1:{port}"],
    ["jobs", "stop", "raysubmit_x", "--address", "127.0.0.1:{port}"],
    ["jobs", "logs", "raysubmit_x", "--address", "http://127.0.0.1:{port}"],
    ["submit", "{space}", "--address", "http://127.0.0.1:{port}"],
    ["jobs", "list", "--address", "ftp://head:8265"],
    ["jobs", "list", "--address", "http://head:notaport"],
    ["jobs", "list", "--address", "http://no-such-host.invalid:8265"],
    ["jobs", "list"],  # no address at all
    ["submit", "no/such/space.yaml", "--address", "http://127.0.0.1:{port}"],
    ["submit", "{outside}", "--address", "http://127.0.0.1:{port}"],  # outside the project
    ["submit", "{space}", "--set", "novalue", "--dry-run"],
    ["submit", "{space}", "--env", "1BAD=x", "--dry-run"],
])
def test_bad_input_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "space.yaml"
    outside.write_text("name: x\n")
    port = _closed_port()
    argv = [a.format(port=port, space=_space(), outside=outside) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raysweep: error: ") and "\n" not in err, err
    assert "Traceback" not in err


def test_submit_dry_run_shows_entrypoint_and_runtime_env(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org")
    assert main(["submit", _space(), "--address", "head:8265", "--set", "seed=3",
                 "--env", "FOO=bar", "--dry-run", "--", "--num-samples", "4"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["address"] == "http://head:8265"
    assert plan["entrypoint"] == (f"python -m raysweep run {_space()} --set seed=3 "
                                  f"--num-samples 4")
    renv = plan["runtime_env"]
    assert renv["working_dir"] == str(REPO)
    for pattern in (".git", "mlflow.db", "mlruns", "__pycache__", ".pytest_cache"):
        assert pattern in renv["excludes"]
    assert renv["env_vars"]["FOO"] == "bar"
    assert renv["env_vars"]["MLFLOW_TRACKING_URI"] == "https://mlflow.example.org"


def test_local_tracking_uri_is_not_forwarded(capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    assert main(["submit", _space(), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "MLFLOW_TRACKING_URI" not in json.loads(captured.out)["runtime_env"]["env_vars"]
    assert "not forwarded" in captured.err


def test_secrets_are_never_forwarded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "f" * 64)
    renv = jobs.runtime_env_for(REPO, warn=False)
    assert "hunter2" not in json.dumps(renv) and "f" * 64 not in json.dumps(renv)


@pytest.mark.parametrize("raw,url", [
    ("head:8265", "http://head:8265"),
    ("http://10.0.0.1:8265/", "http://10.0.0.1:8265"),
    ("https://ray.example.org", "https://ray.example.org"),
])
def test_normalize_address(raw: str, url: str) -> None:
    assert jobs.normalize_address(raw) == url


def test_address_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a GCS address: not for the Jobs API
    with pytest.raises(ConfigError):
        jobs.normalize_address(None)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.1:8265")
    assert jobs.normalize_address(None) == "http://10.0.0.1:8265"


@pytest.mark.parametrize("status,driver,code", [
    ("SUCCEEDED", 0, 0), ("FAILED", 2, 2), ("FAILED", 3, 3), ("FAILED", None, 1),
    ("STOPPED", None, 130),
])
def test_exit_code_follows_the_job(status: str, driver: int | None, code: int) -> None:
    summary = jobs.JobSummary(job_id="j", status=status, entrypoint="x", driver_exit_code=driver)
    assert jobs.exit_code(summary) == code
