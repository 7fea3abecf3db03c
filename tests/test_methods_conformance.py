"""Every registered method obeys the contract (tiny MLP on digits, CPU, seconds each)."""

from __future__ import annotations

import pytest

from raysweep.errors import ConfigError
from raysweep.methods import get_method, list_methods, make_config
from raysweep.testing import check_method


@pytest.mark.parametrize("name", list_methods())
def test_contract(name: str) -> None:
    check_method(name)


@pytest.mark.parametrize("name", list_methods())
def test_rejects_bad_config(name: str) -> None:
    info = get_method(name)
    with pytest.raises(ConfigError, match="unknown parameter"):
        make_config(name, {"definitely_not_a_field": 1})
    # Every numeric field with a lower bound rejects a value below it, naming the field.
    for f in info.describe_fields():
        b = f["bounds"]
        if "gt" in b or "ge" in b:
            low = b.get("gt", b.get("ge"))
            bad = low - 1 if "ge" in b else low
            if f["type"] == "int":
                bad = int(bad)
            with pytest.raises(ConfigError, match=f["name"]):
                make_config(name, {f["name"]: bad})
            break


@pytest.mark.parametrize("name", list_methods())
def test_has_paper_and_summary(name: str) -> None:
    info = get_method(name)
    assert info.paper and info.summary
