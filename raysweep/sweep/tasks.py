"""Ray tasks for work that is not a Tune trial: a suite's workload preparations and runs.

Everything raysweep runs on Ray goes through ``sweep/``: Tune trials through
:mod:`raysweep.sweep.runner`, plain tasks through here. A caller (``raysweep bench`` with
``--address``) hands in ordinary functions and gets values back; it never imports Ray.

    >>> with ray_cluster("local"):                          # doctest: +SKIP
    ...     pool = TaskPool(num_cpus=1)
    ...     refs = [pool.submit(pow, 2, k) for k in range(3)]
    ...     [value for _, value, _ in pool.as_completed(refs)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from raysweep.sweep.local_ray import init_local_ray

__all__ = ["ray_cluster", "TaskPool"]


@contextmanager
def ray_cluster(address: str) -> Iterator[None]:
    """Join the Ray cluster at ``address`` (``local``: start a private local Ray, loopback-only
    and with token auth, :func:`raysweep.sweep.local_ray.init_local_ray`) for the ``with``
    block. A Ray this call started goes away with the block; one already running stays."""
    import ray

    started = not ray.is_initialized()
    if started:
        init_local_ray(address=address, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


class TaskPool:
    """Submits functions as Ray tasks, each asking for the same resources.

    Arguments that are handles returned by :meth:`submit` are resolved by Ray before the task
    runs (a prepared workload travels once through the object store to every run using it).
    """

    def __init__(self, *, num_cpus: float = 1.0, num_gpus: float = 0.0) -> None:
        self.options = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self._remote: dict[tuple[Callable[..., Any], int], Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any, num_returns: int = 1,
               **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as a task; a handle, or ``num_returns`` handles."""
        import ray

        key = (fn, num_returns)
        if key not in self._remote:
            # ray.remote's overloads do not cover options given as a dict
            remote = ray.remote(**self.options, num_returns=num_returns)  # type: ignore[call-overload]
            self._remote[key] = remote(fn)
        return self._remote[key].remote(*args, **kwargs)

    @staticmethod
    def get(handle: Any) -> Any:
        """The value of a task (waits for it; re-raises what the task raised)."""
        import ray

        return ray.get(handle)

    @staticmethod
    def as_completed(handles: list[Any]) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """``(handle, value, None)`` as each task finishes, or ``(handle, None, error)`` for a
        task that raised or whose worker died (a crash, out of memory): one failed task never
        stops the others."""
        import ray

        pending = list(handles)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for handle in ready:
                try:
                    yield handle, ray.get(handle), None
                except Exception as exc:
                    yield handle, None, exc
