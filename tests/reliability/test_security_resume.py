"""Issue 13, security 1, end to end (slow: a real sweep on local Ray).

A finished two-trial sweep is marked interrupted, a hostile ``tuner.pkl`` is planted, and the
real ``raysweep resume`` is run: the pickle never runs and the sweep completes from the signed
copy. Then its ``state.json`` is pointed at another MLflow store: resume refuses with one
line and writes nothing.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from raysweep.cli import main

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "search_spaces" / "sweeps" / "smoke.yaml"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_resume_never_runs_a_planted_pickle(private_env: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = private_env
    monkeypatch.setenv("RAYSWEEP_KEY_FILE", str(root / "cfg" / "secret"))
    assert main(["run", str(SMOKE), "--num-samples", "2", "--json"]) == 0
    sweep_id = json.loads(capsys.readouterr().out)["sweep_id"]
    sweep = root / "home" / "sweeps" / sweep_id
    state_path = sweep / "state.json"
    state = json.loads(state_path.read_text())
    state["status"] = "interrupted"  # not a signed field: resume may continue it
    state_path.write_text(json.dumps(state))
    marker = root / "PWNED"
    (sweep / "ray" / "tune" / "tuner.pkl").write_bytes(pickle.dumps(_Evil(marker)))

    assert main(["resume", sweep_id, "--json"]) == 0
    out, err = capsys.readouterr()
    assert not marker.exists()
    assert json.loads(out)["status"] == "finished"
    assert "tuner.pkl differs from the copy raysweep signed" in " ".join(err.split())
    assert list(sweep.glob("unverified-*/tuner.pkl"))

    state = json.loads(state_path.read_text())
    state.update(status="interrupted", tracking_uri=f"sqlite:///{root / 'other.db'}")
    state_path.write_text(json.dumps(state))
    assert main(["resume", sweep_id]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raysweep: error:") and "\n" not in err and "tracking_uri" in err
    assert not (root / "other.db").exists()
