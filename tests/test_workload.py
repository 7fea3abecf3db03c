"""Workload preparation: splits, caching by content hash, reference metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysweep.config import WorkloadConfig
from raysweep.errors import ConfigError
from raysweep.workload import load_workload_config, prepare, workload_key


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path))
    return tmp_path


def _digits(**changes: object) -> WorkloadConfig:
    cfg = load_workload_config("digits-class")
    data = cfg.model_dump(mode="json")
    data.update(changes)
    return WorkloadConfig.model_validate(data)


def test_every_bundled_workload_parses() -> None:
    from raysweep.workload import BUNDLED_WORKLOADS

    names = [p.stem for p in BUNDLED_WORKLOADS.glob("*.yaml")]
    assert "fmnist-class" in names and "digits-class" in names
    for name in names:
        assert load_workload_config(name).name == name


def test_unknown_bundled_name_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'digits-class'"):
        load_workload_config("digit-class")


def test_key_ignores_name_but_not_recipe() -> None:
    base = _digits()
    assert workload_key(base) == workload_key(_digits(name="other"))
    assert workload_key(base) != workload_key(_digits(seed=1))
    assert workload_key(base) != workload_key(_digits(train={"epochs": 3}))


def test_prepare_caches_and_reuses(cache: Path) -> None:
    cfg = _digits()
    first = prepare(cfg, device="cpu", quiet=True)
    dirs = list((cache / "workloads").iterdir())
    assert len(dirs) == 1 and (dirs[0] / "original.pt").exists()
    mtime = (dirs[0] / "original.pt").stat().st_mtime
    second = prepare(cfg, device="cpu", quiet=True)
    assert (dirs[0] / "original.pt").stat().st_mtime == mtime  # no retraining
    for k in first.original_state:
        assert (first.original_state[k] == second.original_state[k]).all()
    # Splits: D_f is exactly class 0, D_r has none of it, val is disjoint from both.
    assert set(first.splits["forget"].tensors[1].tolist()) == {0}
    assert 0 not in set(first.splits["retain"].tensors[1].tolist())
    assert first.forget_classes == (0,)
    # A truncated outputs file (a crash mid-copy, a full disk) is rebuilt, never misread.
    npz = dirs[0] / "original_outputs.npz"
    npz.write_bytes(npz.read_bytes()[:200])
    third = prepare(cfg, device="cpu", quiet=True)
    assert len(third.original_outputs["forget"]) == len(first.original_outputs["forget"])


def test_reference_rows_show_forgetting(cache: Path) -> None:
    prepared = prepare(_digits(), device="cpu", quiet=True)
    refs = prepared.reference_metrics(catboost=False)
    orig, oracle = refs["original"], refs["retrain"]
    assert orig["forget/acc"] > 0.9
    assert oracle["forget/acc"] < 0.05          # the oracle never saw digit 0
    assert oracle["test/acc_retain_classes"] > orig["test/acc_retain_classes"] - 0.05


def test_model_dataset_kind_mismatch(cache: Path) -> None:
    cfg = _digits(model={"name": "minilm"})
    with pytest.raises(ConfigError, match="takes text input but dataset 'digits' is image"):
        prepare(cfg, device="cpu", quiet=True)
