"""The typed sweep state (``state.json``): what sweeps written before it read as, and what the
driver writes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysweep.errors import UserError
from raysweep.sweep._state import STATE_SCHEMA_VERSION, SweepState

# A state.json as the driver wrote it before the model existed (no schema_version; the Ray
# address recorded as null; a key this version does not know).
TODAY = {
    "id": "0a1b2c3d", "name": "quickstart", "status": "interrupted", "created": 1764500000.5,
    "workload": "fmnist-class-small", "tracking_uri": "sqlite:////tmp/mlflow.db",
    "experiment": "raysweep", "git_sha": "abc1234", "pid": 4242, "address": None, "trials": 10,
    "updated": 1764500100.0, "experiment_id": "1", "parent_run_id": "f" * 32,
    "workload_name": "fmnist-class-small", "workload_key": "k" * 16,
    "tags": {"raysweep.workload": "fmnist-class-small"}, "max_concurrent": 2,
    "finished": 1764500200.0, "message": "interrupted; continue with: raysweep resume 0a1b2c3d",
    "from_a_newer_minor": {"kept": True},
}


def _write(tmp_path: Path, data: object) -> Path:
    (tmp_path / "state.json").write_text(json.dumps(data))
    return tmp_path


def test_a_state_written_before_the_model_reads_and_round_trips(tmp_path: Path) -> None:
    state = SweepState.read(_write(tmp_path, TODAY))
    assert state.schema_version == STATE_SCHEMA_VERSION
    assert state.status == "interrupted" and state.pid == 4242 and state.address is None
    out = state.to_json()
    # Everything that was there comes back unchanged (an unknown key included); only the
    # version is added, and no null is written where nothing was recorded.
    assert {k: v for k, v in out.items() if k != "schema_version"} == \
        {k: v for k, v in TODAY.items() if v is not None}
    assert out["schema_version"] == STATE_SCHEMA_VERSION


def test_assignment_is_validated_and_the_tracker_is_never_written() -> None:
    state = SweepState(id="s1")
    state._tracker = object()
    state.update(status="running", pid=7, resumed=1)
    assert state.to_json() == {"schema_version": 1, "id": "s1", "status": "running", "pid": 7,
                               "resumed": 1}
    with pytest.raises(ValueError):
        state.status = "exploded"  # type: ignore[assignment]


@pytest.mark.parametrize("data, fragment", [
    ({"id": "s1", "schema_version": 2}, "schema_version 2"),
    ({"id": "s1", "trials": "ten"}, "trials"),
    ({"id": "s1", "tags": ["a"]}, "tags"),
    ({"name": "no id"}, "no 'id'"),
], ids=["newer", "mistyped-count", "mistyped-tags", "no-id"])
def test_a_foreign_state_is_one_line(tmp_path: Path, data: dict, fragment: str) -> None:
    with pytest.raises(UserError) as info:
        SweepState.read(_write(tmp_path, data))
    text = str(info.value)
    assert "\n" not in text and "state.json" in text and fragment in text, text
    assert "validation error" not in text


def test_the_driver_writes_what_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from raysweep.sweep.runner import _save_state, load_state

    monkeypatch.setenv("RAYSWEEP_KEY_FILE", str(tmp_path / "key" / "secret"))
    sweep = tmp_path / "s1"
    sweep.mkdir(mode=0o700)
    state = SweepState(id="s1", status="preparing", created=1.0, extended=[3])
    _save_state(sweep, state)
    again = load_state(sweep)
    assert again.id == "s1" and again.status == "preparing" and again.extended == [3]
    assert again.updated is not None and again.updated >= 1.0
