"""Issue 13, security 1: ``raysweep resume`` never unpickles what someone else wrote.

The sweep directories here are built by the runner's own ``_save_state`` (which redacts,
writes 0600 and signs) and a stand-in for Tune's snapshot (``tuner.pkl``, an experiment
state, a searcher pickle); no Ray is started. Hostile pickles would create a marker file if
anything loaded them.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest

import raysweep
from raysweep.cli import main
from raysweep.errors import UserError
from raysweep.sweep import _trust
from raysweep.sweep._trust import check_private, ensure_key, sign_sweep_dir, verify_sweep_dir

SMOKE = Path(raysweep.__file__).resolve().parent.parent / "search_spaces" / "sweeps" / "smoke.yaml"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "rs"))
    monkeypatch.setenv(_trust.KEY_ENV, str(tmp_path / "cfg" / "secret"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def _make_sweep(root: Path, sweep_id: str = "abcd1234", **state_extra: object) -> Path:
    """A sweep directory as run_sweep leaves it after Tune's first snapshot."""
    from raysweep.sweep._state import SweepState
    from raysweep.sweep.runner import _save_state, sweeps_home
    from raysweep.sweep.space import load_sweep

    sweep = sweeps_home() / sweep_id
    sweep.mkdir(parents=True, mode=0o700)
    tune = sweep / "ray" / "tune"
    tune.mkdir(parents=True)
    (sweep / "spec.json").write_text(load_sweep(SMOKE).model_dump_json())
    (tune / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (tune / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": [], "runner_data": {}}))
    (tune / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    state = {"id": sweep_id, "status": "interrupted", "created": 1.0,
             "tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "raysweep",
             "address": None, "experiment_id": "1", "parent_run_id": "p" * 32,
             "workload_key": "k", **state_extra}
    _save_state(sweep, SweepState.model_validate(state))
    return sweep


def _notes() -> tuple[list[str], object]:
    out: list[str] = []
    return out, out.append


def test_own_signed_directory_verifies_unchanged(home: Path) -> None:
    sweep = _make_sweep(home)
    before = {p.name: p.read_bytes() for p in (sweep / "ray" / "tune").iterdir()}
    notes, say = _notes()
    assert verify_sweep_dir(sweep, say=say) == []
    assert notes == []
    assert {p.name: p.read_bytes() for p in (sweep / "ray" / "tune").iterdir()} == before
    assert stat.S_IMODE(sweep.stat().st_mode) == 0o700
    assert stat.S_IMODE((sweep / "state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(_trust.key_path().stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["tuner.pkl", "searcher-state-2026-01-01_00-00-00.pkl"])
def test_a_planted_pickle_is_never_loaded(home: Path, name: str) -> None:
    sweep = _make_sweep(home)
    tune = sweep / "ray" / "tune"
    good = (tune / name).read_bytes()
    marker = home / "PWNED"
    (tune / name).write_bytes(pickle.dumps(_Evil(marker)))
    # A newer experiment state that nobody signed: Tune would read it first.
    (tune / "experiment_state-2099-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": [], "runner_data": {}}))
    notes, say = _notes()
    verify_sweep_dir(sweep, say=say)
    assert (tune / name).read_bytes() == good  # the signed copy is back
    assert not (tune / "experiment_state-2099-01-01_00-00-00.json").exists()
    assert not marker.exists()
    assert any(name in n and "signed copy" in n for n in notes), notes
    aside = list(sweep.glob("unverified-*/*"))
    assert {p.name for p in aside} == {name, "experiment_state-2099-01-01_00-00-00.json"}


def test_a_forged_manifest_is_refused(home: Path) -> None:
    sweep = _make_sweep(home)
    manifest = sweep / "trusted" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["state"]["tracking_uri"] = "http://attacker.example:5000"
    manifest.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="signature does not match"):
        verify_sweep_dir(sweep)


@pytest.mark.parametrize("field,value", [
    ("tracking_uri", "http://attacker.example:5000"),
    ("address", "ray://attacker.example:10001"),
    ("parent_run_id", "0" * 32),
    ("experiment", "other"),
])
def test_state_json_cannot_redirect_resume(home: Path, field: str, value: str) -> None:
    sweep = _make_sweep(home)
    path = sweep / "state.json"
    state = json.loads(path.read_text())
    state[field] = value
    path.write_text(json.dumps(state))
    path.chmod(0o600)
    with pytest.raises(UserError) as err:
        verify_sweep_dir(sweep)
    msg = str(err.value)
    assert f"field {field}" in msg and value in msg and "--trust" in msg and "\n" not in msg
    # --trust accepts it, says so, and signs it: the next check passes silently.
    notes, say = _notes()
    verify_sweep_dir(sweep, trust=True, say=say)
    assert any(field in n and value in n for n in notes), notes
    assert verify_sweep_dir(sweep, say=lambda _: None) == []


def test_unsigned_directory_needs_trust(home: Path) -> None:
    sweep = _make_sweep(home)
    import shutil

    shutil.rmtree(sweep / "trusted")
    with pytest.raises(UserError, match="--trust"):
        verify_sweep_dir(sweep)
    verify_sweep_dir(sweep, trust=True, say=lambda _: None)
    assert verify_sweep_dir(sweep, say=lambda _: None) == []


def test_another_users_key_is_not_yours(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = _make_sweep(home)
    monkeypatch.setenv(_trust.KEY_ENV, str(home / "other" / "secret"))
    with pytest.raises(UserError, match="does not exist"):
        verify_sweep_dir(sweep)
    ensure_key()  # a different key now exists: the signature no longer matches
    with pytest.raises(UserError, match="signature does not match"):
        verify_sweep_dir(sweep)


@pytest.mark.parametrize("target", [".", "state.json", "ray/tune", "trusted/manifest.json"])
def test_group_or_world_writable_is_refused(home: Path, target: str) -> None:
    sweep = _make_sweep(home)
    path = sweep / target
    path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o002)
    with pytest.raises(UserError, match="writable") as err:
        verify_sweep_dir(sweep)
    assert "chmod go-w" in str(err.value)


def test_someone_elses_directory_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = _make_sweep(home)
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 4242)
    with pytest.raises(UserError, match="not you"):
        check_private(sweep)


def test_a_symlinked_file_is_refused(home: Path) -> None:
    sweep = _make_sweep(home)
    state = sweep / "state.json"
    real = home / "elsewhere.json"
    real.write_text(state.read_text())
    state.unlink()
    state.symlink_to(real)
    with pytest.raises(UserError, match="symbolic link"):
        verify_sweep_dir(sweep)


def test_a_readable_key_is_refused(home: Path) -> None:
    ensure_key()
    _trust.key_path().chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        ensure_key()


def test_torn_snapshot_files_keep_their_last_signed_version(home: Path) -> None:
    sweep = _make_sweep(home)
    tune = sweep / "ray" / "tune"
    good = (tune / "tuner.pkl").read_bytes()
    (tune / "tuner.pkl").write_bytes(good[: len(good) // 2])  # a copy cut short
    sign_sweep_dir(sweep)  # a save point while the file is torn: the old signature stays
    verify_sweep_dir(sweep, say=lambda _: None)
    assert (tune / "tuner.pkl").read_bytes() == good


def test_resume_cli_refuses_a_redirected_store_with_one_line(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _make_sweep(home)
    path = sweep / "state.json"
    state = json.loads(path.read_text())
    state["tracking_uri"] = f"sqlite:///{home / 'other.db'}"
    path.write_text(json.dumps(state))
    path.chmod(0o600)
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    assert main(["resume", sweep.name]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raysweep: error:") and "\n" not in err, err
    assert "tracking_uri" in err and "--trust" in err
    assert not (home / "other.db").exists() and not (home / "mlflow.db").exists()
    after = sorted(p.relative_to(home) for p in home.rglob("*")
                   if not p.name.startswith(".driver.lock"))
    assert [p for p in after if p not in before] == []


def test_a_sweep_path_outside_the_home_must_be_private(
        home: Path, tmp_path_factory: pytest.TempPathFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _make_sweep(home)
    elsewhere = tmp_path_factory.mktemp("shared") / sweep.name
    sweep.rename(elsewhere)
    elsewhere.chmod(0o777)
    assert main(["resume", str(elsewhere)]) == 2
    err = capsys.readouterr().err.strip()
    assert "writable" in err and str(elsewhere) in err and "\n" not in err


def test_a_crash_mid_upload_resumes_from_tunes_newest_snapshot(home: Path) -> None:
    # Tune writes its snapshot to a driver-side staging folder, then uploads it to ray/tune in
    # the background; the signer signs the staging copy, so the signature is never older.
    sweep = _make_sweep(home)
    tune = sweep / "ray" / "tune"
    staging = home / "staging"
    staging.mkdir()
    newest = json.dumps({"trial_data": [["newest", {}]], "runner_data": {}})
    (staging / "experiment_state-2026-01-01_00-00-00.json").write_text(newest)
    sign_sweep_dir(sweep, staging=staging)
    # The driver died before the upload: ray/tune still holds the older version.
    assert (tune / "experiment_state-2026-01-01_00-00-00.json").read_text() != newest
    verify_sweep_dir(sweep, say=lambda _: None)
    assert (tune / "experiment_state-2026-01-01_00-00-00.json").read_text() == newest
    assert (tune / "tuner.pkl").is_file()  # files only in ray/tune stay signed too
