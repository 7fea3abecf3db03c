"""``raysweep plot`` on a stored study: per-method colours and a robust y-range in history,
importance/parallel per method (an error naming the methods when the sweep has several)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raysweep.cli import main
from raysweep.sweep.plots import robust_range
from raysweep.sweep.space import SEARCH_SPACES, load_sweep


@pytest.fixture()
def sweep_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "home" / "sweeps" / "plot1234"
    d.mkdir(parents=True)
    spec = load_sweep(SEARCH_SPACES / "sweeps" / "smoke.yaml")
    (d / "spec.json").write_text(spec.model_dump_json())
    (d / "state.json").write_text(json.dumps({"id": "plot1234", "status": "finished",
                                              "created": 1.0}))
    study = optuna.create_study(study_name="raysweep", storage=JournalStorage(
        JournalFileBackend(str(d / "optuna.journal"))))
    method = CategoricalDistribution(["finetune", "ssd"])
    values = [0.5, 0.4, 0.45, 0.3, 0.35, 0.32, 1000.0]  # one diverged configuration
    for i, v in enumerate(values):
        m = "ssd" if i % 2 else "finetune"
        params = {"method": m}
        dists: dict = {"method": method}
        if m == "ssd":
            params.update({"ssd/selection_weighting": 1.0 + i,
                           "ssd/dampening_constant": 0.5 + i / 10})
            dists.update({"ssd/selection_weighting": FloatDistribution(1, 100, log=True),
                          "ssd/dampening_constant": FloatDistribution(0.5, 2)})
        else:
            params["finetune/lr"] = 10 ** -(1 + i / 4)
            dists["finetune/lr"] = FloatDistribution(1e-3, 1e-1, log=True)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=v))
    return d


def test_history_colours_methods_and_ignores_an_outlier(
        sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = sweep_dir.parent / "h.html"
    assert main(["plot", "plot1234", "--kind", "history", "-o", str(out)]) == 0
    html = out.read_text()
    assert '"name":"finetune"' in html and '"name":"ssd"' in html
    assert "1 point(s) off the range shown" in html
    low, high = robust_range([0.5, 0.4, 0.45, 0.3, 0.35, 0.32, 1000.0], 0.3)
    assert high < 1000.0 and low < 0.3
    assert main(["plot", "plot1234", "--kind", "history",
                 "-o", str(sweep_dir.parent / "h.png")]) == 0


def test_importance_and_parallel_are_per_method(sweep_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["plot", "plot1234", "--kind", "importance", "-o", "i.html"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"--method \(finetune, ssd\)", err)
    assert main(["plot", "plot1234", "--kind", "importance", "-o", "i.html",
                 "--method", "ssd"]) == 0
    html = Path("i.html").read_text()
    assert "selection_weighting" in html and "ssd/" not in html
    assert main(["plot", "plot1234", "--kind", "parallel", "-o", "p.png", "--method", "ssd"]) == 0
    assert main(["plot", "plot1234", "--kind", "parallel", "-o", "p.png", "--method", "sdd"]) == 2
    assert "valid: finetune, ssd" in capsys.readouterr().err
