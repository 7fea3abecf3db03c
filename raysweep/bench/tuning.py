"""``config: tuned``: find a config with a small sweep, then run it on the entry's seeds.

The sweep is the project's own (:mod:`raysweep.sweep`): the method's search space (the entry's
``tune.space`` or the bundled ``search_spaces/<method>.yaml``), ``tune.num_samples`` trials on the
entry's workload, the best trial's config returned. The tuned config and the sweep id are logged
on the entry's child runs (``config.*`` params, ``raysweep.tuned_sweep`` tag).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raysweep.errors import ConfigError

if TYPE_CHECKING:
    from raysweep.bench.suite import Entry
    from raysweep.workload import PreparedWorkload

__all__ = ["tune_entry"]


def tune_entry(entry: Entry, prepared: PreparedWorkload) -> dict[str, Any]:
    """Return ``{"config": best config values, "sweep_id": ..., "objective": ...}``."""
    raise ConfigError(f"entry {entry.id}: config: tuned needs the sweep runner "
                      f"(raysweep.sweep.runner), which is not available yet; pin a config instead")
