"""A method that writes to its data fails its trial, suite run or ``raysweep unlearn`` run with
one line, and the next run on the same prepared workload gets the same result as before
(the issue: a relabelled D_f turned finetune's gap/oracle 1.007 into 0.007)."""

from __future__ import annotations

import json
import traceback
import uuid
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field

from raysweep.methods import EpochEnd, MethodConfig
from raysweep.methods._base import MethodContractError
from raysweep.sweep.space import parse_sweep, resolve_spec
from raysweep.sweep.trainable import make_plan, run_trial
from raysweep.testing import temporary_method

COMPARED = ("forget/acc", "retain/acc", "test/acc", "gap/oracle", "objective")


class RelabelConfig(MethodConfig):
    epochs: int = Field(2, ge=1, le=10)


def relabel_in_place(model, data, cfg, ctx):
    """Relabel D_f in place, then fine-tune on it (the bug of the issue)."""
    yf = data.forget.tensors[1]
    yf.copy_((yf + 1) % data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for e in range(cfg.epochs):
        for x, y in data.loader("forget", 32, seed=ctx.seed + e):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        yield EpochEnd(e + 1, {})


@pytest.fixture()
def bad_method():
    name = f"relabel-{uuid.uuid4().hex[:8]}"
    with temporary_method(name, relabel_in_place, config=RelabelConfig):
        yield name


def _check_one_line(msg: str, name: str) -> None:
    assert "\n" not in msg
    assert msg.startswith(f"method {name!r} modified data.forget in place (data.forget y: "
                          f"values changed; found after epoch 1)")
    assert "methods must not write to UnlearnData — copy first" in msg


def test_the_trial_fails_with_one_line_and_the_next_trial_is_unaffected(
        digits, bad_method) -> None:
    from raysweep.sweep.tracking import error_reason

    w, refs = digits
    plan = make_plan(resolve_spec(parse_sweep({"method": "finetune", "workload": "digits-class"})),
                     w, refs)
    cfg = {"method": "finetune", "finetune": {"epochs": 2, "lr": 0.02}, "seed": 0}
    before = run_trial(cfg, w, plan, report=lambda *a: None)
    reports: list = []
    with pytest.raises(MethodContractError) as info:
        run_trial({"method": bad_method, bad_method: {}, "seed": 0}, w, plan,
                  report=lambda r, s, b: reports.append(r))
    _check_one_line(str(info.value), bad_method)
    assert reports == []          # no epoch evaluated on the corrupted labels was reported
    # What tracking records as the trial's failure reason: that one line.
    trace = "".join(traceback.format_exception(info.value))
    reason = error_reason(SimpleNamespace(error_file=None, get_error=lambda: trace))
    assert reason.endswith(str(info.value)) and "MethodContractError: " in reason
    after = run_trial(cfg, w, plan, report=lambda *a: None)
    for key in COMPARED:  # the chosen epoch's full evaluation (per-epoch results hold less)
        assert after[f"best/{key}"] == before[f"best/{key}"], key


def test_a_suite_run_records_one_line_and_the_next_run_is_unaffected(
        digits, bad_method) -> None:
    from raysweep.bench._run import _safe_run, run_one

    w, _ = digits
    before = run_one(w, "finetune", {"epochs": 2}, 0, "cpu")
    rec = _safe_run(w, "bad", bad_method, {}, 0, "cpu", False, None)
    assert rec.error is not None and rec.error.startswith("MethodContractError: ")
    _check_one_line(rec.error.removeprefix("MethodContractError: "), bad_method)
    after = run_one(w, "finetune", {"epochs": 2}, 0, "cpu")
    for key in COMPARED:
        assert after[key] == before[key], key


def test_unlearn_reports_the_failure_in_one_line_and_runs_the_other_methods(
        digits, bad_method, sweep_env, capsys) -> None:
    from raysweep.cli import main

    rc = main(["unlearn", "-w", "digits-class", "-m", f"{bad_method},finetune", "--device", "cpu",
               "--no-catboost", "--set", "finetune.epochs=1", "--json"])
    out, err = capsys.readouterr()
    assert rc == 1
    (line,) = [ln for ln in err.splitlines() if "failed:" in ln]
    assert line.startswith(f"{bad_method} failed: method {bad_method!r} modified data.forget")
    rows = {r["method"]: r for r in json.loads(out)["rows"]}
    _check_one_line(rows[bad_method]["error"], bad_method)
    assert "test/acc" in rows["finetune"]      # the next method ran, on clean data
