"""``raysweep bench forgetting-quality``: input checks, the model tasks, the rows, the report
and MLflow; the whole command on digits-class with a tiny K (slow: it starts Ray)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from raysweep.bench import forgetting as fq
from raysweep.cli import main

BEFORE = ["afile", "readonly.md", "readonly2.json"]


@pytest.fixture()
def fresh_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cwd whose MLflow store and workload cache do not exist yet."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    for name in ("readonly.md", "readonly2.json"):
        (tmp_path / name).write_text("kept")
        (tmp_path / name).chmod(0o444)
    return tmp_path


@pytest.mark.parametrize("args, needle", [
    (["--methods", "scurb"], "did you mean 'scrub'"),
    (["--methods", ","], "--methods: give at least one method"),
    (["--methods", "ssd,finetune,ssd"], "ssd given twice"),
    (["--methods", "rotate", "--workload", "rt-class-minilm-small"], "image models only"),
    (["--k", "3"], "--k"),
    (["--k", "100000"], "--k"),
    (["--workload", "digits-clas"], "did you mean 'digits-class'"),
    (["--workload", "afile"], "afile"),
    (["--scale", "huge"], "--scale 'huge'"),
    (["-o", "report.txt"], "ending in .md"),
    (["-o", "afile/report.md"], "not a writable directory"),
    (["-o", "readonly.md"], "readonly.md exists and is read-only"),
    (["-o", "readonly2.md"], "readonly2.json exists and is read-only"),
    (["--set", "scrub.lr=-1"], "--set scrub: scrub.lr"),
    (["--set", "ssd.lr=0.1"], "unknown parameter 'lr'"),
    (["--set", "salun.lr=0.1"], "'salun' is not in --methods"),
    (["--set", "scrub=1"], "expected METHOD.FIELD=VALUE"),
    (["--set", "scrub.lr"], "expected key=value"),
    (["--delta", "0.9"], "--delta"),
    (["--bucket-width", "0"], "--bucket-width"),
    (["--seed", "-1"], "--seed"),
    (["--device", "tpu"], "--device 'tpu'"),
    (["--device", "cuda:7"], "--device"),
    (["--gpus-per-model", "0.5"], "--gpus-per-model 0.5"),
    (["--address", "127.0.0.1:1"], "no Ray cluster reachable"),
    (["--address", "nonsense"], "expected HOST:PORT"),
])
def test_bad_input_is_one_line_and_writes_nothing(fresh_env: Path, capsys: pytest.CaptureFixture,
                                                  args: list[str], needle: str) -> None:
    import os

    if "read-only" in needle and os.geteuid() == 0:
        pytest.skip("root writes read-only files: nothing to refuse")
    rc = main(["bench", "forgetting-quality", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("raysweep: error:"), err
    assert needle in err[0]
    assert sorted(p.name for p in fresh_env.iterdir()) == BEFORE   # no db, cache, report


@pytest.mark.parametrize("env, value, needle", [
    ("MLFLOW_TRACKING_URI", "file:///tmp/mlruns", "file store is not supported"),
    ("RAYSWEEP_CACHE", "afile", "RAYSWEEP_CACHE"),
    ("RAYSWEEP_NUM_CPUS", "zero", "RAYSWEEP_NUM_CPUS"),
])
def test_bad_environment_is_one_line_and_writes_nothing(fresh_env: Path, capsys, monkeypatch,
                                                        env: str, value: str, needle: str) -> None:
    monkeypatch.setenv(env, value)
    rc = main(["bench", "forgetting-quality"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert sorted(p.name for p in fresh_env.iterdir()) == BEFORE


def test_seed_streams_are_disjoint() -> None:
    seeds = {role: {fq.model_seed(3, role, i) for i in (0, 1, fq.MAX_K)}
             for role in ("original", "oracle", "unlearned")}
    assert not seeds["original"] & seeds["oracle"]
    assert not seeds["oracle"] & seeds["unlearned"]
    assert not seeds["original"] & seeds["unlearned"]
    assert fq.model_seed(0, "oracle", 5) != fq.model_seed(1, "oracle", 5)
    # Per-epoch seeds (seed + epoch, at most 1,000 epochs) never reach the next role's stream.
    assert fq.model_seed(3, "original", fq.MAX_K) + 1000 < fq.model_seed(3, "oracle", 0)
    assert fq.model_seed(3, "oracle", fq.MAX_K) + 1000 < fq.model_seed(3, "unlearned", 0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    import os

    from raysweep.workload import load_workload_config, prepare

    old = os.environ.get("RAYSWEEP_CACHE")
    os.environ["RAYSWEEP_CACHE"] = str(tmp_path_factory.mktemp("fq-cache"))
    try:
        yield prepare(load_workload_config("digits-class"), device="cpu", quiet=True)
    finally:
        if old is None:
            os.environ.pop("RAYSWEEP_CACHE", None)
        else:
            os.environ["RAYSWEEP_CACHE"] = old


def test_model_tasks_in_process(prepared) -> None:
    # The Ray tasks are plain functions: an original, an oracle, and finetune from the original.
    n_forget = len(prepared.splits["forget"])
    state, orig = fq._train(prepared, "original", 0, fq.model_seed(0, "original", 0), "cpu")
    none, oracle = fq._train(prepared, "oracle", 0, fq.model_seed(0, "oracle", 0), "cpu")
    assert orig.error is None and oracle.error is None
    assert state is not None and none is None            # only originals are handed on
    assert orig.confidence.shape == oracle.confidence.shape == (n_forget,)
    # Class forgetting: the original recognises the digit, the oracle never saw it.
    assert orig.confidence.mean() > 0 > oracle.confidence.mean()
    assert orig.retain_acc > 0.9 and oracle.test_acc > 0.9
    ft = fq._unlearn(prepared, state, "finetune", 0, fq.model_seed(0, "unlearned", 0), "cpu")
    assert ft.error is None and ft.confidence.shape == (n_forget,)
    orphan = fq._unlearn(prepared, None, "finetune", 1, 7, "cpu")
    assert orphan.error == "original 1 failed to train"
    broken = fq._unlearn(prepared, {"not": "a state"}, "finetune", 2, 7, "cpu")
    assert broken.error is not None and broken.confidence is None
    unknown = fq._unlearn(prepared, state, "no-such-method", 3, 7, "cpu")
    assert "unknown method 'no-such-method'" in unknown.error
    # A config changes what runs: one epoch of fine-tuning moves the model less than five.
    one = fq._unlearn(prepared, state, "finetune", 0, fq.model_seed(0, "unlearned", 0), "cpu",
                      {"epochs": 1})
    assert one.error is None
    assert abs(one.confidence.mean() - orig.confidence.mean()) < \
        abs(ft.confidence.mean() - orig.confidence.mean())


def _stats(role: str, shift: float, k: int, rng: np.random.Generator,
           fail: int = 0) -> list[fq.ModelStats]:
    out = [fq.ModelStats(role, i, i, confidence=rng.normal(shift, 1.0, 30).astype(np.float32),
                         retain_acc=0.9, test_acc=0.8, seconds=1.0) for i in range(k)]
    for st in out[:fail]:
        st.confidence, st.error = None, "RuntimeError: boom"
    return out


def _report(rng: np.random.Generator) -> fq.ForgettingReport:
    oracles = _stats("oracle", 0.0, 8, rng)
    settings = {"workload": "digits-class", "k": 8, "methods": ["retrain"], "seed": 0,
                "device": "cpu", "delta": 0.01, "bucket_width": 0.5, "n_buckets": 13,
                "statistic": "logit", "forget_examples": 30, "seconds": 12.0,
                "command": "raysweep bench forgetting-quality --k 8", "address": "local",
                "ray_resources": {"CPU": 2.0}, "machine": "test: 2 CPU cores",
                "finished": "2026-01-01 00:00", "git_sha": "abc",
                "seeds": {"original": "1..8", "oracle": "2..9", "unlearned": "3..10"}}
    rep = fq.ForgettingReport(settings, oracle={"models": 8, "retain_acc": 0.9,
                                                "test_acc": 0.8, "mean_seconds": 1.0})
    kw = {"delta": 0.01, "width": 0.5, "seed": 0, "min_models": 4}
    rep.rows = [fq._row("original", _stats("original", 6.0, 8, rng), oracles, **kw),
                fq._row("retrain", _stats("retrain", 0.0, 8, rng, fail=1), oracles, **kw)]
    rep.failures = [{"role": "retrain", "index": 0, "seed": 0, "error": "RuntimeError: boom"}]
    return rep


def test_rows_separate_the_anchor_from_exact_unlearning() -> None:
    rep = _report(np.random.default_rng(0))
    original, retrain = rep.rows
    assert original["forgetting_quality"] < 0.01 and original["lira_auc"] > 0.95
    assert retrain["models"] == 7 and retrain["failed_models"] == 1   # the failed one dropped
    assert retrain["forgetting_quality"] == pytest.approx(retrain["permutation_null"], abs=0.15)
    assert retrain["lira_auc"] < 0.7
    assert retrain["retain_ratio"] == pytest.approx(1.0)
    assert retrain["score"] == pytest.approx(retrain["forgetting_quality"])
    assert sum(retrain["bucket_histogram"]) == 30


def test_too_few_models_is_a_failed_row() -> None:
    rng = np.random.default_rng(1)
    row = fq._row("scrub", _stats("scrub", 0.0, 5, rng, fail=2), _stats("oracle", 0, 8, rng),
                  delta=0.01, width=0.5, seed=0, min_models=4)
    assert "3 scrub and 8 oracle models trained" in row["error"]
    assert "forgetting_quality" not in row


def test_report_and_mlflow(tmp_path: Path, empty_mlflow_db: Path, monkeypatch) -> None:
    import shutil

    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copy(empty_mlflow_db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    rep = _report(np.random.default_rng(2))
    run_id = fq.log_to_mlflow(rep, tmp_path / "out" / "fq.md")
    page = (tmp_path / "out" / "fq.md").read_text()
    assert run_id in page and "| original | 8 |" in page and "| retrain | 7 |" in page
    assert "1 model(s) failed" in page
    doc = json.loads((tmp_path / "out" / "fq.json").read_text())
    assert doc["mlflow_run_id"] == run_id and [r["row"] for r in doc["rows"]] == ["original",
                                                                                  "retrain"]
    c = MlflowClient(tracking_uri=f"sqlite:///{db}")
    parent = c.get_run(run_id)
    assert parent.data.tags["raysweep.kind"] == fq.KIND
    assert parent.info.status == "FAILED"                    # a model failed
    assert parent.data.metrics["fq/original/forgetting_quality"] < 0.01
    children = c.search_runs([parent.info.experiment_id],
                             filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    by_method = {r.data.tags["raysweep.method"]: r for r in children}
    assert set(by_method) == {"original", "retrain"}
    assert math.isclose(by_method["retrain"].data.metrics["fq/lira_auc"],
                        rep.rows[1]["lira_auc"], rel_tol=1e-9)


def test_command_keeps_the_results_when_mlflow_fails(fresh_env: Path, capsys,
                                                    monkeypatch) -> None:
    # Training is the expensive part: a store that fails afterwards must not lose the page.
    def broken_store(report, path):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(fq, "run_forgetting_quality",
                        lambda *a, **kw: _report(np.random.default_rng(3)))
    monkeypatch.setattr(fq, "log_to_mlflow", broken_store)
    rc = main(["bench", "forgetting-quality", "-o", "fq.md"])
    err = capsys.readouterr().err
    assert rc == 1 and "database is locked" in err
    assert "| original | 8 |" in (fresh_env / "fq.md").read_text()


def test_set_reaches_the_unlearning_tasks(fresh_env: Path, monkeypatch) -> None:
    seen = {}

    def fake_run(cfg, **kw):
        seen.update(kw)
        raise KeyboardInterrupt   # stop before MLflow: only the arguments matter here

    monkeypatch.setattr(fq, "run_forgetting_quality", fake_run)
    rc = main(["bench", "forgetting-quality", "--methods", "scrub,ssd", "--set", "scrub.lr=1e-4",
               "--set", "scrub.epochs=4", "--set", "ssd.selection_weighting=15"])
    assert rc == 130
    assert seen["configs"] == {"scrub": {"lr": 1e-4, "epochs": 4},
                               "ssd": {"selection_weighting": 15}}
    assert "--set scrub.lr=1e-4 --set scrub.epochs=4" in seen["command"]


def test_command_exits_1_when_a_model_failed(fresh_env: Path, empty_mlflow_db: Path, capsys,
                                             monkeypatch) -> None:
    import shutil

    shutil.copy(empty_mlflow_db, fresh_env / "mlflow.db")   # skips the schema migrations
    monkeypatch.setattr(fq, "run_forgetting_quality",
                        lambda *a, **kw: _report(np.random.default_rng(4)))
    rc = main(["bench", "forgetting-quality", "--k", "8", "-o", "fq.md"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "retrain: F" in out and "MLflow run:" in out
    assert (fresh_env / "fq.md").is_file() and (fresh_env / "mlflow.db").is_file()


def test_infeasible_tasks_fail_instead_of_waiting(monkeypatch) -> None:
    import contextlib

    from raysweep.errors import UserError
    from raysweep.sweep import runner
    from raysweep.workload import load_workload_config

    @contextlib.contextmanager
    def cpu_only_cluster(address):
        yield {"resources": {"CPU": 4.0}, "started": False, "address": "HEAD:6379"}

    monkeypatch.setattr(runner, "ray_session", cpu_only_cluster)
    with pytest.raises(UserError, match=r"1 CPU and 0\.5 GPU, but the Ray at HEAD:6379 has 4 CPU "
                                        r"and 0 GPU"):
        fq.run_forgetting_quality(load_workload_config("digits-class"), methods=["ssd"], k=4,
                                  device="cuda", address="HEAD:6379", gpus_per_model=0.5,
                                  log=lambda m: None)


@pytest.mark.slow
def test_command_on_digits_with_tiny_k(fresh_env: Path, capsys) -> None:
    """The real command: Ray tasks, the rows, the page, MLflow (about 2 minutes on 2 cores)."""
    from mlflow.tracking import MlflowClient

    rc = main(["bench", "forgetting-quality", "--k", "4", "--methods", "finetune,retrain",
               "-o", "fq.md", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads(out)
    rows = {r["row"]: r for r in doc["rows"]}
    assert set(rows) == {"original", "finetune", "retrain"}
    assert all(r["models"] == 4 for r in rows.values())
    # Class forgetting of digit 0: the originals are told apart from the oracles on every
    # example; models retrained from scratch are not (their score is at the finite-K null).
    assert rows["original"]["forgetting_quality"] < 0.01 and rows["original"]["lira_auc"] > 0.9
    assert rows["retrain"]["forgetting_quality"] > rows["original"]["forgetting_quality"] + 0.2
    assert rows["retrain"]["lira_auc"] < 0.8
    assert (fresh_env / "fq.md").is_file() and (fresh_env / "fq.json").is_file()
    c = MlflowClient(tracking_uri=f"sqlite:///{fresh_env}/mlflow.db")
    parent = c.get_run(doc["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    children = c.search_runs([parent.info.experiment_id],
                             filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 3


def test_a_task_ray_could_not_run_reports_its_own_error() -> None:
    class Wrapped(Exception):     # what ray.get raises for a task that raised: .cause
        cause = ValueError("RAYSWEEP_CACHE /data: directory is not writable")

    assert fq._task_error(Wrapped("ray::_train() (pid=1)\n...")) == \
        "ValueError: RAYSWEEP_CACHE /data: directory is not writable"
    assert fq._task_error(RuntimeError("worker died\ntrace")) == "RuntimeError: worker died"
