"""A method's default search space travels with its registration (one file per method)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import Field

from raysweep.errors import ConfigError
from raysweep.methods import EpochEnd, MethodConfig, get_method
from raysweep.sweep.space import (
    bundled_space_path,
    default_space,
    has_default_space,
    load_sweep,
    parse_sweep,
    resolve_spec,
)
from raysweep.testing import temporary_method

SPACE = {"lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-1},
         "epochs": {"values": [1, 2]}}


class PluginConfig(MethodConfig):
    lr: float = Field(1e-2, gt=0, le=1)
    epochs: int = Field(1, ge=1, le=10)


def plugin(model, data, cfg, ctx) -> Iterator[EpochEnd]:
    """A plugin method that ships its search space in its registration."""
    yield EpochEnd(1, {})


def _sweep(name: str) -> dict:
    return {"schema_version": 1, "workload": "fmnist-class-small", "methods": {name: {}},
            "search": {"num_samples": 2}}


def test_plugin_space_from_its_registration_resolves(tmp_path: Path) -> None:
    name = "plugin-space-test"
    assert not bundled_space_path(name).exists()
    with temporary_method(name, plugin, config=PluginConfig, space=SPACE,
                          reference="paper 999 equations", differences=("none really",)) as info:
        assert info.reference == "paper 999 equations" and info.differences == ("none really",)
        assert has_default_space(name)
        assert set(default_space(name)) == {"lr", "epochs"}
        spec = resolve_spec(parse_sweep(_sweep(name)))
        space = spec.spaces()[name]
        assert space["lr"].distribution == "loguniform" and space["epochs"].values == [1, 2]
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(_sweep(name)))
        assert set(load_sweep(path).spaces()[name]) == {"lr", "epochs"}
        from raysweep.cli import main

        assert main(["validate", str(path)]) == 0


def test_plugin_space_from_a_yaml_file(tmp_path: Path) -> None:
    name = "plugin-yaml-space-test"
    f = tmp_path / "space.yaml"
    f.write_text(yaml.safe_dump({"schema_version": 1, "method": name, "parameters": SPACE}))
    with temporary_method(name, plugin, config=PluginConfig, space=f):
        assert get_method(name).space == f
        assert set(resolve_spec(parse_sweep(_sweep(name))).spaces()[name]) == {"lr", "epochs"}


def test_registered_space_is_checked_against_the_config() -> None:
    name = "plugin-bad-space-test"
    with (temporary_method(name, plugin, config=PluginConfig, space={"nope": {"values": [1]}}),
          pytest.raises(ConfigError, match="nope")):
        resolve_spec(parse_sweep(_sweep(name)))


def test_no_space_anywhere_names_both_ways_to_give_one() -> None:
    name = "plugin-no-space-test"
    with temporary_method(name, plugin, config=PluginConfig):
        assert not has_default_space(name) and default_space(name) is None
        with pytest.raises(ConfigError, match="register_method"):
            resolve_spec(parse_sweep(_sweep(name)))


def test_bundled_methods_keep_their_yaml_spaces() -> None:
    assert get_method("scrub").space is None
    assert default_space("scrub") == load_sweep(bundled_space_path("scrub")).spaces()["scrub"]
