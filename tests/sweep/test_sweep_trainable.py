"""The trainable, run in-process on the digits workload (no Ray): reports, budget, resume,
failures."""

from __future__ import annotations

import json
import math

import pytest

from raysweep.methods import get_method
from raysweep.methods._base import MethodDivergedError
from raysweep.sweep.space import parse_sweep, resolve_spec
from raysweep.sweep.trainable import make_plan, objective_values, run_trial


def _plan(digits, **spec):
    w, refs = digits
    s = resolve_spec(parse_sweep({"method": "finetune", "workload": "digits-class", **spec}))
    return make_plan(s, w, refs)


CFG = {"method": "finetune", "finetune": {"epochs": 3, "lr": 0.02}, "seed": 0}


def test_reports_every_epoch_with_the_running_best(digits) -> None:
    w, _ = digits
    plan = _plan(digits)
    reports = []
    last = run_trial(CFG, w, plan, report=lambda r, s, b: reports.append((r, s, b)))
    *epochs, final = reports
    assert [r["epoch"] for r, _, _ in epochs] == [1, 2, 3]
    for r, state, _ in epochs:
        # per epoch: what selection reads (D_f, val), never the test split
        for key in ("forget/acc", "dist/heldout_acc/val", "dist/mia_auc/val", "time/ratio",
                    "objective", "best/objective", "best_epoch", "rs/method_seconds",
                    "rs/eval_seconds", "train/loss"):
            assert key in r, key
        assert not [k for k in r if "test" in k and not k.startswith("best/")], r.keys()
        assert r["best/objective"] == min(x["objective"] for x, _, _ in epochs[: r["epoch"]])
        assert state["epoch"] == r["epoch"] and len(state["fingerprints"]) == r["epoch"]
    assert epochs[0][2] is not None  # the first epoch's weights are the first best
    # then the best epoch in full, once: every metric, the same val objective
    r, state, _ = final
    assert r["rs/final"] == 1.0 and state["final"] and state["done"]
    for key in ("best/test/acc", "best/mia/lr_auc", "best/gap/oracle", "best/objective/test",
                "best/retain/acc"):
        assert key in r, key
    assert r["best/objective"] == pytest.approx(epochs[-1][0]["best/objective"], abs=1e-9)
    assert last == r
    # evaluation time is not charged to the method
    assert last["rs/method_seconds"] < last["rs/trial_seconds"]
    assert 0 < last["rs/eval_seconds"] < last["rs/trial_seconds"]


DIGITS_RANDOM = """\
schema_version: 1
name: digits-random
dataset: {name: digits, val_fraction: 0.1}
model: {name: mlp}
scenario: {kind: random, fraction: 0.1}
train: {epochs: 15, lr: 0.05, batch_size: 32}
seed: 0
"""


@pytest.mark.parametrize("workload", ["digits-class", "digits-random"])
def test_selection_evaluation_gives_the_full_evaluation_values(workload, sweep_cache, tmp_path,
                                                               monkeypatch) -> None:
    """Every key the per-epoch evaluation computes equals the full evaluation's, also for the
    membership probe of random forgetting (which reads only the probe's rows of D_r)."""
    import torch

    from raysweep.metrics import forward_splits
    from raysweep.workload import load_workload_config, prepare

    monkeypatch.setenv("RAYSWEEP_CACHE", str(sweep_cache))
    if workload == "digits-random":
        (tmp_path / "digits-random.yaml").write_text(DIGITS_RANDOM)
        workload = str(tmp_path / "digits-random.yaml")
    w = prepare(load_workload_config(workload), quiet=True)
    model = w.build_model("original")
    with torch.no_grad():  # a model that is neither the original nor the oracle
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(0)))
    dev = torch.device("cpu")
    for seed in (0, 7):
        full = w.evaluate(forward_splits(model, w.unlearn_data(), dev), seconds=1.0,
                          catboost=False, seed=seed)
        sel_out = w.forward_selection(model, dev, batch_size=64, seed=seed)
        assert len(sel_out["val"]) == len(w.splits["val"])
        if w.matched.get("val") is None:
            assert 0 < len(sel_out["retain"]) < len(w.splits["retain"])
        else:
            assert "retain" not in sel_out
        sel = w.evaluate_selection(sel_out, seconds=1.0, seed=seed)
        assert {"dist/probe/val", "dist/mia_auc/val", "dist/js"} <= sel.keys()
        assert {k: full[k] for k in sel} == pytest.approx(sel, abs=1e-12)


def test_selection_on_a_val_subset_compares_like_with_like(digits) -> None:
    """On a stratified val subset the oracle is measured on the same rows: it scores 0."""
    import torch

    w, _ = digits
    rows = w.selection_rows(0, val_rows=60)["val"]
    labels = w.splits["val"].tensors[1].numpy()
    assert len(rows) == 60 and set(labels[rows]) == set(labels)  # every class kept
    oracle = w.build_model("retrain")
    out = w.forward_selection(oracle, torch.device("cpu"), batch_size=64, val_rows=60)
    m = w.evaluate_selection(out, seconds=None, val_rows=60)
    assert len(out["val"]) == 60
    assert m["dist/heldout_acc/val"] == 0 and m["dist/mia_auc/val"] == 0
    assert m["dist/forget_acc"] == 0 and m["dist/probe/val"] == pytest.approx(0, abs=1e-9)


def test_per_epoch_modes_pick_the_same_epoch_and_report_the_same_best(digits) -> None:
    w, _ = digits
    full = run_trial(CFG, w, _plan(digits, evaluation={"per_epoch": "full"}),
                     report=lambda *a: None)
    sel = run_trial(CFG, w, _plan(digits), report=lambda *a: None)
    assert "rs/final" not in full and sel["rs/final"] == 1.0
    assert sel["best_epoch"] == full["best_epoch"]
    common = [k for k in full if k.startswith("best/") and not k.startswith("best/time/")]
    assert {k: sel[k] for k in common} == pytest.approx({k: full[k] for k in common}, abs=1e-9)


def test_asha_and_one_epoch_trials_evaluate_in_full(digits) -> None:
    w, _ = digits
    asha = _plan(digits, search={"early_terminate": {"type": "asha", "grace_period": 1}},
                 budget={"max_epochs": 3})
    assert asha.per_epoch_eval == "full"
    reports: list = []
    run_trial(CFG, w, _plan(digits, budget={"max_epochs": 1}),
              report=lambda r, s, b: reports.append(r))
    assert len(reports) == 1 and "test/acc" in reports[0] and "rs/final" not in reports[0]


def test_a_trial_killed_before_its_full_evaluation_finishes_it_on_resume(digits) -> None:
    w, _ = digits
    plan = _plan(digits)
    first: list = []
    run_trial(CFG, w, plan, report=lambda r, s, b: first.append((r, s, b)))
    *epochs, final = first
    best_epoch = epochs[-1][0]["best_epoch"]
    best_weights = epochs[best_epoch - 1][2]
    state = json.loads(json.dumps({**epochs[-1][1], "done": True}))  # killed after epoch 3
    again: list = []
    last = run_trial(CFG, w, plan, report=lambda r, s, b: again.append(r), resume_state=state,
                     resume_best=best_weights)
    assert len(again) == 1 and last["rs/final"] == 1.0
    assert last["best/test/acc"] == pytest.approx(final[0]["best/test/acc"])
    finished = json.loads(json.dumps(final[1]))
    assert run_trial(CFG, w, plan, report=lambda *a: pytest.fail("reported"),
                     resume_state=finished, resume_best=best_weights) == finished["result"]


def test_epoch_and_time_budgets_are_enforced_by_the_trainable(digits) -> None:
    w, _ = digits
    reports: list = []
    run_trial(CFG, w, _plan(digits, budget={"max_epochs": 1}),
              report=lambda r, s, b: reports.append(s))
    assert len(reports) == 1 and reports[0]["done"]
    reports.clear()
    run_trial(CFG, w, _plan(digits, budget={"max_seconds": 1e-6}),
              report=lambda r, s, b: reports.append((r, s)))
    (r, s), (final, _) = reports  # stopped at the first epoch past the budget; then in full
    assert r["budget/over"] == 1.0 and s["done"] and r["best_epoch"] == 1
    assert final["rs/final"] == 1.0 and final["best_epoch"] == 1


def test_resume_skips_finished_epochs(digits) -> None:
    w, _ = digits
    plan = _plan(digits)
    first: list = []
    run_trial(CFG, w, plan, report=lambda r, s, b: first.append((r, s, b)))
    state = json.loads(json.dumps(first[1][1]))  # as stored in the checkpoint after epoch 2
    best = next(b for r, s, b in reversed(first[:2]) if b is not None)  # and its best.pt
    second: list = []
    run_trial(CFG, w, plan, report=lambda r, s, b: second.append((r, s)), resume_state=state,
              resume_best=best)
    assert [r["epoch"] for r, _ in second] == [3, 3]  # epochs 1-2 replayed silently; final
    assert second[0][1]["replay_mismatch"] == []  # the replay reproduced the same weights
    assert second[0][0]["objective"] == pytest.approx(first[2][0]["objective"])
    assert second[-1][0]["best/test/acc"] == pytest.approx(first[-1][0]["best/test/acc"])
    done = json.loads(json.dumps(first[-1][1]))
    assert run_trial(CFG, w, plan, report=lambda *a: pytest.fail("reported"),
                     resume_state=done, resume_best=best) == done["result"]


def test_non_finite_loss_fails_the_trial(digits, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path: fine-tuning's own epoch loss goes NaN, run_method refuses the epoch
    before the trial evaluates or reports it."""
    import raysweep.methods.finetune as finetune

    reports: list = []
    monkeypatch.setattr(finetune, "ce_epoch", lambda *a, **k: math.nan)
    with pytest.raises(MethodDivergedError, match=r"finetune diverged at epoch 1 \(loss=nan\)"):
        run_trial(CFG, digits[0], _plan(digits), report=lambda *a: reports.append(a))
    assert reports == []


def test_objectives_with_targets_and_goals(digits) -> None:
    plan = _plan(digits, objectives=[{"metric": "mia/auc/val", "target": 0.5},
                                     {"metric": "heldout/acc/val", "goal": "maximize"}])
    vals = objective_values({"mia/auc/val": 0.7, "heldout/acc/val": math.nan}, plan)
    assert vals["mia/auc/val_to_0.5"] == pytest.approx(0.2)
    assert vals["heldout/acc/val"] == -math.inf  # non-finite -> the worst value for its goal


def test_precision_autocasts_the_method_but_never_evaluation_or_full_precision_methods(
        digits, monkeypatch) -> None:
    import torch

    import raysweep.engine as trainable  # the run engine calls run_method

    w, _ = digits
    seen: dict[str, list] = {"method": [], "eval": []}
    real_run, real_fwd = trainable.run_method, w.forward_selection

    def run_method(name, *a, **k):
        seen["method"].append((name, torch.is_autocast_enabled("cpu"),
                               torch.get_autocast_dtype("cpu")))
        return real_run(name, *a, **k)

    def forward_selection(*a, **k):
        seen["eval"].append(torch.is_autocast_enabled("cpu"))
        return real_fwd(*a, **k)

    monkeypatch.setattr(trainable, "run_method", run_method)
    monkeypatch.setattr(w, "forward_selection", forward_selection)
    plan = _plan(digits, precision="bf16")
    assert plan.precision == "bf16"
    last = run_trial(CFG, w, plan, report=lambda *a: None)
    assert math.isfinite(last["best/objective"])
    run_trial({"method": "ssd", "ssd": {}, "seed": 0}, w, plan, report=lambda *a: None)
    assert seen["method"] == [("finetune", True, torch.bfloat16), ("ssd", False, torch.bfloat16)]
    assert seen["eval"] and not any(seen["eval"])  # evaluation ran in fp32
    assert get_method("ssd").full_precision and not get_method("finetune").full_precision


def test_data_moves_to_an_accelerator_only(digits) -> None:
    import torch

    from raysweep.sweep.trainable import on_device

    w, _ = digits
    data = w.unlearn_data()
    assert on_device(data, torch.device("cpu")) is data  # the host keeps the host's tensors
    moved = data.to("cpu")
    assert moved is not data and moved.nbytes() == data.nbytes() > 0
    assert torch.equal(moved.retain.tensors[0], data.retain.tensors[0])
    assert moved.forget_classes == data.forget_classes and moved.batch_size == data.batch_size
