"""``raysweep bench device``: the report's structure from a --quick CPU run (no timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysweep.bench.device import MODEL_INPUTS, project_sweep
from raysweep.cli import main


def test_quick_device_bench_measures_the_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "device.md"
    rc = main(["bench", "device", "--quick", "--models", "smallcnn,resnet18-cifar,minilm",
               "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(captured.out)
    assert report["device"] == "cpu" and report["threads"] == 1 and report["quick"]
    assert [r["model"] for r in report["models"]] == ["smallcnn", "resnet18-cifar", "minilm"]
    for r in report["models"]:
        assert r["train_per_s"] > 0 and r["eval_per_s"] > 0 and r["parameters"] > 0
    assert report["models"][2]["unit"] == "sequences"
    proj = report["projection"]
    assert proj["model"] == "resnet18-cifar" and proj["device_hours"] > 0
    page = out.read_text()
    assert "raysweep bench device --device cpu --precision fp32 --threads 1" in page
    assert "| resnet18-cifar | 3x32x32 |" in page and "device-hours" in page
    assert json.loads(out.with_suffix(".json").read_text())["models"] == report["models"]


def test_projection_follows_the_scale_formula() -> None:
    # 50,000 / 1,000 = 50 s per epoch; 60,000 / 6,000 = 10 s per evaluation
    p = project_sweep({"model": "resnet18-cifar", "train_per_s": 1000.0, "eval_per_s": 6000.0})
    assert p["t_epoch_seconds"] == 50.0 and p["t_eval_seconds"] == 10.0
    assert p["t_trial_seconds"] == pytest.approx(2.0 * 50 + 3 * 10 + 2.3)
    assert p["device_hours"] == pytest.approx(round(1980 * 132.3 / 3600, 1))


def test_every_shipped_model_has_an_input() -> None:
    from raysweep.models import list_models

    assert set(MODEL_INPUTS) == set(list_models())


@pytest.mark.parametrize("args, words", [
    (["--device", "tpu"], ["--device", "'tpu'"]),
    (["--device", "cuda:99"], ["--device", "'cuda:99'"]),
    (["--precision", "fp8"], ["--precision", "'fp8'", "fp32, bf16, fp16"]),
    (["--precision", "fp16"], ["fp16", "--device cuda"]),
    (["--models", "resnet50"], ["--models", "'resnet50'", "smallcnn"]),
    (["--models", ","], ["--models", "empty"]),
    (["-o", "dir/"], ["--output"]),
    (["--threads", "0"], ["--threads"]),
])
def test_bad_options_exit_2_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 args: list[str], words: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    rc = main(["bench", "device", *args])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raysweep: error:"), err
    for w in words:
        assert w in lines[0], lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["dir"]
    assert not any((tmp_path / "dir").iterdir())
