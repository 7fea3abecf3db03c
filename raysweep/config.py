"""Typed, validated configuration shared by workloads, sweeps and suites; YAML loading.

YAML is always read with ``yaml.safe_load``; validation errors become one line naming the file,
the field, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from raysweep.data.scenarios import Scenario
from raysweep.errors import ConfigError, did_you_mean
from raysweep.training import TrainConfig

__all__ = ["DatasetConfig", "ModelConfig", "WorkloadConfig", "load_yaml", "parse_model",
           "format_validation_error", "apply_overrides"]

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    name: str
    root: str | None = Field(None, description="local directory for user data (CIFAR, image folders, text files)")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options, e.g. labels: coarse")
    train_size: int | None = Field(None, ge=10, description="class-stratified subsample of the training set")
    test_size: int | None = Field(None, ge=10, description="class-stratified subsample of the test set")
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5, description="share of the training set held out as val")
    image_size: int | None = Field(None, ge=4, le=1024, description="resize images to this side length")


class ModelConfig(_Strict):
    name: str
    pretrained: bool | str = False
    options: dict[str, Any] = Field(default_factory=dict)


class WorkloadConfig(_Strict):
    """Dataset + model + forget scenario + training recipe + seed: one unlearning problem."""

    schema_version: Literal[1] = 1
    name: str
    description: str = ""
    dataset: DatasetConfig
    model: ModelConfig
    scenario: Scenario
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: int = Field(0, ge=0)
    eval_batch_size: int = Field(512, ge=1)

    def identity(self) -> dict[str, Any]:
        """The fields that define the prepared artefacts (the cache key); ``name`` is excluded."""
        return self.model_dump(mode="json", exclude={"name", "description", "eval_batch_size"})


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: ``source: field.path: message (got value)`` for the first error."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {loc!r}; remove it or check the spelling"
    if err["type"] == "missing":
        return f"{source}: missing required field {loc!r}"
    got = err.get("input")
    got_s = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{source}: {loc}: {err['msg']}{got_s}"


def parse_model(cls: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_yaml(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML scalars) to a nested mapping."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy with plain types
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def known_key_hint(key: str, keys: list[str]) -> str:
    return did_you_mean(key, keys)
