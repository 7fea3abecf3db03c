"""Paper-faithful defaults: a suite's ``paper_defaults`` are what its ``default`` rows run, each
value with its source, checked before anything trains. Fast: nothing trains."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from raysweep.bench import load_suite
from raysweep.bench.paper import paper_defaults_markdown
from raysweep.bench.suite import BUNDLED_SUITES
from raysweep.cli import main
from raysweep.errors import ConfigError

PAPER_SUITES = sorted(BUNDLED_SUITES.glob("paper-*.yaml"))


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path / "cache"))


def _default(suite, workload: str, method: str):
    return next(e for e in suite.entries if e.id == f"{workload}/{method}")


def test_paper_000_default_rows_run_the_papers_values() -> None:
    s = load_suite("paper-000")
    # The mismatches the reviewer found (issue 17): Bad Teaching lr 0.1 (ResNet) / 2e-4 (ViT),
    # SCRUB 1e-4 for 4 epochs, SSD alpha 15, UNSIR on text at lr 1e-4.
    assert _default(s, "fmnist-class-conv", "bad-teaching").config == {"epochs": 1, "lr": 0.1}
    assert _default(s, "fmnist-class-vit", "bad-teaching").config["lr"] == pytest.approx(2e-4)
    scrub = _default(s, "fmnist-class-conv", "scrub").config
    assert scrub["lr"] == pytest.approx(1e-4) and scrub["epochs"] == 4
    assert _default(s, "fmnist-class-conv", "ssd").config["selection_weighting"] == 15
    assert _default(s, "fmnist-class-vit", "ssd").config["selection_weighting"] == 25
    # the text workload runs at --scale medium (small keeps the image workloads)
    unsir_text = _default(load_suite("paper-000", scale="medium"), "rt-class-minilm-small",
                          "unsir").config
    assert (unsir_text["impair_lr"] == pytest.approx(1e-4)
            and unsir_text["repair_lr"] == pytest.approx(1e-4))
    assert _default(s, "fmnist-class-conv", "unsir").config == {}     # the paper states none
    src = _default(s, "fmnist-class-conv", "bad-teaching").sources
    assert set(src) == {"epochs", "lr"} and src["lr"].startswith("paper 000, Section 4.1")


def test_paper_scale_models_get_their_own_values() -> None:
    s = load_suite("paper-000", scale="paper")
    conv = next(e for e in s.entries if e.method == "bad-teaching" and e.config_kind == "default"
                and e.workload.model.name == "resnet18-cifar")
    vit = next(e for e in s.entries if e.method == "bad-teaching" and e.config_kind == "default"
               and e.workload.model.name == "vit-tiny")
    assert conv.config["lr"] == 0.1 and vit.config["lr"] == pytest.approx(2e-4)


def test_tuned_rows_search_and_pinned_values_win(tmp_path: Path) -> None:
    tuned = [e for e in load_suite("paper-000").entries if e.config_kind == "tuned"]
    assert tuned and all(e.config == {} and e.sources == {} for e in tuned)
    path = tmp_path / "pinned.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "pinned", "seeds": [0],
        "paper_defaults": [{"method": "finetune", "values": {"lr": 0.01, "epochs": 2},
                            "source": "paper 004, Results"}],
        "entries": [{"workload": "digits-class", "method": "finetune", "config": {"lr": 0.003}}]}))
    pinned = load_suite(path).entries[0]
    assert pinned.config_kind == "pinned"
    assert pinned.config == {"lr": 0.003, "epochs": 2}        # the rest of the paper's still apply
    assert pinned.sources == {"epochs": "paper 004, Results"}


@pytest.mark.parametrize("path", PAPER_SUITES, ids=lambda p: p.stem)
def test_every_source_names_its_own_paper(path: Path) -> None:
    number = path.stem.split("-")[1]
    raw = yaml.safe_load(path.read_text())
    for item in raw.get("paper_defaults") or []:
        assert re.match(rf"^paper {number}, ", item["source"]), item
    s = load_suite(path)
    for e in s.entries:
        if e.config_kind == "default":
            assert set(e.sources) == set(e.config), e.id   # every paper value has its source


def test_report_lists_each_value_with_its_source() -> None:
    text = paper_defaults_markdown(load_suite("paper-000"))
    line = next(x for x in text.splitlines() if x.startswith("| bad-teaching | `smallcnn` | lr"))
    assert "`0.1`" in line and "`0.0001`" in line and "paper 000, Section 4.1" in line
    assert paper_defaults_markdown(load_suite("paper-001")) == ""      # the paper states none


# --------------------------------------------------------------------------------- bad inputs

_BASE = {"schema_version": 1, "name": "pd", "seeds": [0],
         "entries": [{"workload": "digits-class", "method": ["finetune", "bad-teaching"]}]}
_GOOD = {"method": "finetune", "values": {"lr": 0.01}, "source": "paper 004, Results"}


def _write(tmp_path: Path, items: list) -> Path:
    p = tmp_path / "pd.yaml"
    p.write_text(yaml.safe_dump({**_BASE, "paper_defaults": items}, sort_keys=False))
    return p


@pytest.mark.parametrize("items, needle", [
    ([{**_GOOD, "method": "finetun"}], "paper_defaults[0].method"),
    ([{**_GOOD, "method": "scrub"}], "not run by any entry"),
    ([{**_GOOD, "models": ["mlpp"]}], "unknown model 'mlpp'"),
    ([{**_GOOD, "models": []}], "paper_defaults.0.models"),
    ([{**_GOOD, "values": {"lrr": 0.01}}], "unknown parameter 'lrr'"),
    ([{**_GOOD, "values": {"lr": True}}], "values.lr"),
    ([{**_GOOD, "values": {"lr": -1}}], "lr"),
    ([{**_GOOD, "values": {"epochs": ".nan"}}], "epochs"),
    ([{**_GOOD, "values": {}}], "values"),
    ([{k: v for k, v in _GOOD.items() if k != "source"}], "source"),
    ([{**_GOOD, "source": "Table 5"}], "must name the paper"),
    ([{**_GOOD, "source": "paper 4, Table 5"}], "must name the paper"),
    ([{**_GOOD, "colour": 1}], "colour"),
    ([_GOOD, {**_GOOD, "values": {"lr": 0.02}, "models": ["mlp"]}], "already set for model mlp"),
])
def test_bad_paper_defaults_are_one_line_errors(tmp_path: Path, items: list, needle: str) -> None:
    path = _write(tmp_path, items)
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and str(path) in msg


def test_a_budget_below_the_papers_epochs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump({
        **_BASE, "entries": [{"workload": "digits-class", "method": "finetune", "max_epochs": 2}],
        "paper_defaults": [{**_GOOD, "values": {"epochs": 4}}]}))
    with pytest.raises(ConfigError, match=r"entries\[0\].max_epochs: 2 is below the paper's "
                                          r"finetune epochs 4 \(paper 004, Results\)"):
        load_suite(path)


def test_bench_paper_with_a_bad_paper_default_exits_2_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [{**_GOOD, "values": {"lr": "fast"}}])
    monkeypatch.chdir(tmp_path)
    rc = main(["bench", "paper", str(path), "--results", "results"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("raysweep: error:")
    assert "paper_defaults[0].values" in err[0] and "lr" in err[0]
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlruns").exists()


def test_the_bench_report_shows_each_paper_value_with_its_source(tmp_path: Path) -> None:
    from raysweep.bench.report import ReportData, write_report

    path = tmp_path / "src.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "src", "seeds": [0],
        "paper_defaults": [{"method": "finetune", "values": {"lr": 0.01},
                            "source": "paper 004, Results"}],
        "entries": [{"workload": "digits-class", "method": ["finetune", "retrain"]}]}))
    suite = load_suite(path)
    data = ReportData(suite=suite, status="baseline", summary={}, comparisons=[], baseline={},
                      baseline_label="none", references={}, meta={},
                      configs={"digits-class/finetune": {"lr": 0.01}, "digits-class/retrain": {}})
    md = write_report(data, tmp_path / "rep")["report.md"].read_text()
    assert "| entry | config | paper values (source) |" in md
    assert '| digits-class/finetune | {"lr": 0.01} | lr: paper 004, Results |' in md
