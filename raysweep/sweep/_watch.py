"""Stop a sweep whose cluster has had no room for a single trial for too long.

When the only node is lost (a frozen raylet, a preempted machine) Ray Tune waits for resources
forever while progress says "running". :class:`ClusterWatch` checks the cluster's resources
from the driver every few seconds and, after ``RAYSWEEP_NO_RESOURCES_TIMEOUT_S`` (default 120)
without room for one trial, raises :class:`ClusterLost`; the runner turns it into one line with
the resume hint (trials continue from their checkpoints once a node is back).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.tune import Callback

__all__ = ["ClusterLost", "ClusterWatch", "no_resources_timeout"]


class ClusterLost(RuntimeError):
    """The Ray cluster had no room for one trial for longer than the timeout."""


def no_resources_timeout() -> float:
    try:
        return max(1.0, float(os.environ.get("RAYSWEEP_NO_RESOURCES_TIMEOUT_S", "120")))
    except ValueError:
        return 120.0


def _cluster_resources() -> dict[str, float]:
    return dict(ray.cluster_resources())


class ClusterWatch(Callback):  # module level: Tune pickles it into tuner.pkl
    """Raise :class:`ClusterLost` once the cluster lacks ``cpu``/``gpu`` for ``timeout`` s."""

    def __init__(self, cpu: float, gpu: float, timeout: float | None = None,
                 period: float = 5.0,
                 resources: Callable[[], dict[str, float]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cpu, self.gpu = float(cpu), float(gpu)
        self.timeout = timeout
        self.period = period
        self.resources = resources
        self.clock = clock
        self._checked = float("-inf")
        self._since: float | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The timeout is read again on resume (the environment may say otherwise by then).
        return {**self.__dict__, "resources": None, "clock": None, "_since": None,
                "_checked": float("-inf")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # The clock is not pickled (a test's fake one would not survive): the real one.
        self.clock = state.get("clock") or time.monotonic

    def check(self) -> None:
        now = self.clock()
        if now - self._checked < self.period:
            return
        self._checked = now
        try:
            res = (self.resources or _cluster_resources)()
        except Exception:
            res = {}
        room = res.get("CPU", 0.0) >= self.cpu and (
            self.gpu <= 0 or res.get("GPU", 0.0) >= self.gpu
        )
        if room:
            self._since = None
            return
        if self._since is None:
            self._since = now
            return
        timeout = self.timeout if self.timeout is not None else no_resources_timeout()
        if now - self._since > timeout:
            need = f"{self.cpu:g} CPU" + (f" and {self.gpu:g} GPU" if self.gpu > 0 else "")
            have = ", ".join(f"{k} {v:g}" for k, v in sorted(res.items())
                             if k in ("CPU", "GPU")) or "nothing"
            raise ClusterLost(f"the Ray cluster has had no room for one trial ({need}) for "
                              f"{now - self._since:.0f}s (it has {have}: its nodes are lost "
                              f"or frozen)")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.check()
