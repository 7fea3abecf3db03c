"""The MLflow trial callback's writes per trial, on a real (temporary) sqlite store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from raysweep.sweep.tracking import MlflowTrialCallback, Tracker


class _Counting:
    """The tracker's client, counting the store calls the callback makes."""

    def __init__(self, client: Any) -> None:
        self._client, self.calls = client, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


def _trial(tid: str, epochs: int) -> Any:
    last = {"epoch": epochs, "best_epoch": epochs, "best/objective": 0.25,
            "rs/trial_seconds": 1.0}
    return SimpleNamespace(trial_id=tid, config={"method": "finetune",
                                                 "finetune": {"lr": 0.01}, "seed": 3},
                           last_result=last, checkpoint=None)


def _tracker(tmp_path: Path) -> tuple[Tracker, str]:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "cb", "sweep1")
    parent = tracker.start_parent(name="p", tags={}, params={}, spec_json="{}")
    return tracker, parent


def test_a_trial_is_create_one_batch_per_epoch_final_and_end(tmp_path: Path) -> None:
    tracker, parent = _tracker(tmp_path)
    counting = _Counting(tracker.client)
    tracker._c = counting  # the tracker keeps its client here
    cb = MlflowTrialCallback(tracker, parent, {"raysweep.workload": "w"}, fresh=True)
    trial = _trial("t1", epochs=2)
    cb.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        cb.on_trial_result(0, [], trial, {"epoch": epoch, "objective": 0.5 / epoch})
    cb.on_trial_complete(0, [], trial)
    # No separate params write and no read-back of a run this driver created.
    assert counting.calls == ["create_run", "log_batch", "log_batch", "log_batch",
                              "set_terminated"]
    run = tracker.client._client.get_run(cb.runs["t1"])
    assert run.data.params["method"] == "finetune" and run.data.params["seed"] == "3"
    assert run.data.params["lr"] == "0.01"
    assert run.data.metrics["best/objective"] == 0.25 and run.info.status == "FINISHED"


def test_params_reach_a_trial_that_never_reported(tmp_path: Path) -> None:
    tracker, parent = _tracker(tmp_path)
    cb = MlflowTrialCallback(tracker, parent, {}, fresh=True)
    trial = _trial("t2", epochs=0)
    trial.last_result = {}
    cb.on_trial_start(0, [], trial)
    cb.on_trial_error(0, [], trial)
    run = tracker.client.get_run(cb.runs["t2"])
    assert run.data.params["method"] == "finetune" and run.info.status == "FAILED"


def test_a_run_created_before_a_crash_gets_its_params_on_resume(tmp_path: Path) -> None:
    tracker, parent = _tracker(tmp_path)
    first = MlflowTrialCallback(tracker, parent, {}, fresh=True)
    trial = _trial("t3", epochs=1)
    first.on_trial_start(0, [], trial)  # the driver dies before the first result
    resumed = MlflowTrialCallback(tracker, parent, {})
    resumed.set_state(first.get_state())
    resumed.on_trial_result(0, [], trial, {"epoch": 1, "objective": 0.5})
    resumed.on_trial_complete(0, [], trial)
    assert resumed.runs["t3"] == first.runs["t3"]  # re-attached, not duplicated
    run = tracker.client.get_run(first.runs["t3"])
    assert run.data.params["method"] == "finetune"
    assert run.data.metrics["best/objective"] == 0.25
