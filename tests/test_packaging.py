"""Packaging: every package is listed in pyproject.toml, and a wheel carries the bundled YAML."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib
from setuptools import find_packages

from raysweep._resources import search_spaces_dir

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_lists_every_package_and_maps_the_bundled_yaml() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    assert listed - {"raysweep.search_spaces"} == set(find_packages(str(ROOT),
                                                                    include=["raysweep*"]))
    assert cfg["package-dir"]["raysweep.search_spaces"] == "search_spaces"


def test_the_bundled_yaml_is_found_from_a_checkout() -> None:
    d = search_spaces_dir()
    assert d == ROOT / "search_spaces"
    for sub in ("sweeps/quickstart.yaml", "workloads/digits-class.yaml", "suites", "ssd.yaml"):
        assert (d / sub).exists(), sub


@pytest.mark.slow
def test_a_wheel_built_from_the_repository_runs_its_bundled_sweep(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(wheels)], check=True, timeout=600)
    wheel, = wheels.glob("raysweep-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=600)
    probe = ("import raysweep.sweep.space as s, raysweep.workload as w; "
             "print(s.SEARCH_SPACES); print(w.BUNDLED_WORKLOADS)")
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split()
    assert all(str(env_dir) in line for line in out), out  # the wheel's copy, not the checkout's
    sweep = Path(out[0]) / "sweeps" / "quickstart.yaml"
    res = subprocess.run([str(env_dir / "bin" / "raysweep"), "validate", str(sweep)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
