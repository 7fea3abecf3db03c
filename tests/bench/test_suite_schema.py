"""Suite YAML validation: good suites resolve, bad ones fail with one line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from raysweep.bench.suite import BUNDLED_SUITES, apply_suite_overrides, load_suite
from raysweep.errors import ConfigError

TOL = {"forget/acc": {"direction": "lower_is_better", "abs": 0.05},
       "test/acc_retain_classes": {"direction": "higher_is_better", "abs": 0.03}}


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _suite(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "t", "seeds": [0, 1], "tolerances": TOL,
                            "entries": [{"workload": "digits-class", "method": "ssd"}]}
    data.update(changes)
    return data


def test_bundled_suites_load() -> None:
    names = sorted(p.stem for p in BUNDLED_SUITES.glob("*.yaml"))
    assert {"smoke", "embedded"} <= set(names)
    for name in names:
        suite = load_suite(name)
        assert suite.name == name and suite.entries
        for e in suite.entries:
            assert e.tolerances, f"{name}: {e.id} has no tolerances"


def test_resolves_entries_ids_seeds_and_merged_tolerances(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, _suite(entries=[
        {"workload": "digits-class", "method": "ssd"},
        {"workload": "digits-class", "method": "finetune", "config": {"epochs": 1}, "seeds": [3],
         "tolerances": {"forget/acc": {"abs": 0.2},
                        "zrf": {"direction": "higher_is_better", "rel": 0.1}}},
        {"workload": "digits-class", "method": ["scrub", "sftc"]},
    ])))
    ids = [e.id for e in suite.entries]
    assert ids == ["digits-class/ssd", "digits-class/finetune", "digits-class/scrub",
                   "digits-class/sftc"]
    ssd, ft = suite.entries[0], suite.entries[1]
    assert ssd.config_kind == "default" and ssd.config == {} and ssd.seeds == (0, 1)
    assert ft.config_kind == "pinned" and ft.config == {"epochs": 1} and ft.seeds == (3,)
    # The override keeps the suite's direction and replaces abs only.
    assert ft.tolerances["forget/acc"].direction == "lower_is_better"
    assert ft.tolerances["forget/acc"].abs == 0.2
    assert ft.tolerances["zrf"].rel == 0.1 and "zrf" not in ssd.tolerances
    assert suite.runs() == 2 + 1 + 2 + 2
    assert suite.report_metrics()[:2] == ["forget/acc", "test/acc_retain_classes"]


def test_tuned_entry_sits_beside_default(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, _suite(entries=[
        {"workload": "digits-class", "method": "ssd"},
        {"workload": "digits-class", "method": "ssd", "config": "tuned",
         "tune": {"num_samples": 4}},
    ])))
    assert [e.id for e in suite.entries] == ["digits-class/ssd", "digits-class/ssd@tuned"]
    assert suite.entries[1].tune is not None and suite.entries[1].tune.num_samples == 4


@pytest.mark.parametrize(("change", "expected"), [
    ({"colour": "red"}, r"unknown key 'colour'"),
    ({"name": "bad name!"}, r"name: .*letters, digits"),
    ({"seeds": [0, 0]}, r"seeds: .*repeat"),
    ({"entries": []}, r"entries"),
    ({"tolerances": {"forget/acc": {"direction": "down", "abs": 0.1}}},
     r"tolerances\.forget/acc\.direction: .*'down'"),
    ({"tolerances": {"forget/acc": {"direction": "lower_is_better"}}},
     r"tolerances\.forget/acc: give abs and/or rel"),
    ({"tolerances": {"forget/acc": {"abs": 0.1}}}, r"tolerances\.forget/acc\.direction: missing"),
    ({"tolerances": {"forget/acc": {"direction": "lower_is_better", "abs": -1}}},
     r"tolerances\.forget/acc\.abs: .*greater than or equal to 0.*-1"),
    ({"tolerances": {"mia/lr_auc": {"direction": "target", "abs": 0.1}}},
     r"tolerances\.mia/lr_auc\.target: missing"),
    ({"tolerances": {"zrf": {"direction": "higher_is_better", "abs": 0.1, "target": 1}}},
     r"tolerances\.zrf\.target: only meaningful"),
    ({"entries": [{"workload": "digits-class", "method": "scurb"}]},
     r"entries\[0\]\.method: unknown method 'scurb'; did you mean 'scrub'"),
    ({"entries": [{"workload": "digit-class", "method": "ssd"}]},
     r"entries\[0\]\.workload: .*did you mean 'digits-class'"),
    ({"entries": [{"workload": "digits-class", "method": "ssd",
                   "config": {"selection_weighting": 0}}]},
     r"entries\[0\]\.config: ssd\.selection_weighting: .*got 0"),
    ({"entries": [{"workload": "digits-class", "method": "ssd", "config": {"alpha": 3}}]},
     r"entries\[0\]\.config: ssd: unknown parameter 'alpha'"),
    ({"entries": [{"workload": "digits-class", "method": "ssd", "config": "best"}]},
     r"entries\.0\.config"),
    ({"entries": [{"workload": "digits-class", "method": "ssd", "tune": {"num_samples": 3}}]},
     r"tune: is only used with config: tuned"),
    ({"entries": [{"workload": "digits-class", "method": "ssd", "config": "tuned",
                   "tune": {"num_samples": 0}}]}, r"entries\.0\.tune\.num_samples: .*got 0"),
    ({"entries": [{"workload": "digits-class", "method": "ssd"},
                  {"workload": "digits-class", "method": "ssd",
                   "config": {"selection_weighting": 5}}]},
     r"entries\[1\]: entry id 'digits-class/ssd' repeats entries\[0\]"),
    ({"entries": [{"workload": "digits-class", "method": "ssd",
                   "tolerances": {"zrf": {"abs": 0.1}}}]},
     r"entries\[0\]\.tolerances\.zrf\.direction: missing"),
    ({"entries": [{"workload": "digits-class", "method": "ssd", "name": "a.b"}]},
     r"entries\.0\.name: .*without dots"),
])
def test_bad_suites_name_the_field(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    path = _write(tmp_path, _suite(**change))
    with pytest.raises(ConfigError, match=expected) as info:
        load_suite(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg


def test_unknown_suite_name_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'smoke'"):
        load_suite("smok")


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_suite(p)


def test_overrides_select_entries_by_method_name_or_index() -> None:
    data = _suite(entries=[{"workload": "w", "method": "ssd"},
                           {"workload": "w", "method": "finetune", "config": {"epochs": 2}},
                           {"workload": "w", "method": ["scrub", "sftc"], "name": None}])
    out = apply_suite_overrides(data, ["entries.ssd.config.selection_weighting=1000",
                                       "entries.finetune.config.lr=1e-6", "entries.2.seeds=[5]",
                                       "seeds=[7]", "tolerances.forget/acc.abs=0.5"])
    assert out["entries"][0]["config"] == {"selection_weighting": 1000}   # default -> mapping
    assert out["entries"][1]["config"] == {"epochs": 2, "lr": 1e-6}
    assert out["entries"][2]["seeds"] == [5] and out["seeds"] == [7]
    assert out["tolerances"]["forget/acc"] == {"direction": "lower_is_better", "abs": 0.5}
    assert data["entries"][0] == {"workload": "w", "method": "ssd"}        # input untouched
    split = apply_suite_overrides(data, ["entries.sftc.config.epochs=1"])["entries"]
    assert [e["method"] for e in split] == ["ssd", "finetune", "scrub", "sftc"]
    assert split[3]["config"] == {"epochs": 1} and "config" not in split[2]
    with pytest.raises(ConfigError, match=r"no entry is named 'scurb'.*did you mean 'scrub'"):
        apply_suite_overrides(data, ["entries.scurb.config.lr=1"])
    with pytest.raises(ConfigError, match="index 9 is out of range"):
        apply_suite_overrides(data, ["entries.9.seeds=[1]"])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_suite_overrides(data, ["seeds"])


def test_override_errors_are_validated_like_the_file() -> None:
    with pytest.raises(ConfigError, match=r"smoke.yaml \(with --set\): entries\[0\]\.config: "
                                          r"ssd\.selection_weighting"):
        load_suite("smoke", ["entries.ssd.config.selection_weighting=-1"])
