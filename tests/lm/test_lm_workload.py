"""Text-generation workloads on a tiny GPT: preparation and cache, the metrics and their
oracle references, every language-model method through the run engine, LoRA adapters, the
refusals (a classifier method on a language model, bad ``lm:`` settings) and one sweep end to
end on local Ray.

The data are synthetic passages in three "sources" written to CSV (``text-files``): each
source has its own words, so a one-layer GPT memorises its training passages in seconds.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from raysweep.cli import main
from raysweep.errors import ConfigError
from raysweep.methods import get_method, list_methods

LM_METHODS = [m for m in list_methods() if "generate" in get_method(m).tasks]


def _write_corpus(root: Path) -> None:
    rng = random.Random(0)
    words = {s: [f"{s}{i}" for i in range(30)] for s in ("alpha", "beta", "gamma")}
    for split, n in (("train", 40), ("test", 10)):
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for source, ws in words.items():
                for _ in range(n):
                    w.writerow([" ".join(rng.choice(ws) for _ in range(12)), source])


def _workload(root: Path, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1, "name": "tiny-lm",
        "dataset": {"name": "text-files", "root": str(root), "val_fraction": 0.25},
        "model": {"name": "gpt-tiny", "options": {"n_layer": 1, "n_embd": 32, "n_head": 2}},
        "scenario": {"kind": "class", "classes": ["beta"]},
        "train": {"epochs": 25, "lr": 0.01, "optimizer": "adamw", "weight_decay": 0.0,
                  "batch_size": 16},
        "lm": {"vocab_size": 320, "context": 24, "prefix": 6, "suffix": 6, "retain_rows": 20},
        "seed": 0}
    doc.update(changes)
    return doc


@pytest.fixture(scope="module")
def lm_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("lm")
    _write_corpus(root)
    path = root / "tiny-lm.yaml"
    path.write_text(yaml.safe_dump(_workload(root)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYSWEEP_CACHE", str(root / "cache"))
        yield root, path


@pytest.fixture(scope="module")
def tiny(lm_env: Any) -> Any:
    from raysweep.workload import load_workload_config, prepare

    return prepare(load_workload_config(lm_env[1]), quiet=True)


def test_prepare_trains_a_memorising_original_caches_it_and_reloads_the_same(lm_env, tiny):
    from raysweep.lm.workload import PreparedLMWorkload
    from raysweep.workload import load_workload_config, prepare

    assert isinstance(tiny, PreparedLMWorkload) and tiny.task == "generate"
    assert tiny.class_names == ["alpha", "beta", "gamma"] and tiny.forget_classes == (1,)
    f_orig, f_oracle = tiny.original_outputs["forget"], tiny.retrain_outputs["forget"]
    assert f_orig.mean_nll() < f_oracle.mean_nll() - 1.0    # the original knows D_f
    again = prepare(load_workload_config(lm_env[1]), quiet=True, cached_only=True)
    assert again is not None and again.tokenizer == tiny.tokenizer
    np.testing.assert_array_equal(again.original_outputs["forget"].nll, f_orig.nll)
    np.testing.assert_array_equal(again.js_reference, tiny.js_reference)
    for k, v in tiny.original_state.items():
        assert torch.equal(again.original_state[k], v), k


def test_the_oracle_scores_zero_and_the_original_pays_on_every_term(tiny):
    from raysweep.metrics import ObjectiveConfig
    from raysweep.metrics.oracle import LM_TERMS

    refs = tiny.reference_metrics()
    objective = ObjectiveConfig().for_task("generate")
    for t in LM_TERMS:
        for split in ("val", "test"):
            assert refs["retrain"][t.dist_key(split)] == pytest.approx(0.0, abs=1e-3), t.name
    assert objective.score(refs["retrain"]) == pytest.approx(0.0, abs=1e-3)
    assert objective.score(refs["original"]) > 1.0
    assert refs["original"]["dist/forget_acc"] > 0.3
    assert refs["original"]["mia/auc/val"] > refs["retrain"]["mia/auc/val"]
    rows = tiny.signal_check()
    assert [r["term"] for r in rows] == [t.name for t in LM_TERMS]
    assert all(r["weighted"] for r in rows)


def test_evaluate_returns_exactly_the_declared_language_model_keys(tiny):
    from raysweep.metrics.registry import task_keys

    got = tiny.evaluate(tiny.original_outputs, seconds=1.0, retrain_seconds=2.0)
    assert set(got) == task_keys("generate", source="evaluate")
    assert all(math.isfinite(v) for v in got.values())


def test_selection_gives_the_full_evaluation_s_values_for_the_keys_it_records(tiny):
    model = tiny.build_model("original")
    dev = torch.device("cpu")
    sel = tiny.evaluate_selection(tiny.forward_selection(model, dev, batch_size=32),
                                  seconds=None)
    full = tiny.evaluate(tiny.forward_full(model, tiny.unlearn_data(), dev, batch_size=32),
                         seconds=None)
    for key in ("dist/forget_acc", "dist/heldout_acc/val", "dist/mia_auc/val", "dist/js",
                "dist/forget_verbatim", "rel/retain_drop"):
        assert sel[key] == pytest.approx(full[key], abs=1e-9), key
    assert "test/acc" not in sel   # selection never reads test


@pytest.mark.parametrize("method", LM_METHODS)
def test_every_language_model_method_runs_through_the_run_engine(tiny, method):
    from raysweep.engine import run_once

    config = {} if method == "retrain" else {"epochs": 1}
    out = run_once(tiny, method, config, seed=0, device=torch.device("cpu"))
    assert math.isfinite(out.metrics["objective"]) and out.metrics["cost/ratio"] > 0
    assert out.metrics["epochs"] == (25 if method == "retrain" else 1)


def test_lora_trains_adapters_only_and_leaves_the_base_weights_as_they_were(tiny):
    from raysweep.engine import run_once

    out = run_once(tiny, "npo", {"epochs": 2, "lora_rank": 4, "lr": 1e-2}, seed=0,
                   device=torch.device("cpu"))
    state = out.model.state_dict()
    adapters = [k for k in state if "lora_" in k]
    assert adapters and all(state[k].abs().sum() > 0 for k in adapters if "lora_B" in k)
    base = {k.replace(".base_layer", ""): v for k, v in state.items() if "lora_" not in k}
    for k, v in tiny.original_state.items():
        assert torch.equal(base[k], v), k


def test_a_classifier_method_on_a_language_model_is_refused_in_one_line(tiny):
    from raysweep.engine import run_once
    from raysweep.methods import UnsupportedModelError

    with pytest.raises(UnsupportedModelError) as exc:
        run_once(tiny, "ssd", {}, seed=0, device=torch.device("cpu"))
    msg = str(exc.value)
    assert "\n" not in msg and "language-model workloads" in msg and "npo" in msg


@pytest.mark.parametrize(("change", "fragment"), [
    ({"lm": {"context": 16, "prefix": 10, "suffix": 8}}, "must fit in context"),
    ({"lm": {"vocab_size": 100}}, "vocab_size"),
    ({"model": {"name": "gpt-tiny", "pretrained": True}}, "trained by the workload"),
    ({"model": {"name": "gpt-tiny", "options": {"context": 99}}}, "lm.context"),
    ({"model": {"name": "smallcnn"}}, "lm: is for language-model workloads"),
    ({"dataset": {"name": "digits"}}, "needs a text dataset"),
    ({"model": {"name": "gpt-tiny", "options": {"n_embd": 32, "n_head": 3}}}, "multiple of"),
    ({"model": {"name": "gpt-tiny", "options": {"n_layer": 0}}}, "n_layer must be"),
    ({"model": {"name": "gpt-tiny", "options": {"dropout": 1.0}}}, "dropout must be"),
    ({"lm": {"mink": 0}}, "lm.mink"),
])
def test_bad_language_model_settings_are_one_line_before_anything_is_trained(
        lm_env, tmp_path, change, fragment):
    from raysweep.config import WorkloadConfig, parse_model
    from raysweep.workload import check_workload

    doc = _workload(lm_env[0], **change)
    with pytest.raises(ConfigError) as exc:
        check_workload(parse_model(WorkloadConfig, doc, "w.yaml"))
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_a_sweep_of_language_model_methods_runs_end_to_end(lm_env, tmp_path, monkeypatch,
                                                           capsys):
    _root, workload = lm_env
    monkeypatch.setenv("RAYSWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RAYSWEEP_NUM_CPUS", "2")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "lm.yaml"
    sweep.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "lm-tiny", "workload": str(workload),
        "methods": {"npo": {"parameters": {"lora_rank": {"values": [0, 4]}}},
                    "grad-diff": {"parameters": {"lr": {"distribution": "loguniform",
                                                       "min": 1e-4, "max": 1e-2}}}},
        "search": {"algorithm": "tpe", "num_samples": 3, "max_concurrent": 2, "seed": 0},
        "budget": {"max_epochs": 2}, "seeds": [0],
        "resources_per_trial": {"cpu": 1, "gpu": 0}}))
    try:
        assert main(["run", str(sweep)]) == 0
        capsys.readouterr()
        assert main(["leaderboard", "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    trials = [r for r in rows if r.get("kind") == "trial"]
    refs = {r["method"]: r for r in rows if r.get("kind") == "reference"}
    assert trials and {"original", "retrain"} <= set(refs)
    assert all("forget/verbatim" in r and math.isfinite(r["objective"]) for r in trials)
    assert refs["retrain"]["objective"] == pytest.approx(0.0, abs=1e-3)


def test_a_lora_checkpoint_holds_the_adapters_and_restores_the_same_model():
    import copy

    from raysweep.methods._lm import (
        LORA_CONFIG_KEY,
        LMMethodConfig,
        attach_lora,
        kept_weights,
        restore_weights,
    )
    from raysweep.testing import tiny_lm_problem

    prob = tiny_lm_problem()
    tuned = copy.deepcopy(prob.model)
    attach_lora(tuned, LMMethodConfig(lora_rank=4, lora_alpha=8))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_()
    kept = kept_weights(tuned)
    assert LORA_CONFIG_KEY in kept and all("lora_" in k for k in kept if k != LORA_CONFIG_KEY)
    assert kept[LORA_CONFIG_KEY].tolist() == [4.0, 8.0]
    restored = restore_weights(copy.deepcopy(prob.model), kept)
    x = prob.data.forget.tensors[0][:4]
    assert torch.allclose(restored(x), tuned(x))
    assert not torch.allclose(restored(x), prob.model(x))
    plain = kept_weights(prob.model)     # no adapters: every weight
    assert set(plain) == set(prob.model.state_dict())
    foreign = {LORA_CONFIG_KEY: kept[LORA_CONFIG_KEY],
               "lm.nothing.lora_A.default.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="do not fit"):
        restore_weights(copy.deepcopy(tuned), foreign)


def test_a_trial_records_the_declared_per_epoch_keys_of_a_language_model(tiny):
    from raysweep.engine import TrialPlan, run_trial
    from raysweep.metrics import ObjectiveConfig
    from raysweep.metrics.registry import METRICS, per_epoch_keys
    from raysweep.sweep.space import ObjectiveSpec

    reports: list[dict[str, Any]] = []
    plan = TrialPlan(objectives=[ObjectiveSpec()], objective_config=ObjectiveConfig(),
                     reference={}, max_epochs=2)
    run_trial({"method": "grad-diff", "grad-diff": {"epochs": 2}, "seed": 0}, tiny, plan,
              report=lambda result, *_: reports.append(result))
    epochs = [r for r in reports if not r.get("rs/final")]
    assert len(epochs) == 2 and reports[-1].get("rs/final")
    for r in epochs:
        now = {k for k in r if k in METRICS}
        assert now - {"objective"} == set(per_epoch_keys("generate"))
    best = {k[len("best/"):] for k in reports[-1] if k.startswith("best/")}
    declared = {k for k, m in METRICS.items()
                if m.source in ("evaluate", "run") and "generate" in m.tasks}
    assert sorted(declared - best) == [] and sorted(best - set(METRICS)) == []


def test_a_lora_checkpoint_becomes_an_mlflow_model_with_the_same_outputs(tiny, tmp_path):
    import mlflow.pytorch

    from raysweep.methods._lm import LMMethodConfig, attach_lora, kept_weights
    from raysweep.sweep.runner import _log_best_model
    from raysweep.sweep.tracking import Tracker

    tuned = tiny.build_model()
    attach_lora(tuned, LMMethodConfig(lora_rank=4))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save(kept_weights(tuned), ckpt / "best.pt")
    full_bytes = sum(v.numel() * v.element_size() for v in tiny.original_state.values())
    assert (ckpt / "best.pt").stat().st_size < full_bytes / 2     # adapters, not the model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "lm", "sweep")
    run_id = tracker.client.create_run(tracker.client.create_experiment("lm-x")).info.run_id
    _log_best_model(tracker, run_id, str(ckpt), tiny)
    local = tracker.client.download_artifacts(run_id, "model", str(tmp_path / "dl"))
    loaded = mlflow.pytorch.load_model(local)    # no process-wide tracking URI is set
    x = tiny.splits["test"].tensors[0][:4]
    with torch.no_grad():
        assert torch.allclose(loaded(x), tuned(x), atol=1e-5)


class _Table(torch.nn.Module):
    """A "model" whose next-token logits depend only on the current token (a lookup table):
    with the table of the data's own transitions it continues every passage exactly."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits(ids).transpose(1, 2)


def test_the_statistics_are_what_their_definitions_say():
    from raysweep.lm.metrics import LMEvalConfig, forward_lm

    vocab, n, length = 12, 5, 10
    # passage i: tokens 2, 3, ..., a deterministic chain; the last passage is short
    x = torch.arange(2, 2 + length).repeat(n, 1) % vocab
    y = torch.roll(x, -1, dims=1)
    y[:, -1] = -100
    y[-1, 5:] = -100
    chain = torch.full((vocab, vocab), -10.0)
    for a in range(vocab):
        chain[a, (a + 1) % vocab] = 10.0
    cfg = LMEvalConfig(prefix=3, suffix=4, mink=0.5)
    ds = torch.utils.data.TensorDataset(x, y)
    perfect = forward_lm(_Table(chain), ds, torch.device("cpu"), cfg)
    assert perfect.verbatim[:-1].tolist() == [1.0] * (n - 1)
    assert math.isnan(perfect.verbatim[-1])          # 5 targets < prefix + suffix - 1
    assert perfect.correct.tolist() == perfect.tokens.tolist()
    assert perfect.tokens.tolist() == [length - 1] * (n - 1) + [5]
    # uniform: every next token has probability 1/vocab, so NLL and Min-K% are log(vocab)
    uniform = forward_lm(_Table(torch.zeros(vocab, vocab)), ds, torch.device("cpu"), cfg)
    assert np.allclose(uniform.nll, math.log(vocab)) and np.allclose(uniform.mink, math.log(vocab))
    # Min-K%: minus the mean of the ceil(k x n) smallest token log-probabilities
    wrong = chain.clone()
    wrong[5, 6], wrong[5, 7] = -10.0, 10.0             # one transition now goes astray
    lp = torch.log_softmax(wrong[x], -1).gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    got = forward_lm(_Table(wrong), ds, torch.device("cpu"), cfg)
    for i in range(n):
        real = lp[i][y[i] != -100].sort().values
        k = math.ceil(0.5 * len(real))
        assert got.mink[i] == pytest.approx(float(-real[:k].mean()), rel=1e-5)
    assert got.verbatim[:-1].tolist() == [0.0] * (n - 1)  # greedy decoding leaves the chain at 5


@pytest.mark.parametrize("damaged", ["tokenizer.json", "js_reference.npy",
                                     "original_outputs.npz", "retrain.pt"])
def test_a_damaged_cache_file_is_prepared_again_not_trusted(lm_env, tiny, tmp_path,
                                                            monkeypatch, damaged):
    import shutil

    from raysweep.workload import cache_root, load_workload_config, prepare

    source = next((cache_root() / "workloads").glob("tiny-lm-*"))
    copy_root = tmp_path / "cache"
    shutil.copytree(source, copy_root / "workloads" / source.name)
    path = copy_root / "workloads" / source.name / damaged
    whole = path.read_bytes()
    path.write_bytes(whole[: max(1, len(whole) // 3)])
    monkeypatch.setenv("RAYSWEEP_CACHE", str(copy_root))
    again = prepare(load_workload_config(lm_env[1]), quiet=True)
    assert path.read_bytes() == whole            # written again by a new preparation
    assert again is not None and again.tokenizer == tiny.tokenizer   # retrained, same tokenizer
    np.testing.assert_array_equal(again.original_outputs["forget"].nll,
                                  tiny.original_outputs["forget"].nll)
    assert len(again.js_reference) == len(again.splits["forget"])
