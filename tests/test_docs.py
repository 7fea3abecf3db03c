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


def test_relative_links_in_the_docs_point_at_files() -> None:
    # Markdown links and images to paths inside the repository ([text](path), ![alt](path.png)):
    # a renamed results directory or a deleted plot would otherwise leave dead links.
    pages = [ROOT / "README.md", ROOT / "cluster" / "README.md",
             *sorted((ROOT / "docs").rglob("*.md"))]
    dead = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                dead.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not dead, dead


def test_readme_method_table_is_generated_from_the_registry() -> None:
    from raysweep.methods._docs import REGENERATE, find_readme_table, readme_table

    current = find_readme_table(README)
    assert current is not None, "README.md has no method table ('| method | what it does |')"
    assert current == readme_table(), (
        f"README.md's method table is stale; regenerate it with: {REGENERATE}")


def test_every_method_states_its_reference() -> None:
    from raysweep.methods import get_method

    missing = [n for n in list_methods() if not get_method(n).reference]
    assert not missing, f"register_method(..., reference=...) missing for {missing}"
