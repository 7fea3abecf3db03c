"""W&B sweep spellings: exact ones are translated, the others exit 2 naming raysweep's key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from raysweep.cli import main

BASE = {"schema_version": 1, "workload": "digits-class",
        "methods": {"ssd": {"parameters": {
            "selection_weighting": {"distribution": "loguniform", "min": 1, "max": 100}}}},
        "search": {"num_samples": 4}}


def _write(tmp_path: Path, **changes: object) -> Path:
    doc = json.loads(json.dumps(BASE))
    doc.update(changes)
    path = tmp_path / "wb.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _plan(capsys: pytest.CaptureFixture[str], path: Path) -> dict:
    assert main(["run", str(path), "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["spec"]


def test_exact_wandb_spellings_are_translated(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, method="bayes", metric={"name": "composite", "goal": "minimize"},
                  methods={"ssd": {"parameters": {
                      "selection_weighting": {"distribution": "log_uniform_values",
                                              "min": 1, "max": 100},
                      "dampening_constant": {"distribution": "q_uniform",
                                             "min": 0.1, "max": 5, "q": 0.1}}}})
    spec = _plan(capsys, path)
    assert spec["search"]["algorithm"] == "tpe"
    assert spec["objectives"][0]["metric"] == "composite"
    params = spec["methods"]["ssd"]["parameters"]
    assert params["selection_weighting"]["distribution"] == "loguniform"
    assert params["dampening_constant"]["distribution"] == "uniform"
    assert params["dampening_constant"]["step"] == pytest.approx(0.1)


@pytest.mark.parametrize("changes, says", [
    ({"methods": {"ssd": {"parameters": {"selection_weighting": {
        "distribution": "log_uniform", "min": -5, "max": 0}}}}}, "loguniform"),
    ({"early_terminate": {"type": "hyperband", "min_iter": 1}}, "grace_period"),
    ({"run_cap": 10}, "search.num_samples"),
    ({"program": "train.py"}, "methods:"),
    ({"metric": {"name": "composite"}, "objectives": [{"metric": "composite"}]}, "objectives:"),
    ({"method": "bayes", "search": {"algorithm": "random"}}, "search.algorithm"),
    ({"methods": {"ssd": {"parameters": {"selection_weighting": {
        "distribution": "normal", "mu": 1, "sigma": 1}}}}}, "uniform"),
])
def test_wandb_keys_without_exact_meaning_exit_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 changes: dict, says: str) -> None:
    path = _write(tmp_path, **changes)
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert out == "" and len(lines) == 1 and lines[0].startswith("raysweep: error:")
    assert str(path) in lines[0] and says in lines[0]


def test_sweep_tags_and_description_go_to_the_parent_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raysweep.sweep._state import SweepState
    from raysweep.sweep.runner import parent_run_tags
    from raysweep.sweep.space import parse_sweep

    spec = parse_sweep({**BASE, "description": "ablation of SSD", "tags": {"team": "vision"}})
    tags = parent_run_tags(spec, SweepState(id="s1", git_sha="abc123"))
    assert tags["mlflow.note.content"] == "ablation of SSD" and tags["team"] == "vision"
    assert tags["mlflow.source.git.commit"] == "abc123" and tags["mlflow.source.type"] == "LOCAL"
    path = _write(tmp_path, tags={"raysweep.method": "x"})
    assert main(["validate", str(path)]) == 2
    assert "reserved" in capsys.readouterr().err
