"""The driver's record of one sweep (``state.json``), as a validated model.

The runner writes it at every step of a sweep's life (preparing, running, finished, failed,
interrupted); ``status``, ``sweeps``, ``resume`` and the Python API read it. Reading goes
through :meth:`SweepState.read`, so a torn, foreign or newer file is one :class:`UserError`
line naming it, wherever it is read. Imports no Ray, Optuna or torch (the read-only commands
use it).

Compatibility: files written before ``schema_version`` existed read as version 1; keys this
version does not know are kept and written back unchanged (a newer raysweep's additions
survive a resume by this one); a larger ``schema_version`` is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from raysweep.errors import UserError, format_validation_error

__all__ = ["STATE_SCHEMA_VERSION", "SweepStatus", "SweepState", "Tracked"]

#: The ``state.json`` layout this version writes and reads.
STATE_SCHEMA_VERSION = 1

#: What the driver records; ``crashed`` is never stored (readers infer it from a dead pid).
SweepStatus = Literal["preparing", "running", "finished", "failed", "interrupted"]


class Tracked(NamedTuple):
    """Where a started sweep's runs are: set together once its parent run exists."""

    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str


class SweepState(BaseModel):
    """``$RAYSWEEP_HOME/sweeps/<id>/state.json``.

    Every field but ``id`` is optional: a sweep killed while preparing has only the first few.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    schema_version: int = STATE_SCHEMA_VERSION
    id: str
    name: str | None = None
    status: SweepStatus | None = None
    message: str | None = None
    created: float | None = None
    updated: float | None = None
    finished: float | None = None
    resumed: int | None = None
    pid: int | None = None
    workload: str | None = None           # the spec's workload reference (name or path)
    workload_name: str | None = None
    workload_key: str | None = None       # the prepared workload's cache key (resume checks it)
    tracking_uri: str | None = None       # credentials redacted on disk
    experiment: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    git_sha: str | None = None
    address: str | None = None            # the Ray cluster the sweep ran on (None: local)
    trials: int | None = None
    max_concurrent: int | None = None
    tags: dict[str, str] | None = None    # tags of every trial's MLflow run
    counts: dict[str, int] | None = None  # trials, finished, failed, unfinished (at the end)
    extended: list[int] | None = None     # configurations added by resume --num-samples +N

    # The driver's live MLflow tracker (for recording a failure); never written.
    _tracker: Any = PrivateAttr(default=None)

    def update(self, **values: Any) -> None:
        """Set several fields at once (each one validated)."""
        for key, value in values.items():
            setattr(self, key, value)

    def tracked(self) -> Tracked:
        """The MLflow location of a sweep whose parent run exists; a :class:`UserError` for a
        sweep that stopped before (nothing of it is in MLflow to continue)."""
        uri, exp = self.tracking_uri, self.experiment
        exp_id, parent = self.experiment_id, self.parent_run_id
        if uri is None or exp is None or exp_id is None or parent is None:
            raise UserError(f"sweep {self.id} stopped before its MLflow run was created "
                            f"(status {self.status}); start it again with raysweep run")
        return Tracked(uri, exp, exp_id, parent)

    def to_json(self) -> dict[str, Any]:
        """The dict written to ``state.json`` (unset fields left out, as before the model)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def read(cls, sweep_dir: Path) -> SweepState:
        """``sweep_dir/state.json``; a missing, truncated, foreign or newer file is one
        :class:`UserError` line that names it and says what to do."""
        path = Path(sweep_dir) / "state.json"
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: missing; {sweep_dir} is not a sweep directory") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"{path}: corrupt ({type(exc).__name__}: {str(exc)[:80]}); the sweep "
                            f"cannot be shown or resumed from it: start it again with raysweep "
                            f"run (its MLflow runs stay readable: raysweep leaderboard)") from None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise UserError(f"{path}: not a raysweep sweep state (no 'id'); is this a sweep "
                            f"directory?")
        version = data.get("schema_version", STATE_SCHEMA_VERSION)
        if version != STATE_SCHEMA_VERSION:
            raise UserError(f"{path}: schema_version {version!r} is not {STATE_SCHEMA_VERSION}, "
                            f"the one this raysweep reads; use the raysweep version that ran "
                            f"sweep {data['id']}, or start it again with raysweep run")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"{format_validation_error(exc, str(path))}; this file was not "
                            f"written by raysweep (or was edited): start the sweep again with "
                            f"raysweep run") from None
