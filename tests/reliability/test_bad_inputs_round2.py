"""Bad input, round two (issue 13), table-driven by category like ``test_bad_inputs.py``.

Every case runs the real CLI in-process in a private tmp dir and checks what the first table
checks (exit 2, exactly one ``raysweep: error:`` line with the expected fragments, no traceback,
no MLflow store, no sweep directory) plus: no workload cache entry was written. Categories:
the YAML reader (duplicate keys, alias bombs, depth, encoding, YAML 1.1 booleans), unbounded or
non-finite numbers, values that are accepted but meaningless, environment and output settings
checked before side effects, and stored files (datasets, weights, baselines) that are corrupt.
Nothing here trains a model. Stored sweep state (state.json, spec.json) has its own tests at the
end, since those cases need a sweep directory to exist beforehand.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import test_bad_inputs as base
from test_bad_inputs import BENCH, PREP, RUN, SUITE_OK, SWEEP_OK, WORKLOAD_OK, Case, _sub

from raysweep.cli import main

SUITE_REAL = ["bench", "run", "{suite}"]
VALIDATE = ["validate", "{sweep}"]
DRY = ["run", "{sweep}", "--dry-run"]


def _bomb(levels: int = 7) -> str:
    """A YAML alias bomb: 10**levels leaves from a few hundred bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines)


def _write_bytes(name: str, data: bytes):
    def setup(root: Path) -> None:
        (root / name).write_bytes(data)
    return setup


def _skip_with_cuda(root: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")


def _file_at(rel: str):
    def setup(root: Path) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("a file, not a directory\n")
    return setup


def _pinned(mean: str):
    def setup(root: Path) -> None:
        (root / "pinned.json").write_text(
            '{"schema_version": 1, "suite": "badsuite", "entries": {"digits-class/finetune": '
            '{"forget/acc": {"mean": ' + mean + ', "std": 0.0, "n": 1}}}}')
    return setup


def _weights(obj_kind: str):
    def setup(root: Path) -> None:
        import torch

        if obj_kind == "list":
            torch.save([1, 2, 3], root / "w.pt")
        else:
            (root / "w.pt").write_bytes(b"PK\x03\x04 this is not a torch file")
    return setup


def _cifar_labels_out_of_range(root: Path) -> None:
    d = root / "cifar" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 255, size=(20, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(20)]
        if name == "data_batch_3":
            labels[5] = 42
        (d / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))


def _image_folder_with_bad_file(root: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = root / "imgs" / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(d / f"{i}.png")
    (root / "imgs" / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def _deleted_experiment(root: Path) -> None:
    from mlflow.tracking import MlflowClient

    (root / "store").mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'store' / 'old.db'}")
    client.delete_experiment(client.create_experiment(
        "raysweep", artifact_location=(root / "store" / "mlartifacts").as_uri()))


WL_DIGITS = "{name: digits, val_fraction: 0.1}"
PARAM_LR = "lr: {distribution: loguniform, min: 1.0e-3, max: 1.0e-1}"

CASES: list[Case] = [
    # -- the YAML reader ------------------------------------------------------------------------
    Case("yaml-duplicate-top-level-key", RUN, ["{sweep}", "duplicate key 'name'", "line"],
         sweep=SWEEP_OK + "name: again\n"),
    Case("yaml-duplicate-key-in-param", RUN, ["{sweep}", "duplicate key 'min'"],
         sweep=_sub(SWEEP_OK, "min: 1.0e-3,", "min: 1.0e-3, min: 1.0e-2,")),
    Case("yaml-duplicate-key-workload", PREP, ["{workload}", "duplicate key 'seed'"],
         workload=WORKLOAD_OK + "seed: 1\n"),
    Case("yaml-duplicate-key-suite", BENCH, ["{suite}", "duplicate key 'device'"],
         suite=_sub(SUITE_OK, "device: cpu\n", "device: cpu\ndevice: cuda\n")),
    Case("yaml-alias-bomb-in-param", RUN, ["{sweep}", "expands to more than"],
         sweep=_bomb() + "\n" + _sub(SWEEP_OK, "epochs: {value: 1}",
                                     "epochs: {values: *a6}")),
    Case("yaml-alias-bomb-dataset-options", PREP, ["{workload}", "expands to more than"],
         workload=_bomb() + "\n" + _sub(WORKLOAD_OK, WL_DIGITS,
                                         "{name: digits, options: {x: *a6}}")),
    Case("yaml-nested-too-deep", RUN, ["{sweep}", "nested"],
         sweep=SWEEP_OK + "description: " + "[" * 200 + "]" * 200 + "\n"),
    Case("yaml-not-utf8", RUN, ["{sweep}", "not UTF-8"],
         setup=_write_bytes("sweep.yaml", "name: caf\u00e9\n".encode("latin-1"))),
    Case("yaml-nul-bytes", RUN, ["{sweep}", "NUL"],
         setup=_write_bytes("sweep.yaml", b"name: a\x00b\n")),
    Case("yaml-empty-sweep", RUN, ["{sweep}", "empty file"], sweep=""),
    Case("yaml-empty-suite", BENCH, ["{suite}", "empty file"], suite="# nothing\n"),
    Case("yaml-scalar-workload", PREP, ["{workload}", "int '42'"], workload="42\n"),
    Case("yaml-path-is-directory", ["run", "{root}"], ["{root}", "is a directory"]),
    Case("yaml11-yes-as-count", RUN, ["{sweep}", "search.num_samples", "'yes'"],
         sweep=_sub(SWEEP_OK, "num_samples: 2", "num_samples: yes")),
    Case("yaml11-on-as-concurrency", RUN, ["{sweep}", "search.max_concurrent", "'on'"],
         sweep=_sub(SWEEP_OK, "max_concurrent: 1", "max_concurrent: on")),
    Case("yaml-true-as-seed", RUN, ["{sweep}", "seeds", "True"],
         sweep=_sub(SWEEP_OK, "seeds: [0]", "seeds: [true]")),
    Case("yaml-true-as-weight", RUN, ["{sweep}", "objective.w_forget", "True"],
         sweep=SWEEP_OK + "objective: {w_forget: true}\n"),
    Case("yaml-true-as-train-lr", PREP, ["{workload}", "train.lr", "True"],
         workload=_sub(WORKLOAD_OK, "lr: 0.05", "lr: true")),
    Case("yaml-true-as-method-value", RUN, ["{sweep}", "epochs", "YAML boolean"],
         sweep=_sub(SWEEP_OK, "epochs: {value: 1}", "epochs: {value: true}")),
    Case("yaml-true-in-pinned-config", BENCH, ["{suite}", "config.epochs", "YAML boolean"],
         suite=_sub(SUITE_OK, "config: {epochs: 1}", "config: {epochs: true}")),
    Case("set-yes-as-count", ["run", "{sweep}", "--set", "search.num_samples=yes"],
         ["search.num_samples", "'yes'"], sweep=SWEEP_OK),
    Case("set-duplicate-key", ["run", "{sweep}", "--set", "budget={max_epochs: 1, max_epochs: 2}"],
         ["duplicate key 'max_epochs'"], sweep=SWEEP_OK),
    Case("suite-set-yes-as-seed", ["bench", "run", "{suite}", "--dry-run", "--set", "seeds=[yes]"],
         ["seeds", "'yes'"], suite=SUITE_OK),
    # -- unbounded and non-finite numbers -------------------------------------------------------
    Case("nan-objective-weight", RUN, ["{sweep}", "objective.w_forget", "finite"],
         sweep=SWEEP_OK + "objective: {w_forget: .nan}\n"),
    Case("inf-objective-weight", RUN, ["{sweep}", "objective.w_heldout"],
         sweep=SWEEP_OK + "objective: {w_heldout: .inf}\n"),
    Case("nan-objective-target", RUN, ["{sweep}", "objectives.0.target", "finite"],
         sweep=SWEEP_OK + "objectives: [{metric: forget/acc, goal: minimize, target: .nan}]\n"),
    Case("inf-penalty", RUN, ["{sweep}", "objective.penalty"],
         sweep=SWEEP_OK + "objective: {penalty: .inf}\n"),
    Case("nan-param-bound", RUN, ["{sweep}", "lr", "finite"],
         sweep=_sub(SWEEP_OK, "max: 1.0e-1", "max: .nan")),
    Case("inf-param-value", RUN, ["{sweep}", "finite"],
         sweep=_sub(SWEEP_OK, PARAM_LR, "lr: {values: [.inf, 0.1]}")),
    Case("inf-max-seconds", RUN, ["{sweep}", "budget.max_seconds"],
         sweep=_sub(SWEEP_OK, "budget: {max_epochs: 1}", "budget: {max_seconds: .inf}")),
    Case("inf-reduction-factor", RUN, ["{sweep}", "reduction_factor"],
         sweep=_sub(SWEEP_OK, "seed: 0}", "seed: 0, early_terminate: {reduction_factor: .inf}}")),
    Case("seed-beyond-32-bits", RUN, ["{sweep}", "seeds", "4294967296"],
         sweep=_sub(SWEEP_OK, "seeds: [0]", "seeds: [4294967296]")),
    Case("negative-seed", RUN, ["{sweep}", "seeds", "-1"],
         sweep=_sub(SWEEP_OK, "seeds: [0]", "seeds: [-1]")),
    Case("sampler-seed-beyond-32-bits", RUN, ["{sweep}", "search.seed", "1099511627776"],
         sweep=_sub(SWEEP_OK, "seed: 0}", "seed: 1099511627776}")),
    Case("workload-seed-beyond-32-bits", PREP, ["{workload}", "seed", "4294967296"],
         workload=_sub(WORKLOAD_OK, "seed: 0", "seed: 4294967296")),
    Case("suite-negative-seed", BENCH, ["{suite}", "seeds", "-1"],
         suite=_sub(SUITE_OK, "seeds: [0]", "seeds: [-1]")),
    Case("cpu-per-trial-huge", RUN, ["{sweep}", "resources_per_trial.cpu", "1000000"],
         sweep=_sub(SWEEP_OK, "{cpu: 1}", "{cpu: 1000000}")),
    Case("cpu-per-trial-inf", RUN, ["{sweep}", "resources_per_trial.cpu"],
         sweep=_sub(SWEEP_OK, "{cpu: 1}", "{cpu: .inf}")),
    Case("num-samples-huge", RUN, ["{sweep}", "search.num_samples", "1000000000"],
         sweep=_sub(SWEEP_OK, "num_samples: 2", "num_samples: 1000000000")),
    Case("trials-over-cap", RUN, ["{sweep}", "100000 configurations x 2 seed(s)"],
         sweep=_sub(_sub(SWEEP_OK, "num_samples: 2", "num_samples: 100000"),
                    "seeds: [0]", "seeds: [0, 1]")),
    Case("grid-of-a-billion-points", RUN, ["{sweep}", "more than 100000 points"],
         sweep=_sub(_sub(SWEEP_OK, "algorithm: random, num_samples: 2", "algorithm: grid"),
                    PARAM_LR, "lr: {min: 1.0e-3, max: 1.0e-1, step: 1.0e-9}\n"
                              "      batch_size: {min: 16, max: 8192}")),
    Case("too-many-categories", RUN, ["{sweep}", "categorical has 10001 values"],
         sweep=_sub(SWEEP_OK, PARAM_LR, "lr: {values: [" + ", ".join(
             f"{(i + 1) * 1e-6:.7f}" for i in range(10001)) + "]}")),
    Case("suite-tolerance-abs-inf", BENCH, ["{suite}", "tolerances.forget/acc.abs"],
         suite=SUITE_OK + "tolerances:\n  forget/acc: {direction: lower_is_better, abs: .inf}\n"),
    Case("suite-tolerance-target-nan", BENCH, ["{suite}", "target", "finite"],
         suite=SUITE_OK + "tolerances:\n"
                          "  mia/lr_auc: {direction: target, target: .nan, abs: 0.1}\n"),
    Case("suite-tolerance-rel-nan", BENCH, ["{suite}", "rel", "finite"],
         suite=SUITE_OK + "tolerances:\n  forget/acc: {direction: lower_is_better, rel: .nan}\n"),
    Case("suite-max-epochs-huge", BENCH, ["{suite}", "max_epochs", "1000000000"],
         suite=_sub(SUITE_OK, "config: {epochs: 1}}",
                    "config: {epochs: 1}, max_epochs: 1000000000}")),
    Case("suite-runs-over-cap", BENCH, ["{suite}", "200000 runs"],
         suite=_sub(SUITE_OK, "seeds: [0]\n", "seeds: [" + ", ".join(map(str, range(1000)))
                    + "]\n").replace("  - {workload: digits-class, method: finetune, config: "
                                      "{epochs: 1}}\n", "".join(
                        f"  - {{workload: digits-class, method: finetune, name: e{i}}}\n"
                        for i in range(200)))),
    Case("suite-resources-cpu-inf", BENCH, ["{suite}", "resources.cpu"],
         suite=SUITE_OK + "resources: {cpu: .inf}\n"),
    Case("workload-eval-batch-huge", PREP, ["{workload}", "eval_batch_size"],
         workload=WORKLOAD_OK + "eval_batch_size: 1000000000\n"),
    Case("workload-val-fraction-nan", PREP, ["{workload}", "val_fraction"],
         workload=_sub(WORKLOAD_OK, "val_fraction: 0.1", "val_fraction: .nan")),
    Case("pinned-baseline-nan", [*BENCH, "--baseline", "{root}/pinned.json"],
         ["pinned.json", "forget/acc", "finite"], suite=SUITE_OK, setup=_pinned("NaN")),
    Case("pinned-baseline-infinity", [*BENCH, "--baseline", "{root}/pinned.json"],
         ["pinned.json", "finite"], suite=SUITE_OK, setup=_pinned("Infinity")),
    # -- meaningless but accepted before ---------------------------------------------------------
    Case("step-larger-than-range", RUN, ["{sweep}", "step=5", "larger than the range"],
         sweep=_sub(SWEEP_OK, "epochs: {value: 1}", "epochs: {min: 1, max: 3, step: 5}")),
    Case("real-distribution-on-int-param", RUN, ["{sweep}", "epochs", "int_uniform"],
         sweep=_sub(SWEEP_OK, "epochs: {value: 1}",
                    "epochs: {distribution: uniform, min: 1, max: 5}")),
    Case("log-distribution-on-int-param", RUN, ["{sweep}", "batch_size", "int_loguniform"],
         sweep=_sub(SWEEP_OK, "epochs: {value: 1}",
                    "epochs: {value: 1}\n"
                    "      batch_size: {distribution: loguniform, min: 16, max: 128}")),
    Case("train-size-beyond-dataset", PREP, ["dataset.train_size", "100000", "1348 samples"],
         workload=_sub(WORKLOAD_OK, WL_DIGITS, "{name: digits, train_size: 100000}")),
    Case("test-size-beyond-dataset", PREP, ["dataset.test_size", "50000"],
         workload=_sub(WORKLOAD_OK, WL_DIGITS, "{name: digits, test_size: 50000}")),
    Case("suite-train-size-beyond-dataset", SUITE_REAL, ["dataset.train_size", "100000"],
         suite=_sub(SUITE_OK, "workload: digits-class", "workload: {workload}"),
         workload=_sub(WORKLOAD_OK, WL_DIGITS, "{name: digits, train_size: 100000}")),
    Case("suite-tolerance-unknown-metric", BENCH, ["{suite}", "forget/accc", "did you mean"],
         suite=SUITE_OK + "tolerances:\n  forget/accc: {direction: lower_is_better, abs: 0.1}\n"),
    Case("suite-tolerance-unknown-namespace", BENCH, ["{suite}", "bogus/metric"],
         suite=SUITE_OK + "tolerances:\n  bogus/metric: {direction: lower_is_better, abs: 0.1}\n"),
    Case("suite-entry-tolerance-unknown-metric", BENCH, ["{suite}", "tset/acc"],
         suite=_sub(SUITE_OK, "config: {epochs: 1}}",
                    "config: {epochs: 1}, "
                    "tolerances: {tset/acc: {direction: higher_is_better, abs: 0.1}}}")),
    Case("suite-report-metric-unknown", BENCH, ["{suite}", "report_metrics", "forget/acx"],
         suite=SUITE_OK + "report_metrics: [forget/acx]\n"),
    Case("suite-direction-opposite-accuracy", BENCH, ["{suite}", "test/acc", "higher_is_better"],
         suite=SUITE_OK + "tolerances:\n  test/acc: {direction: lower_is_better, abs: 0.1}\n"),
    Case("suite-direction-opposite-distance", BENCH, ["{suite}", "dist/forget_acc",
                                                      "lower_is_better"],
         suite=SUITE_OK + "tolerances:\n"
                          "  dist/forget_acc: {direction: higher_is_better, abs: 0.1}\n"),
    Case("suite-device-format", BENCH, ["{suite}", "device", "gpu0"],
         suite=_sub(SUITE_OK, "device: cpu", "device: gpu0")),
    Case("cli-device-format", [*BENCH, "--device", "cudaa"], ["--device", "cudaa", "cuda:N"],
         suite=SUITE_OK),
    Case("cli-device-absent", [*SUITE_REAL, "--device", "cuda:99"], ["--device", "cuda:99"],
         suite=SUITE_OK),
    Case("suite-device-absent", SUITE_REAL, ["device", "cuda:99"],
         suite=_sub(SUITE_OK, "device: cpu", "device: cuda:99")),
    Case("prepare-device-absent", [*PREP, "--device", "cuda:99"], ["--device", "cuda:99"],
         workload=WORKLOAD_OK),
    Case("experiment-name-too-long", RUN, ["{sweep}", "tracking.experiment", "256"],
         sweep=SWEEP_OK + "tracking: {experiment: " + "x" * 300 + "}\n"),
    Case("experiment-name-control-char", RUN, ["{sweep}", "tracking.experiment"],
         sweep=SWEEP_OK + 'tracking: {experiment: "a\\nb"}\n'),
    Case("empty-sweep-id", ["resume", ""], ["sweep id is empty"]),
    Case("empty-sweep-id-status", ["status", " "], ["sweep id is empty"]),
    Case("dry-run-baseline-missing-file", [*BENCH, "--baseline", "{root}/nope.json"],
         ["--baseline", "nope.json"], suite=SUITE_OK),
    Case("dry-run-baseline-run-id-no-store", [*BENCH, "--baseline", "0" * 32],
         ["--baseline", "0" * 32, "does not exist"], suite=SUITE_OK),
    Case("validate-misspelled-workload", VALIDATE, ["digits-clas", "did you mean 'digits-class'"],
         sweep=_sub(SWEEP_OK, "workload: digits-class", "workload: digits-clas")),
    Case("dry-run-misspelled-workload", [*DRY, "--set", "search.start_from_defaults=false"],
         ["digits-clas", "did you mean"],
         sweep=_sub(SWEEP_OK, "workload: digits-class", "workload: digits-clas")),
    # ASHA's grace period is a property of the file: validate and --dry-run catch it, and run
    # rejects it before the workload is prepared (it used to fail inside Tune's setup).
    Case("asha-grace-equals-max-epochs", RUN,
         ["{sweep}", "search.early_terminate.grace_period", "budget.max_epochs", "= 1"],
         sweep=_sub(SWEEP_OK, "seed: 0}", "seed: 0, early_terminate: {type: asha}}")),
    Case("asha-grace-above-max-epochs-validate", VALIDATE,
         ["{sweep}", "grace_period: 3", "raise budget.max_epochs"],
         sweep=_sub(_sub(SWEEP_OK, "seed: 0}", "seed: 0, early_terminate: {grace_period: 3}}"),
                    "max_epochs: 1", "max_epochs: 2")),
    Case("asha-grace-at-default-max-t-dry-run", DRY,
         ["{sweep}", "grace_period: 100", "unset: ASHA uses 100"],
         sweep=_sub(_sub(SWEEP_OK, "seed: 0}", "seed: 0, early_terminate: {grace_period: 100}}"),
                    "budget: {max_epochs: 1}\n", "")),
    Case("asha-grace-via-set",
         [*RUN, "--set", "search.early_terminate={grace_period: 4}", "--set",
          "budget.max_epochs=4"],
         ["search.early_terminate.grace_period", "4"], sweep=SWEEP_OK),
    # -- environment and output settings, before anything is written ----------------------------
    Case("num-cpus-not-a-number", RUN, ["RAYSWEEP_NUM_CPUS", "two"], sweep=SWEEP_OK,
         env={"RAYSWEEP_NUM_CPUS": "two"}),
    Case("num-cpus-zero", RUN, ["RAYSWEEP_NUM_CPUS", "'0'"], sweep=SWEEP_OK,
         env={"RAYSWEEP_NUM_CPUS": "0"}),
    Case("cpu-per-trial-over-local", RUN, ["resources_per_trial.cpu", "local Ray has 2"],
         sweep=_sub(SWEEP_OK, "{cpu: 1}", "{cpu: 3}"), env={"RAYSWEEP_NUM_CPUS": "2"}),
    Case("gpu-request-without-gpu", RUN, ["resources_per_trial.gpu", "no CUDA"],
         sweep=_sub(SWEEP_OK, "{cpu: 1}", "{cpu: 1, gpu: 1}"), setup=_skip_with_cuda),
    Case("home-is-a-file", RUN, ["RAYSWEEP_HOME", "not a directory"], sweep=SWEEP_OK,
         env={"RAYSWEEP_HOME": "{root}/homefile"}, setup=_file_at("homefile")),
    Case("home-below-a-file", RUN, ["RAYSWEEP_HOME", "is not a directory"], sweep=SWEEP_OK,
         env={"RAYSWEEP_HOME": "{root}/homefile/sub"}, setup=_file_at("homefile")),
    Case("cache-is-a-file", RUN, ["RAYSWEEP_CACHE", "not a directory"], sweep=SWEEP_OK,
         env={"RAYSWEEP_CACHE": "{root}/cachefile"}, setup=_file_at("cachefile")),
    Case("mlflow-unknown-scheme", RUN, ["MLFLOW_TRACKING_URI", "unknown scheme 'foo'"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "foo://somewhere/db"}),
    Case("mlflow-file-store", RUN, ["MLFLOW_TRACKING_URI", "file store"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "file://{root}/mlruns-store"}),
    Case("mlflow-sqlite-is-directory", RUN, ["MLFLOW_TRACKING_URI", "sqlite:///{root}"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "sqlite:///{root}"}),
    Case("mlflow-sqlite-not-a-database", RUN, ["MLFLOW_TRACKING_URI", "not an SQLite database"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "sqlite:///{root}/notes.db"},
         setup=_file_at("notes.db")),
    Case("mlflow-artifact-root-is-a-file", RUN, ["MLflow artifact root", "not a directory"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "sqlite:///{root}/store/new.db"},
         setup=_file_at("store/mlartifacts")),
    Case("mlflow-deleted-experiment", RUN, ["tracking.experiment", "'raysweep'", "deleted"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "sqlite:///{root}/store/old.db"},
         setup=_deleted_experiment),
    Case("mlflow-database-unreachable", RUN, ["MLFLOW_TRACKING_URI", "unreachable", "***@"],
         sweep=SWEEP_OK, env={"MLFLOW_TRACKING_URI": "postgresql://u:hunter2@127.0.0.1:1/db"}),
    Case("bench-mlflow-unknown-scheme", SUITE_REAL, ["MLFLOW_TRACKING_URI", "unknown scheme"],
         suite=SUITE_OK, env={"MLFLOW_TRACKING_URI": "bogus://x"}),
    Case("bench-out-unknown-placeholder", [*SUITE_REAL, "--out", "{root}/r/{sweep_id}"],
         ["--out", "unknown placeholder", "sweep_id"], suite=SUITE_OK),
    Case("bench-out-unbalanced-brace", [*BENCH, "--out", "{root}/r/{suite"], ["--out"],
         suite=SUITE_OK),
    Case("bench-out-below-a-file", [*SUITE_REAL, "--out", "{root}/afile/{suite}"],
         ["--out", "not a directory"], suite=SUITE_OK, setup=_file_at("afile")),
    Case("bench-default-out-blocked", SUITE_REAL, ["report directory", ".raysweep"],
         suite=SUITE_OK, setup=_file_at(".raysweep")),
    Case("prepare-cache-is-a-file", PREP, ["RAYSWEEP_CACHE", "not a directory"],
         workload=WORKLOAD_OK, env={"RAYSWEEP_CACHE": "{root}/cachefile"},
         setup=_file_at("cachefile")),
    Case("targeted-fraction-nan", PREP, ["params.fraction", "nan"],
         workload=_sub(WORKLOAD_OK, "{kind: class, classes: [0]}",
                       "{kind: targeted, selector: brightness, params: {fraction: .nan}}")),
    Case("targeted-count-not-whole", PREP, ["params.count", "2.5"],
         workload=_sub(WORKLOAD_OK, "{kind: class, classes: [0]}",
                       "{kind: targeted, selector: brightness, params: {count: 2.5}}")),
    Case("dataset-option-yes", PREP, ["options.test_fraction", "'yes'"],
         workload=_sub(WORKLOAD_OK, WL_DIGITS, "{name: digits, options: {test_fraction: yes}}")),
    Case("dataset-option-out-of-range", PREP, ["test_fraction", "(0, 1)", "2"],
         workload=_sub(WORKLOAD_OK, WL_DIGITS, "{name: digits, options: {test_fraction: 2}}")),
    Case("model-option-unknown", PREP, ["model.options", "hiddn", "did you mean 'hidden'"],
         workload=_sub(WORKLOAD_OK, "{name: mlp}", "{name: mlp, options: {hiddn: 8}}")),
    Case("model-option-negative-width", PREP, ["model.options", "hidden", "-5"],
         workload=_sub(WORKLOAD_OK, "{name: mlp}", "{name: mlp, options: {hidden: -5}}")),
    Case("pin-not-a-file-name", ["bench", "baseline", "{suite}", "--pin", "{root}/pins.txt"],
         ["--pin", "pins.txt", ".json"], suite=SUITE_OK),
    Case("pin-below-a-file", ["bench", "baseline", "{suite}", "--pin", "{root}/afile/p.json"],
         ["--pin directory", "not a directory"], suite=SUITE_OK, setup=_file_at("afile")),
    # -- stored data and weights ------------------------------------------------------------------
    Case("pretrained-not-a-state-dict", PREP, ["model.pretrained", "w.pt", "state dict"],
         workload=_sub(WORKLOAD_OK, "{name: mlp}", "{name: mlp, pretrained: '{root}/w.pt'}"),
         setup=_weights("list")),
    Case("pretrained-not-a-torch-file", PREP, ["model.pretrained", "w.pt", "cannot be loaded"],
         workload=_sub(WORKLOAD_OK, "{name: mlp}", "{name: mlp, pretrained: '{root}/w.pt'}"),
         setup=_weights("garbage")),
    Case("cifar-labels-out-of-range", PREP, ["data_batch_3", "labels[5] = 42", "0..9"],
         workload=_sub(WORKLOAD_OK, WL_DIGITS, "{name: cifar10, root: '{root}/cifar'}"),
         setup=_cifar_labels_out_of_range),
    Case("image-folder-unreadable-image", PREP, ["broken.png", "cannot be read as an image"],
         workload=_sub(_sub(WORKLOAD_OK, WL_DIGITS, "{name: image-folder, root: '{root}/imgs', "
                                                    "options: {image_size: 8}}"),
                       "classes: [0]", "classes: [a]"), setup=_image_folder_with_bad_file),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_rejected_cleanly(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    base.test_bad_input_rejected_cleanly(case, tmp_path, monkeypatch, capsys)
    cache = tmp_path / "cache"
    assert not (cache.is_dir() and any(cache.rglob("*"))), list(cache.rglob("*"))[:5]
    assert not (tmp_path / ".raysweep").is_dir()


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 60
    ids = {c.id for c in CASES} | {c.id for c in base.CASES}
    assert len(ids) == len(CASES) + len(base.CASES)


def test_ray_address_auto_without_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``RAY_ADDRESS=auto`` with no cluster: one line before anything is written (the lookup
    Ray would do is replaced so that another Ray on this machine cannot change the answer)."""
    from ray._private import services

    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir=None: None)
    monkeypatch.setattr(services, "find_gcs_addresses", list)
    case = Case("ray-address-auto", RUN, ["RAY_ADDRESS", "'auto'", "no running Ray cluster"],
                sweep=SWEEP_OK)
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    # The base runner clears RAY_ADDRESS; give it back through the case's env.
    case.env["RAY_ADDRESS"] = "auto"
    base.test_bad_input_rejected_cleanly(case, tmp_path, monkeypatch, capsys)


# -- stored sweep state -------------------------------------------------------------------------

def _sweep_dir(home: Path, sid: str, state: str | bytes, spec: str | None = None) -> Path:
    d = home / "sweeps" / sid
    d.mkdir(parents=True)
    (d / "state.json").write_bytes(state.encode() if isinstance(state, str) else state)
    if spec is not None:
        (d / "spec.json").write_text(spec)
    return d


def _snapshot(root: Path) -> dict[str, bytes]:
    # The driver lock (raysweep.sweep._lock) is taken before the state is read; it is an
    # empty-of-meaning marker, not data written about the sweep.
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.parametrize("state, expect", [
    ('{"id": "abc123", "crea', ["state.json"]),
    (b"\xff\xfe\x00garbage", ["state.json"]),
    ('["not", "a", "state"]', ["state.json"]),
], ids=["truncated-state", "undecodable-state", "foreign-state"])
def test_corrupt_state_is_one_line(state: str | bytes, expect: list[str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    _sweep_dir(home, "abc123", state)
    monkeypatch.setenv("RAYSWEEP_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    rc = main(["resume", "abc123"])
    _, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("raysweep: error: "), err
    assert "Traceback" not in err and "validation error" not in err
    for frag in expect:
        assert frag in lines[0], (frag, lines[0])
    assert _snapshot(tmp_path) == before     # nothing written, nothing repaired behind our back


@pytest.mark.parametrize("spec, expect", [
    ('{"schema_version": 7, "x": 1}', "not written by this version"),
    ('{"name": ', "corrupt"),
    ('[1, 2]', "not written by this version"),
    ('{"method": "finetune", "search": {"num_samples": "many"}}', "search.num_samples"),
], ids=["other-schema", "truncated", "not-an-object", "bad-field"])
def test_foreign_or_corrupt_spec_is_one_line(spec: str, expect: str, tmp_path: Path) -> None:
    """A spec.json of another schema or a torn one: one UserError line naming the file, never
    pydantic's multi-line dump."""
    from raysweep.errors import UserError
    from raysweep.sweep.runner import load_spec

    d = _sweep_dir(tmp_path, "abc123", '{"id": "abc123"}', spec)
    with pytest.raises(UserError) as info:
        load_spec(d)
    text = str(info.value)
    assert "\n" not in text and "spec.json" in text and expect in text, text
    assert "validation error" not in text


def test_latest_skips_a_corrupt_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """One torn state.json does not break ``latest`` for every other sweep."""
    from raysweep.sweep.runner import find_sweep

    home = tmp_path / "home"
    good = _sweep_dir(home, "good01", json.dumps({"id": "good01", "created": 10}))
    _sweep_dir(home, "torn02", '{"id": "torn02", "created": 2')
    _sweep_dir(home, "old003", json.dumps({"id": "old003", "created": 1}))
    monkeypatch.setenv("RAYSWEEP_HOME", str(home))
    capsys.readouterr()
    assert find_sweep("latest") == good
    err = capsys.readouterr().err
    assert "torn02" in err and "state.json" in err


def test_empty_prefix_matches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from raysweep.errors import UserError
    from raysweep.sweep.runner import find_sweep

    _sweep_dir(tmp_path / "home", "only01", json.dumps({"id": "only01", "created": 1}))
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "home"))
    for ref in ("", "   "):
        with pytest.raises(UserError, match="empty"):
            find_sweep(ref)


def test_grid_size_is_counted_not_enumerated() -> None:
    """A 10**12-point grid is counted arithmetically (this would run out of memory if the
    points were built), with when: conditions honoured."""
    from raysweep.sweep.space import MAX_GRID_POINTS, grid_size, parse_sweep

    spec = parse_sweep({"method": "finetune", "search": {"algorithm": "grid"}, "parameters": {
        "lr": {"min": 0.0, "max": 1.0, "step": 1e-6},
        "epochs": {"min": 1, "max": 1_000_000},
    }})
    assert grid_size(spec) > MAX_GRID_POINTS
    small = parse_sweep({"method": "finetune", "search": {"algorithm": "grid"}, "parameters": {
        "optimizer": {"values": ["sgd", "adam"]},
        "momentum": {"values": [0.0, 0.5, 0.9], "when": {"optimizer": "sgd"}},
        "epochs": {"min": 1, "max": 4},
    }})
    from raysweep.sweep.space import grid_points

    assert grid_size(small) == len(grid_points(small)) == (3 + 1) * 4


def test_yaml_reader_core_schema() -> None:
    """YAML 1.2 scalars: yes/no/on/off stay strings, 1e-5 is a float, 010 is ten."""
    from raysweep._yaml import parse_yaml

    doc = parse_yaml("a: yes\nb: off\nc: true\nd: 1e-5\ne: 010\nf: 1:30\ng: 0x10\n", "t")
    assert doc == {"a": "yes", "b": "off", "c": True, "d": 1e-5, "e": 10, "f": "1:30", "g": 16}
    assert parse_yaml("base: &b {x: 1}\nd: {<<: *b, y: 2}\n", "t")["d"] == {"x": 1, "y": 2}


def test_no_root_permission_cases_are_silently_passed() -> None:
    """Writability is judged with os.access; as root every directory is writable, so the
    unwritable-directory checks are exercised through files in the way instead (above)."""
    from raysweep.errors import UserError
    from raysweep.preflight import check_writable_dir

    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    with pytest.raises(UserError, match="not writable"):
        check_writable_dir(Path("/proc/1"), "RAYSWEEP_HOME")


@pytest.mark.parametrize("state", ['{"id": "torn02", "cre', b"\xff\xfe", "[1, 2]",
                                   '{"id": "torn02", "schema_version": 9}',
                                   '{"id": "torn02", "created": "yesterday"}',
                                   '{"id": "torn02", "status": "exploded"}'],
                         ids=["truncated", "undecodable", "foreign", "newer-schema", "mistyped",
                              "unknown-status"])
def test_status_of_a_corrupt_sweep_is_one_line(state: str | bytes, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _sweep_dir(tmp_path / "home", "torn02", state)
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    rc = main(["status", "torn02"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert "torn02/state.json" in lines[0] and lines[0].startswith("raysweep: error: ")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("resources, request_, match", [
    ({"CPU": 16.0}, {"gpu": 1}, "no GPU"),
    ({"CPU": 16.0, "GPU": 1.0}, {"gpu": 2}, "has 1"),
    ({"CPU": 2.0}, {"cpu": 4}, "has 2"),
], ids=["gpu-on-cpu-cluster", "more-gpus-than-cluster", "more-cpus-than-cluster"])
def test_trial_that_no_node_can_hold_is_refused_even_with_max_concurrent(
        resources: dict[str, float], request_: dict[str, float], match: str) -> None:
    """With search.max_concurrent set, a trial the cluster can never place used to wait
    forever; it is refused with one line instead."""
    from raysweep.errors import ConfigError
    from raysweep.sweep.runner import _max_concurrent
    from raysweep.sweep.space import parse_sweep, resolve_spec

    spec = resolve_spec(parse_sweep({"method": "finetune", "resources_per_trial": request_,
                                     "search": {"max_concurrent": 2}}))
    with pytest.raises(ConfigError, match=match):
        _max_concurrent(spec, resources)


def test_empty_home_and_cache_variables_mean_unset(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """``RAYSWEEP_CACHE= raysweep ...`` must not scatter workloads/ and sweeps/ into the cwd."""
    from raysweep.sweep.catalog import sweeps_home
    from raysweep.workload import cache_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYSWEEP_CACHE", "")
    monkeypatch.setenv("RAYSWEEP_HOME", "")
    assert cache_root() == Path.home() / ".cache" / "raysweep"
    assert sweeps_home() == (tmp_path / ".raysweep" / "sweeps").resolve()
