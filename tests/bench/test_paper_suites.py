"""The paper-reproduction suites (search_spaces/suites/paper-*.yaml), suite scales, and the
default-vs-tuned report. Fast: nothing trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from raysweep.bench import load_suite
from raysweep.bench.baseline import aggregate, summary_to_json
from raysweep.bench.paper import paper_rows, paper_tables_markdown, write_paper_report
from raysweep.bench.suite import BUNDLED_SUITES
from raysweep.errors import ConfigError

PAPER_SUITES = sorted(BUNDLED_SUITES.glob("paper-*.yaml"))
EXPECTED_METHODS = {
    "paper-000": {"ssd", "bad-teaching", "scrub", "unsir", "amnesiac", "retrain"},
    "paper-001": {"neuron-masking", "bad-teaching", "retrain"},
    "paper-001-lm": {"grad-ascent", "grad-diff", "kl-grad-diff", "npo", "simnpo",
                     "replace-answer"},
    "paper-004": {"finetune", "neggrad+", "cf-k", "eu-k", "bad-teaching", "scrub", "sftc",
                  "retrain"},
    "paper-003": {"unsir", "usifr", "dnf"},
    "paper-002": {"divergence", "gradient-mask", "deviation", "pruning", "pseudo-label",
                  "distillation", "rotate"},
}


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Scales that patch a workload write the patched YAML under $RAYSWEEP_CACHE/bench-workloads.
    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path / "cache"))


def test_the_paper_suites_exist() -> None:
    assert {p.stem for p in PAPER_SUITES} == set(EXPECTED_METHODS)


@pytest.mark.parametrize("path", PAPER_SUITES, ids=lambda p: p.stem)
@pytest.mark.parametrize("scale", [None, "small", "quick", "paper"])
def test_paper_suite_validates_with_default_and_tuned_per_method(path: Path,
                                                                 scale: str | None) -> None:
    suite = load_suite(path, scale=scale)
    assert suite.scale == (scale or "small")
    assert suite.name == (path.stem if scale in (None, "small") else f"{path.stem}-{scale}")
    workloads = {e.workload.name for e in suite.entries}
    for wname in workloads:
        on_w = [e for e in suite.entries if e.workload.name == wname]
        assert {e.method for e in on_w} == EXPECTED_METHODS[path.stem], wname
        for method in EXPECTED_METHODS[path.stem]:
            kinds = {e.config_kind: e for e in on_w if e.method == method}
            if method == "retrain":  # the oracle runs at its defaults; tuning it measures nothing
                assert set(kinds) == {"default"}, (wname, method)
                continue
            assert set(kinds) == {"default", "tuned"}, (wname, method)
            default, tuned = kinds["default"], kinds["tuned"]
            # the same epoch budget: the entry's max_epochs and the tuning sweep's budget
            assert default.max_epochs is not None
            assert tuned.max_epochs == default.max_epochs
            assert (tuned.tune is not None
                    and tuned.tune.budget == {"max_epochs": default.max_epochs})
            assert default.seeds == tuned.seeds and len(default.seeds) >= 2
    assert suite.report_metrics()


def test_every_paper_workload_parses() -> None:
    from raysweep.workload import load_workload_config

    refs = set()
    for path in PAPER_SUITES:
        for e in yaml.safe_load(path.read_text())["entries"]:
            refs.add(e["workload"])
    for ref in sorted(refs):
        cfg = load_workload_config(ref)
        assert cfg.name == ref


def test_paper_scale_overrides_apply() -> None:
    small = load_suite("paper-000")
    paper = load_suite("paper-000", scale="paper")
    quick = load_suite("paper-000", scale="quick")
    assert small.scale == "small" and small.entries[0].workload.model.name == "smallcnn"
    assert {e.seeds for e in paper.entries} == {(0, 1, 2, 3, 4)}
    assert {e.tune.num_samples for e in paper.entries if e.tune} == {30}
    conv = next(e for e in paper.entries if e.workload.name == "fmnist-class-conv")
    assert conv.workload.model.name == "resnet18-cifar"
    assert conv.workload.dataset.train_size is None and conv.workload.dataset.image_size == 32
    assert Path(conv.workload_ref).is_file()        # tuning sweeps load the patched workload
    vit = next(e for e in paper.entries if e.workload.name == "fmnist-class-vit")
    assert vit.workload.model.name == "vit-tiny"
    assert {e.workload.name for e in quick.entries} == {"fmnist-class-conv",
                                                         "fmnist-random25-conv"}
    assert {e.seeds for e in quick.entries} == {(0, 1)}
    # the scenario of a patched workload is replaced, not merged (selector params differ)
    p002 = load_suite("paper-002", scale="paper")
    red = next(e for e in p002.entries if e.workload.scenario.kind == "targeted")
    assert red.workload.scenario.selector == "channel_dominance"
    assert red.workload.scenario.params == {"channel": 0, "count": 525}
    assert red.workload.dataset.name == "cifar10"


def _write(tmp: Path, data: dict) -> Path:
    path = tmp / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _scaled_suite(**scales: dict) -> dict:
    return {"schema_version": 1, "name": "sc", "seeds": [0, 1],
            "tolerances": {"forget/acc": {"direction": "lower_is_better", "abs": 0.05}},
            "entries": [{"workload": "digits-class", "method": "finetune"},
                        {"workload": "digits-class", "method": "ssd", "config": "tuned",
                         "tune": {"num_samples": 4, "budget": {"max_epochs": 2}}},
                        {"workload": "fmnist-class-small", "method": "finetune"}],
            "scales": scales}


def test_scale_fields(tmp_path: Path) -> None:
    path = _write(tmp_path, _scaled_suite(
        small={},
        big={"seeds": [3, 4, 5], "tune": {"num_samples": 9},
             "workloads": {"digits-class": {"train": {"epochs": 7}}},
             "only": ["digits-class"],
             "set": ["entries.finetune.config.epochs=2"]}))
    small = load_suite(path)
    assert small.scale == "small" and small.name == "sc" and len(small.entries) == 3
    big = load_suite(path, scale="big", overrides=["entries.finetune.config.lr=0.5"])
    assert big.name == "sc-big" and big.scale == "big"
    assert [e.workload.name for e in big.entries] == ["digits-class", "digits-class"]
    assert all(e.seeds == (3, 4, 5) for e in big.entries)
    ft = next(e for e in big.entries if e.method == "finetune")
    assert ft.config == {"epochs": 2, "lr": 0.5}          # scale's --set, then the user's
    tuned = next(e for e in big.entries if e.config_kind == "tuned")
    assert tuned.tune.num_samples == 9 and tuned.tune.budget == {"max_epochs": 2}
    assert ft.workload.train.epochs == 7
    assert Path(ft.workload_ref).is_file()
    assert yaml.safe_load(Path(ft.workload_ref).read_text())["train"]["epochs"] == 7


def test_suite_without_scales_is_unchanged(tmp_path: Path) -> None:
    data = _scaled_suite()
    del data["scales"]
    s = load_suite(_write(tmp_path, data))
    assert s.scale is None and s.name == "sc"
    with pytest.raises(ConfigError, match="defines no scales"):
        load_suite(_write(tmp_path, data), scale="paper")


@pytest.mark.parametrize("scales, match", [
    ({"small": {}, "paper": {"workloads": {"digits-clas": {}}}},
     "no entry runs workload 'digits-clas'"),
    ({"small": {}, "paper": {"only": ["nope"]}}, "scales.paper.only"),
    ({"small": {}, "paper": {"workloads": {"digits-class": {"train": {"epochs": 0}}}}},
     "scales.paper.workloads.digits-class"),
    ({"small": {"seeds": [1, 1]}}, "scales.small"),
    ({"small": {"typo": 1}}, "typo"),
])
def test_bad_scales_fail_on_load(tmp_path: Path, scales: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_suite(_write(tmp_path, _scaled_suite(**scales)))     # even the unchosen scale


def test_unknown_scale_is_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _scaled_suite(small={}, paper={}))
    with pytest.raises(ConfigError, match=r"--scale 'papr'.*did you mean 'paper'"):
        load_suite(path, scale="papr")


# ------------------------------------------------------------------------------- the report

def _synthetic(suite) -> tuple[dict, dict]:
    summary, refs = {}, {}
    for i, e in enumerate(suite.entries):
        bump = 0.1 if e.config_kind == "tuned" else 0.0
        runs = [dict.fromkeys(suite.report_metrics(), 0.5 + bump + 0.01 * s + 0.001 * i)
                for s in e.seeds]
        summary[e.id] = {m: aggregate(r[m] for r in runs) for m in suite.report_metrics()}
        refs.setdefault(e.workload.name, {"original": dict.fromkeys(suite.report_metrics(), 0.9),
                                          "retrain": dict.fromkeys(suite.report_metrics(), 0.4)})
    return summary, refs


def test_report_from_synthetic_records_has_default_and_tuned_rows(tmp_path: Path) -> None:
    suite = load_suite("paper-003", scale="quick")
    summary, refs = _synthetic(suite)
    rows = dict(paper_rows(suite, summary, refs, suite.report_metrics()))
    assert set(rows) == {"fmnist-multi2-conv", "fmnist-multi6-conv"}     # quick: 2 and 6 classes
    r2 = rows["fmnist-multi2-conv"]
    assert [(r.method, r.config) for r in r2[:2]] == [("(original)", "reference"),
                                                      ("(retrain)", "reference")]
    assert [(r.method, r.config) for r in r2[2:]] == [(m, k) for m in ("unsir", "usifr", "dnf")
                                                      for k in ("default", "tuned")]
    tables = dict(paper_tables_markdown(suite, summary, refs))
    table = tables["fmnist-multi2-conv"]
    # seeds 0.5, 0.51: 95% CI half-width t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.00707 / 1.414
    assert "| unsir | default | 2 | 0.505 ± 0.064 |" in table
    assert "| unsir | tuned | 2 | 0.608 ± 0.064 |" in table        # +0.1, 4th entry: +0.003
    assert "| (original) | reference | - | 0.9 |" in table          # one model: no interval
    assert "forget acc `forget/acc`" in table
    configs = {e.id: {"lr": 0.1} for e in suite.entries if e.config_kind == "tuned"}
    path = write_paper_report(suite, summary, refs, tmp_path / "out", configs=configs,
                              errors=[{"entry": "x/y", "seed": 0, "error": "boom"}],
                              meta={"wall time": "1 min"})
    text = path.read_text()
    assert "scale: `quick`" in text and "## fmnist-multi6-conv" in text
    assert text.count("| usifr | tuned |") == 2 and text.count("| dnf | default |") == 2
    assert "`x/y` seed 0: boom" in text and '`{"lr": 0.1}`' in text
    assert (tmp_path / "out" / "fmnist-multi2-conv.png").stat().st_size > 1000
    assert (tmp_path / "out" / "across-workloads.png").is_file()


def test_bench_paper_regenerate_from_summary_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from raysweep.cli import main

    suite = load_suite("paper-002", scale="quick")
    summary, refs = _synthetic(suite)
    run_dir = tmp_path / "results" / "paper-002-quick" / "run"
    run_dir.mkdir(parents=True)
    doc = {"suite": suite.name, "status": "baseline", "seconds": 90.0, "run_id": "abc",
           "finished": "2026-01-02 03:04",
           "tracking_uri": "sqlite:///x.db", "errors": [], "references": refs,
           "entries": {e: {"config": {}, "metrics": m}
                       for e, m in summary_to_json(summary).items()}}
    (run_dir / "summary.json").write_text(json.dumps(doc))
    monkeypatch.chdir(tmp_path)
    rc = main(["bench", "paper", "paper-002", "--scale", "quick", "--results", "results",
               "--regenerate", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert json.loads(out)["results"][0]["suite"] == "paper-002-quick"
    text = (tmp_path / "results" / "paper-002-quick" / "README.md").read_text()
    assert "| rotate | tuned |" in text and "| divergence | default |" in text
    assert "MIA AUC" in text and "1.5 min" in text
    assert "produced: 2026-01-02 03:04" in text  # the run's own end time, not the file's mtime
    assert main(["bench", "paper", "paper-003", "--results", "results", "--regenerate"]) != 0
