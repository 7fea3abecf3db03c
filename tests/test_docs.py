"""The README stays true to the code: its commands, its method table, its workload names."""

from __future__ import annotations

import re
from pathlib import Path

from raysweep.methods import list_methods

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    block = README.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2
    assert block[0].startswith("./install.sh && raysweep run search_spaces/sweeps/quickstart.yaml")
    assert block[1].startswith("./install.sh && python3 -m pytest")
    assert (ROOT / "search_spaces/sweeps/quickstart.yaml").is_file()
    ci = (ROOT / ".ci/run").read_text()
    assert "./install.sh && python3 -m pytest" in ci


def test_method_table_lists_every_registered_method() -> None:
    listed = set(re.findall(r"^\| `([a-z0-9+\-]+)` \|", README, flags=re.M))
    assert listed == set(list_methods())


def test_bundled_workloads_named_in_readme_exist() -> None:
    from raysweep.workload import BUNDLED_WORKLOADS

    names = {p.stem for p in BUNDLED_WORKLOADS.glob("*.yaml")}
    for name in set(re.findall(r"(?:-w|--workload) ([a-z0-9\-]+)", README)):
        assert name in names, name
