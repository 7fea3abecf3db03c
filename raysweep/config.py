"""Typed, validated configuration shared by workloads, sweeps and suites; YAML loading.

YAML is always read with ``yaml.safe_load``; validation errors become one line naming the file,
the field, the value and what is allowed.
"""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raysweep._yaml import parse_scalar, read_yaml_file
from raysweep.data.scenarios import Scenario
from raysweep.errors import ConfigError, format_validation_error
from raysweep.training import TrainConfig

__all__ = ["MAX_SEED", "DatasetConfig", "ModelConfig", "LMOptions", "WorkloadConfig", "load_yaml",
           "parse_model", "format_validation_error", "parse_override", "apply_overrides",
           "accepted_scalars", "check_number_value", "top_level_kind"]

M = TypeVar("M", bound=BaseModel)


#: The largest seed every consumer accepts (numpy's ``SeedSequence`` legacy API, Optuna's
#: samplers and ``torch.manual_seed`` all take 32-bit seeds).
MAX_SEED = 2**32 - 1


class _Strict(BaseModel):
    # NaN or inf never means anything in a config: refuse them in every float field. Strict:
    # a YAML boolean is not a number (lax pydantic reads ``true`` as 1), a string is not one
    # either, and 2.5 is not an integer.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class DatasetConfig(_Strict):
    name: str
    root: str | None = Field(
        None, description="local directory for user data (CIFAR, image folders, text files)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="loader options, e.g. labels: coarse")
    train_size: int | None = Field(
        None, ge=10, le=100_000_000, description="class-stratified subsample of the training set")
    test_size: int | None = Field(
        None, ge=10, le=100_000_000, description="class-stratified subsample of the test set")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.5, description="share of the training set held out as val")
    image_size: int | None = Field(
        None, ge=4, le=1024, description="resize images to this side length")


class ModelConfig(_Strict):
    name: str
    pretrained: bool | str = False
    options: dict[str, Any] = Field(default_factory=dict)


class LMOptions(_Strict):
    """A text-generation workload's tokenizer and evaluation settings (``lm:``; used when the
    model is a causal language model, e.g. ``gpt-tiny``)."""

    vocab_size: int = Field(1024, ge=300, le=65536,
                            description="BPE vocabulary trained on D_r's text (at least the 256 "
                                        "bytes, 2 special tokens and some merges)")
    context: int = Field(48, ge=8, le=2048, description="tokens per passage (longer are cut)")
    prefix: int = Field(16, ge=1, le=2048,
                        description="prompt tokens of the verbatim-memorisation test")
    suffix: int = Field(16, ge=1, le=2048,
                        description="tokens the greedy continuation must reproduce")
    mink: float = Field(0.2, gt=0, le=1, description="k of the Min-K% probability attack")
    js_points: int = Field(8, ge=1, le=256,
                           description="positions per D_f passage where JS to the oracle is "
                                       "measured")
    retain_rows: int = Field(256, ge=1, le=1_000_000,
                             description="D_r passages whose verbatim continuation is tested")

    @model_validator(mode="after")
    def _fits(self) -> LMOptions:
        if self.prefix + self.suffix > self.context:
            raise ValueError(f"prefix + suffix ({self.prefix} + {self.suffix}) must fit in "
                             f"context ({self.context}); lower them or raise lm.context")
        return self


class WorkloadConfig(_Strict):
    """Dataset + model + forget scenario + training recipe + seed: one unlearning problem."""

    schema_version: Literal[1] = 1
    name: str
    description: str = ""
    dataset: DatasetConfig
    model: ModelConfig
    scenario: Scenario
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    eval_batch_size: int = Field(512, ge=1, le=65536)
    lm: LMOptions | None = Field(None, description="text-generation workloads: tokenizer and "
                                                   "evaluation settings (default: LMOptions())")

    def identity(self) -> dict[str, Any]:
        """The fields that define the prepared artefacts (the cache key); ``name`` is excluded."""
        out = self.model_dump(mode="json", exclude={"name", "description", "eval_batch_size"})
        if out.get("lm") is None:   # classification workloads keep the keys they always had
            out.pop("lm", None)
        return out


def parse_model(cls: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got "
                          f"{top_level_kind(data)}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def top_level_kind(data: Any) -> str:
    """How an error names what a file holds instead of a mapping."""
    return "an empty file" if data is None else f"{type(data).__name__} {str(data)[:40]!r}"


def load_yaml(path: str | Path) -> Any:
    """Read a YAML config with raysweep's one safe loader (:mod:`raysweep._yaml`): duplicate
    keys, alias bombs, over-deep nesting and undecodable files are one-line errors."""
    return read_yaml_file(path)


def parse_override(item: str, source: str = "--set") -> tuple[list[str], Any, str]:
    """``a.b.c=value`` as ``(["a", "b", "c"], value, "--set a.b.c")``: the one ``--set``
    syntax of sweeps and suites (the value is read as YAML, with raysweep's safe loader).
    The last item is how errors about this override name it."""
    if "=" not in item:
        raise ConfigError(f"{source} {item!r}: expected key=value, e.g. search.num_samples=8")
    key, raw = item.split("=", 1)
    where = f"{source} {key}"
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"{source} {item!r}: empty key in {key!r}; write a.b.c=value")
    return parts, parse_scalar(raw, where), where


def apply_overrides(
    data: dict[str, Any], overrides: list[str], source: str = "--set"
) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (:func:`parse_override`) to a nested mapping."""
    out = copy.deepcopy(data)
    for item in overrides:
        parts, value, _ = parse_override(item, source)
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def accepted_scalars(annotation: Any) -> set[str]:
    """The scalar kinds a field annotation takes: ``int``, ``float``, ``bool``, ``str``, or
    ``any`` (checks that a YAML value fits a method config's field before a trial runs)."""
    if annotation is Any:
        return {"any"}
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return accepted_scalars(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: set[str] = set()
        for arg in typing.get_args(annotation):
            out |= accepted_scalars(arg)
        return out
    if origin is Literal:
        return {"bool" if isinstance(a, bool) else type(a).__name__
                for a in typing.get_args(annotation)}
    if annotation is bool:
        return {"bool"}
    if annotation is int:
        return {"int"}
    if annotation is float:
        return {"float"}
    if annotation is str:
        return {"str"}
    if annotation is type(None):
        return {"none"}
    return {"any"}


def check_number_value(value: Any, annotation: Any, where: str) -> None:
    """Refuse a boolean where a field wants a number (pydantic's lax mode reads True as 1)."""
    kinds = accepted_scalars(annotation)
    if isinstance(value, bool) and "bool" not in kinds and "any" not in kinds \
            and kinds & {"int", "float"}:
        raise ConfigError(f"{where}: expected a number, got {value!r} (a YAML boolean: "
                          f"true/false); write the number")
