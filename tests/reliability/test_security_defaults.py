"""Security defaults, one test each (issue 6 item 3).

Already covered elsewhere and not repeated here: local Ray binds 127.0.0.1 with token auth and
no dashboard (``tests/cluster/test_local_ray.py::test_local_ray_binds_loopback_without_dashboard``
and the token tests beside it); ``raysweep doctor`` (``tests/cluster/test_doctor.py``). This
module checks that those tests still exist, then checks statically and behaviourally that
checkpoints load with ``weights_only=True``, YAML is read with ``safe_load`` only, nothing
``eval``/``exec``s a string, and the cluster guide says how to secure a cluster.
"""

from __future__ import annotations

import ast
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

import raysweep

PKG = Path(raysweep.__file__).resolve().parent
ROOT = PKG.parent
SOURCES = sorted(PKG.rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(func: ast.AST) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    else:  # a call on an expression, e.g. copy.deepcopy(m).eval(): not a module function
        parts.append("<expr>")
    return ".".join(reversed(parts))


def test_sources_found() -> None:
    assert len(SOURCES) > 50


def test_local_ray_and_doctor_tests_exist() -> None:
    local = (ROOT / "tests" / "cluster" / "test_local_ray.py").read_text()
    assert "def test_local_ray_binds_loopback_without_dashboard" in local
    assert "def test_token_auth_defaults_to_an_ephemeral_token" in local
    doctor = (ROOT / "tests" / "cluster" / "test_doctor.py").read_text()
    assert "def test_unreachable_ray_and_mlflow_fail" in doctor


def test_local_ray_defaults_in_code() -> None:
    from raysweep.sweep import local_ray

    src = Path(local_ray.__file__).read_text()
    assert 'LOOPBACK = "127.0.0.1"' in src
    assert 'setdefault("include_dashboard", False)' in src
    assert 'dashboard_host"] = LOOPBACK' in src


def test_every_torch_load_is_weights_only() -> None:
    offenders, seen = [], 0
    for path in SOURCES:
        for call in _calls(ast.parse(path.read_text(), str(path))):
            if _dotted(call.func) == "torch.load":
                seen += 1
                ok = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                         and k.value.value is True for k in call.keywords)
                if not ok:
                    offenders.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert seen >= 1
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


def test_malicious_checkpoint_is_refused(tmp_path: Path) -> None:
    from raysweep.sweep.trainable import BEST_FILE, load_best

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / BEST_FILE, "wb") as f:
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_best(tmp_path)
    assert not marker.exists()
    torch.save({"w": torch.ones(2)}, tmp_path / BEST_FILE)  # a genuine checkpoint loads
    assert torch.equal(load_best(tmp_path)["w"], torch.ones(2))


def test_yaml_is_only_safe_loaded() -> None:
    offenders = []
    for path in SOURCES:
        for call in _calls(ast.parse(path.read_text(), str(path))):
            name = _dotted(call.func)
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all",
                        "yaml.unsafe_load_all", "yaml.full_load_all"):
                offenders.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}")
        text = path.read_text()
        for bad in ("yaml.Loader", "yaml.UnsafeLoader", "yaml.FullLoader"):
            if bad in text:
                offenders.append(f"{path.relative_to(ROOT)} {bad}")
    assert not offenders, offenders


def test_no_eval_or_exec_of_strings() -> None:
    offenders = []
    for path in SOURCES:
        for call in _calls(ast.parse(path.read_text(), str(path))):
            name = _dotted(call.func)
            if name in ("eval", "exec", "builtins.eval", "builtins.exec", "compile"):
                offenders.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}")
            if name in ("pickle.loads", "pickle.load", "marshal.loads"):
                offenders.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}")
    assert not offenders, offenders


def test_cluster_guide_says_how_to_secure_a_cluster() -> None:
    guide = (ROOT / "cluster" / "README.md").read_text()
    low = guide.lower()
    for needle in ("shadowray", "cve-2023-48022", "ray_auth_mode=token", "tls",
                   "networkpolicy", "--app-name basic-auth"):
        assert needle in low, needle
