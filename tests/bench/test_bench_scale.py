"""``raysweep bench scale``: bad input is a usage error; a tiny real run on 1 vs 2 nodes (slow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from raysweep.cli import main


@pytest.mark.parametrize("argv", [["-m", "no-such-method"], ["--cores", "1"], ["--trials", "1"]])
def test_bad_input_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "scale", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raysweep: error:") and "Traceback" not in err


def test_cluster_env_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    from raysweep.bench.scale import _cluster_env

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with _cluster_env({"RAY_AUTH_MODE": "token", "RAY_ADDRESS": "127.0.0.1:1"}):
        assert (os.environ["RAY_AUTH_MODE"] == "token"
                and os.environ["RAY_ADDRESS"] == "127.0.0.1:1")
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and "RAY_ADDRESS" not in os.environ


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(900)
def test_scale_runs_both_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "scale.json"
    assert main(["bench", "scale", "-w", "digits-class", "--trials", "2", "--epochs", "1",
                 "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    one, two = doc["runs"]["1_node"][0], doc["runs"]["2_nodes"][0]
    assert ((one["nodes"], one["cpus_per_node"]) == (1, 2)
            and (two["nodes"], two["cpus_per_node"]) == (2, 1))
    assert one["finished"] == two["finished"] == 2
    assert doc["ratio_multi_over_single"] > 0
