"""Bad input, table-driven: every case exits 2 with one line naming what is wrong and nothing
reaches MLflow.

Each case writes its files into a private tmp dir (sweep, workload and suite YAML, fake data),
runs ``raysweep.cli.main`` in-process and checks: exit code 2; stderr is exactly one non-empty
line starting ``raysweep: error:`` that contains the case's expected fragments (file, field,
value, fix); no "Traceback"; no MLflow store (sqlite file, ``mlruns``, ``mlartifacts``) and no
sweep directory was created. Cases that would have to train something are avoided: every
rejection happens before a model is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rs_counts import COUNTS

from raysweep.cli import main

SWEEP_OK = """\
schema_version: 1
name: bad
workload: digits-class
methods:
  finetune:
    parameters:
      lr: {distribution: loguniform, min: 1.0e-3, max: 1.0e-1}
      epochs: {value: 1}
search: {algorithm: random, num_samples: 2, max_concurrent: 1, seed: 0}
budget: {max_epochs: 1}
seeds: [0]
resources_per_trial: {cpu: 1}
"""

WORKLOAD_OK = """\
schema_version: 1
name: wl
dataset: {name: digits, val_fraction: 0.1}
model: {name: mlp}
scenario: {kind: class, classes: [0]}
train: {epochs: 1, lr: 0.05, batch_size: 32}
seed: 0
"""

SUITE_OK = """\
schema_version: 1
name: badsuite
seeds: [0]
device: cpu
entries:
  - {workload: digits-class, method: finetune, config: {epochs: 1}}
"""


@dataclass
class Case:
    id: str
    argv: list[str]                                 # {sweep} {workload} {suite} {root} filled in
    expect: list[str]                               # fragments of the error line
    sweep: str | None = None                        # file contents (or None: not written)
    workload: str | None = None
    suite: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None


def _sub(base: str, old: str, new: str) -> str:
    assert old in base, old
    return base.replace(old, new)


def _cifar_corrupt(root: Path) -> None:
    d = root / "cifar" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (d / name).write_bytes(b"this is not a pickle\x00\x01")


def _cifar_hostile(root: Path) -> None:
    import os
    import pickle

    d = root / "cifar" / "cifar-10-batches-py"
    d.mkdir(parents=True)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {root / 'PWNED'}",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (d / name).write_bytes(pickle.dumps({"data": Evil()}))


RUN = ["run", "{sweep}"]
PREP = ["workload", "prepare", "{workload}", "--no-catboost"]
BENCH = ["bench", "run", "{suite}", "--dry-run"]

CASES: list[Case] = [
    # -- search-space / sweep YAML --------------------------------------------------------------
    Case("unknown-method-did-you-mean", RUN, ["{sweep}", "finetun", "did you mean 'finetune'"],
         sweep=_sub(SWEEP_OK, "  finetune:", "  finetun:")),
    Case("wrong-type-num-samples", RUN, ["{sweep}", "search.num_samples", "many"],
         sweep=_sub(SWEEP_OK, "num_samples: 2", "num_samples: many")),
    Case("min-ge-max", RUN, ["{sweep}", "lr", "min < max", "min=0.1"],
         sweep=_sub(SWEEP_OK, "min: 1.0e-3, max: 1.0e-1", "min: 1.0e-1, max: 1.0e-3")),
    Case("log-range-min-zero", RUN, ["{sweep}", "lr", "min > 0", "min=0"],
         sweep=_sub(SWEEP_OK, "min: 1.0e-3", "min: 0")),
    Case("log-range-min-negative", RUN, ["{sweep}", "lr", "min > 0"],
         sweep=_sub(SWEEP_OK, "min: 1.0e-3", "min: -1.0")),
    Case("unknown-top-level-key", RUN, ["{sweep}", "serach"],
         sweep=SWEEP_OK + "serach: {seed: 1}\n"),
    Case("unknown-param-spec-key", RUN, ["{sweep}", "stepp"],
         sweep=_sub(SWEEP_OK, "max: 1.0e-1}", "max: 1.0e-1, stepp: 2}")),
    Case("unknown-method-parameter", RUN, ["{sweep}", "lrr", "did you mean 'lr'"],
         sweep=_sub(SWEEP_OK, "      lr:", "      lrr:")),
    Case("param-value-out-of-method-bounds", RUN, ["{sweep}", "epochs", "-3"],
         sweep=_sub(SWEEP_OK, "epochs: {value: 1}", "epochs: {value: -3}")),
    Case("unknown-algorithm", RUN, ["{sweep}", "search.algorithm", "tpee"],
         sweep=_sub(SWEEP_OK, "algorithm: random", "algorithm: tpee")),
    Case("budget-zero-epochs", RUN, ["{sweep}", "budget.max_epochs", "0"],
         sweep=_sub(SWEEP_OK, "budget: {max_epochs: 1}", "budget: {max_epochs: 0}")),
    Case("duplicate-seeds", RUN, ["{sweep}", "seeds", "unique"],
         sweep=_sub(SWEEP_OK, "seeds: [0]", "seeds: [0, 0]")),
    Case("unknown-objective-metric", RUN, ["{sweep}", "forget/accc", "did you mean"],
         sweep=SWEEP_OK + "objectives: [{metric: forget/accc, goal: minimize}]\n"),
    Case("top-level-not-a-mapping", RUN, ["{sweep}", "mapping"], sweep="- finetune\n- ssd\n"),
    Case("invalid-yaml", RUN, ["{sweep}", "invalid YAML"], sweep="methods: {finetune: [\n"),
    Case("sweep-file-missing", ["run", "{root}/nope.yaml"], ["nope.yaml", "not found"]),
    Case("unknown-workload-in-sweep", RUN, ["digits-clas", "did you mean 'digits-class'"],
         sweep=_sub(SWEEP_OK, "workload: digits-class", "workload: digits-clas")),
    Case("negative-cpu", RUN, ["{sweep}", "resources_per_trial.cpu"],
         sweep=_sub(SWEEP_OK, "{cpu: 1}", "{cpu: -1}")),
    # -- CLI ------------------------------------------------------------------------------------
    Case("cli-bad-override", ["run", "{sweep}", "--set", "search.num_samples"],
         ["search.num_samples", "key=value"], sweep=SWEEP_OK),
    Case("cli-num-samples-zero", ["run", "{sweep}", "--num-samples", "0"],
         ["--num-samples", "greater than or equal to 1", "raysweep run -h"], sweep=SWEEP_OK),
    Case("cli-unknown-option", ["run", "{sweep}", "--frobnicate"],
         ["No such option", "--frobnicate"], sweep=SWEEP_OK),
    Case("cli-unknown-command", ["sweepp"], ["No such command", "sweepp"]),
    Case("cli-bad-ray-address-format", ["run", "{sweep}", "--address", "not-an-address"],
         ["--address", "not-an-address", "HOST:PORT"], sweep=SWEEP_OK),
    Case("cli-unreachable-ray-address", ["run", "{sweep}", "--address", "127.0.0.1:1"],
         ["--address", "127.0.0.1:1", "no Ray cluster reachable"], sweep=SWEEP_OK),
    Case("env-bad-ray-address", RUN, ["--address", "ray://127.0.0.1:1"], sweep=SWEEP_OK,
         env={"RAY_ADDRESS": "ray://127.0.0.1:1"}),
    Case("unreachable-mlflow-server", RUN, ["MLFLOW_TRACKING_URI", "http://127.0.0.1:1",
                                            "unreachable"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}),
    Case("mlflow-sqlite-dir-missing", RUN, ["MLFLOW_TRACKING_URI", "does not exist"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "sqlite:///{root}/no/such/dir/m.db"}),
    Case("resume-bad-errored", ["resume", "abc", "--errored", "sometimes"],
         ["--errored", "sometimes", "resume, restart or skip"]),
    Case("resume-unknown-sweep", ["resume", "nosuchsweep"], ["nosuchsweep", "RAYSWEEP_HOME"]),
    Case("unlearn-unknown-method", ["unlearn", "--workload", "digits-class", "--method", "scrubb"],
         ["scrubb", "did you mean 'scrub'"]),
    # -- workload YAML --------------------------------------------------------------------------
    Case("workload-missing-dataset-dir", PREP, ["cifar10", "{root}/no-data", "not found"],
         workload=_sub(WORKLOAD_OK, "{name: digits, val_fraction: 0.1}",
                       "{name: cifar10, root: '{root}/no-data'}")),
    Case("workload-corrupt-cifar", PREP, ["data_batch_1", "not a valid CIFAR pickle"],
         workload=_sub(WORKLOAD_OK, "{name: digits, val_fraction: 0.1}",
                       "{name: cifar10, root: '{root}/cifar'}"), setup=_cifar_corrupt),
    Case("workload-hostile-cifar-pickle", PREP, ["data_batch_1", "CIFAR pickle"],
         workload=_sub(WORKLOAD_OK, "{name: digits, val_fraction: 0.1}",
                       "{name: cifar10, root: '{root}/cifar'}"), setup=_cifar_hostile),
    Case("workload-class-absent", PREP, ["42", "not in digits"],
         workload=_sub(WORKLOAD_OK, "classes: [0]", "classes: [42]")),
    Case("workload-class-name-absent", PREP, ["seven", "not in digits"],
         workload=_sub(WORKLOAD_OK, "classes: [0]", "classes: [seven]")),
    Case("workload-empty-forget-set", PREP, ["{workload}", "scenario"],
         workload=_sub(WORKLOAD_OK, "classes: [0]", "classes: []")),
    Case("workload-fraction-out-of-range", PREP, ["{workload}", "fraction", "1.5"],
         workload=_sub(WORKLOAD_OK, "{kind: class, classes: [0]}",
                       "{kind: random, fraction: 1.5}")),
    Case("workload-val-fraction-out-of-range", PREP, ["{workload}", "val_fraction", "0.7"],
         workload=_sub(WORKLOAD_OK, "val_fraction: 0.1", "val_fraction: 0.7")),
    Case("workload-unknown-key", PREP, ["{workload}", "datset"],
         workload=WORKLOAD_OK + "datset: {}\n"),
    Case("workload-wrong-type", PREP, ["{workload}", "train.epochs", "ten"],
         workload=_sub(WORKLOAD_OK, "epochs: 1", "epochs: ten")),
    Case("workload-zero-epochs", PREP, ["{workload}", "train.epochs", "0"],
         workload=_sub(WORKLOAD_OK, "epochs: 1", "epochs: 0")),
    Case("workload-unknown-dataset", PREP, ["digitz", "did you mean 'digits'"],
         workload=_sub(WORKLOAD_OK, "name: digits,", "name: digitz,")),
    Case("workload-unknown-model", PREP, ["mlpp"],
         workload=_sub(WORKLOAD_OK, "name: mlp", "name: mlpp")),
    Case("sweep-with-bad-workload-file", RUN, ["{workload}", "datset"],
         sweep=_sub(SWEEP_OK, "workload: digits-class", "workload: {workload}"),
         workload=WORKLOAD_OK + "datset: {}\n"),
    # -- suite YAML -----------------------------------------------------------------------------
    Case("suite-unknown-key", BENCH, ["{suite}", "seedz"], suite=SUITE_OK + "seedz: [1]\n"),
    Case("suite-unknown-method", BENCH, ["finetun", "did you mean 'finetune'"],
         suite=_sub(SUITE_OK, "method: finetune", "method: finetun")),
    Case("suite-no-entries", BENCH, ["{suite}", "entries"],
         suite=SUITE_OK.split("entries:")[0] + "entries: []\n"),
    Case("suite-zero-epochs", BENCH, ["{suite}", "max_epochs", "0"],
         suite=_sub(SUITE_OK, "config: {epochs: 1}}", "config: {epochs: 1}, max_epochs: 0}")),
    Case("suite-tolerance-without-bound", BENCH, ["{suite}", "forget/acc", "abs"],
         suite=SUITE_OK + "tolerances:\n  forget/acc: {direction: lower_is_better}\n"),
    Case("suite-missing-workload", BENCH, ["nowhere.yaml"],
         suite=_sub(SUITE_OK, "workload: digits-class", "workload: nowhere.yaml")),
]


def _fill(text: str, paths: dict[str, str]) -> str:
    for k, v in paths.items():
        text = text.replace("{" + k + "}", v)
    return text


@pytest.fixture(scope="module")
def summary() -> dict[str, int]:
    return {}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_rejected_cleanly(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    paths = {"root": str(tmp_path), "sweep": str(tmp_path / "sweep.yaml"),
             "workload": str(tmp_path / "workload.yaml"), "suite": str(tmp_path / "suite.yaml")}
    for key in ("sweep", "workload", "suite"):
        text = getattr(case, key)
        if text is not None:
            Path(paths[key]).write_text(_fill(text, paths))
    if case.setup:
        case.setup(tmp_path)
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for k, v in case.env.items():
        monkeypatch.setenv(k, _fill(v, paths))
    monkeypatch.chdir(tmp_path)
    COUNTS["bad_inputs_tried"] += 1
    capsys.readouterr()

    rc = main([_fill(a, paths) for a in case.argv])

    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("sweep ")]
    assert rc == 2, (rc, err[-3000:])
    assert "Traceback" not in out + err
    assert len(lines) == 1, err
    assert lines[0].startswith("raysweep: error: "), lines
    for frag in case.expect:
        assert _fill(frag, paths) in lines[0], (frag, lines[0])
    leftovers = [p.name for p in (tmp_path / "mlflow.db", tmp_path / "mlruns",
                                  tmp_path / "mlartifacts", tmp_path / "PWNED") if p.exists()]
    assert not leftovers, leftovers
    sweeps = tmp_path / "home" / "sweeps"
    assert not (sweeps.is_dir() and any(sweeps.iterdir()))
    COUNTS["bad_inputs_rejected"] += 1


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
