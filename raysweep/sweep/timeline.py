"""Driver-side time stamps of a sweep's trials, taken by a Ray Tune callback.

The overhead benchmark (:mod:`raysweep.bench.overhead`) splits a sweep's wall time into the
trials' own compute and what Tune spends around them; it reads these stamps and never touches
Tune itself (Ray stays under ``sweep/``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrialTimeline", "timeline_callback"]


@dataclass
class TrialTimeline:
    """Per trial id: when it started, when its first result arrived (with the trainable's
    own ``rs/trial_seconds`` at that point), when its last result arrived, when it ended."""

    start: dict[str, float] = field(default_factory=dict)
    first: dict[str, tuple[float, float]] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    end: dict[str, float] = field(default_factory=dict)


def timeline_callback(timeline: TrialTimeline) -> Any:
    """A ``ray.tune.Callback`` that writes the stamps of every trial into ``timeline``."""
    from ray.tune import Callback

    class Stamps(Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            timeline.start.setdefault(trial.trial_id, time.time())

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            now = time.time()
            timeline.first.setdefault(trial.trial_id,
                                      (now, float(result.get("rs/trial_seconds", 0.0))))
            timeline.last[trial.trial_id] = now

        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            timeline.end[trial.trial_id] = time.time()

    return Stamps()
