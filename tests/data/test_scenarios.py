"""Forget scenarios select the right rows and reject impossible requests clearly."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from raysweep.data import (
    ClassScenario,
    RandomScenario,
    Scenario,
    SubclassScenario,
    TargetedScenario,
    load_dataset,
)
from raysweep.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_class_by_index_and_name(digits) -> None:
    mask = ClassScenario(classes=[3]).forget_mask(digits, seed=0)
    assert mask.sum() == (digits.train_y == 3).sum()
    assert ClassScenario(classes=["3"]).forget_classes(digits) == (3,)


def test_multi_class(digits) -> None:
    sc = ClassScenario(classes=[1, 2, 6])
    assert sc.forget_classes(digits) == (1, 2, 6)
    assert set(digits.train_y[sc.forget_mask(digits, 0)]) == {1, 2, 6}


def test_class_not_in_data(digits) -> None:
    with pytest.raises(ConfigError, match="class 12 is not in digits"):
        ClassScenario(classes=[12]).forget_mask(digits, 0)
    with pytest.raises(ConfigError, match=r"'Trousers'.*did you mean 'Trouser'"):
        fm = load_dataset("digits")
        fm.class_names = ["Trouser", *fm.class_names[1:]]
        ClassScenario(classes=["Trousers"]).forget_mask(fm, 0)


def test_all_classes_rejected(digits) -> None:
    with pytest.raises(ConfigError, match="keep at least one"):
        ClassScenario(classes=list(range(10))).forget_mask(digits, 0)


def test_random_fraction(digits) -> None:
    m1 = RandomScenario(fraction=0.1).forget_mask(digits, seed=0)
    m2 = RandomScenario(fraction=0.1).forget_mask(digits, seed=0)
    assert abs(m1.sum() - 0.1 * len(m1)) <= 1 and np.array_equal(m1, m2)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5])
def test_fraction_out_of_range(bad: float) -> None:
    with pytest.raises(ValidationError, match="fraction must be in \\(0, 1\\)"):
        RandomScenario(fraction=bad)


def test_subclass_needs_groups(digits) -> None:
    with pytest.raises(ConfigError, match="sub-class groups"):
        SubclassScenario(group=1).forget_mask(digits, 0)


def test_subclass_on_coarse_fashion() -> None:
    ds = load_dataset("fashion-mnist", labels="coarse").subsample(2000, 200, seed=0)
    mask = SubclassScenario(group="Shirt").forget_mask(ds, 0)
    top = ds.class_names.index("top")
    assert mask.sum() > 0 and set(ds.train_y[mask]) == {top}
    assert (ds.train_y[~mask] == top).sum() > 0  # the coarse class keeps other members


def test_targeted_brightness_and_empty(digits) -> None:
    mask = TargetedScenario(selector="brightness", params={"count": 25}).forget_mask(digits, 0)
    score = digits.train_x.mean(axis=(1, 2, 3))
    assert mask.sum() == 25 and score[mask].min() >= score[~mask].max()
    with pytest.raises(ConfigError,
                       match=r"unknown selector 'brightnes'.*did you mean 'brightness'"):
        TargetedScenario(selector="brightnes").forget_mask(digits, 0)


def test_targeted_text_word() -> None:
    ds = load_dataset("rotten-tomatoes")
    mask = TargetedScenario(selector="contains_word", params={"word": "boring"}).forget_mask(ds, 0)
    assert 0 < mask.sum() < 500
    assert all("boring" in ds.train_x[i].lower() for i in np.flatnonzero(mask))
    with pytest.raises(ConfigError, match="empty forget set"):
        TargetedScenario(selector="contains_word",
                         params={"word": "zzqqxxnotaword"}).forget_mask(ds, 0)


def test_discriminated_union_parses_yaml_shapes() -> None:
    ta = TypeAdapter(Scenario)
    assert isinstance(ta.validate_python({"kind": "random", "fraction": 0.1}), RandomScenario)
    with pytest.raises(ValidationError):
        ta.validate_python({"kind": "class", "classes": []})
    with pytest.raises(ValidationError):
        ta.validate_python({"kind": "class", "classes": [0], "extra": 1})
