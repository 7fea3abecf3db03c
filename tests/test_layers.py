"""The layering rules, checked by reading every module's imports (AST, nothing is imported).

* The plain layers (``methods/``, ``metrics/``, ``data/``, ``models/``, the run engine and the
  training helpers) import none of Ray, MLflow and Optuna: they run anywhere, in any process.
* Ray is ``sweep/``'s: Tune trials (``sweep/runner.py``, ``sweep/trainable.py``), plain tasks
  (``sweep/tasks.py``) and the local/cluster start (``sweep/local_ray.py``). Besides it only
  ``doctor.py`` and ``preflight.py`` (public calls: is Ray initialised, its resources) and the
  CLI, inside its command functions (``raysweep --help`` never starts Ray's import), use it.
* Nobody imports ``ray._private`` except ``sweep/local_ray.py``, the one shim over Ray's
  internals (loopback-only local Ray, finding a running cluster).
* Optuna is ``sweep/``'s (search, study, plots) and the Python API's ``Sweep.study()``.
* MLflow is the tracking modules' (``sweep/tracking.py``, ``sweep/catalog.py``'s read-only
  queries) and bench reporting's (``bench/``).
* No module imports another package's private names (``from raysweep.x.y import _name``):
  what a second package needs is made public. ``PRIVATE_YET`` lists the imports still to fix
  (none since the catalog took the leaderboard query); an entry that is gone fails the test,
  so the list only shrinks.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "raysweep"
HEAVY = ("ray", "mlflow", "optuna")
PLAIN = ("methods/", "metrics/", "data/", "models/", "engine.py", "training.py")

@dataclass(frozen=True)
class Import:
    module: str        # path relative to the package, e.g. "bench/_run.py"
    line: int
    name: str          # the imported module, e.g. "ray.tune"
    in_function: bool  # inside a function body (imported only when the function runs)

    @property
    def top(self) -> str:
        return self.name.split(".")[0]

    def __str__(self) -> str:
        return f"raysweep/{self.module}:{self.line} imports {self.name}"


def imports_of(source: str, module: str) -> list[Import]:
    """Every absolute import in ``source``, with whether it sits inside a function."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(module, child.lineno, a.name, in_function)
                             for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append(Import(module, child.lineno, child.module, in_function))
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def violations(imports: list[Import]) -> list[tuple[Import, str]]:
    """Each import that breaks a rule, with the rule."""
    out: list[tuple[Import, str]] = []
    for imp in imports:
        m, top = imp.module, imp.top
        if top not in HEAVY:
            continue
        if m.startswith(PLAIN):
            out.append((imp, f"{m} is a plain layer: no Ray, MLflow or Optuna"))
        if imp.name.startswith("ray._private") and m != "sweep/local_ray.py":
            out.append((imp, "ray._private is touched in sweep/local_ray.py only; add a "
                             "function there"))
        if top == "ray" and not (m.startswith("sweep/") or m in ("doctor.py", "preflight.py")
                                 or (m.startswith("cli/") and imp.in_function)):
            out.append((imp, "Ray lives under sweep/ (tasks: sweep/tasks.py; the CLI imports "
                             "it inside commands only)"))
        if top == "optuna" and not (m.startswith("sweep/") or m == "api.py"):
            out.append((imp, "Optuna is reached through sweep/search.py"))
        if top == "mlflow" and not (m in ("sweep/tracking.py", "sweep/catalog.py")
                                    or m.startswith("bench/")):
            out.append((imp, "MLflow is the tracking modules' and bench reporting's"))
    return out


#: (module, imported module, private name) still imported across packages.
PRIVATE_YET: set[tuple[str, str, str]] = set()


def private_imports(source: str, module: str) -> set[tuple[str, str, str]]:
    """``(module, imported module, name)`` for each private name imported from another
    package of raysweep (a package's own modules share its private names)."""
    own = module.split("/")[0] if "/" in module else None
    out: set[tuple[str, str, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                and node.module.startswith("raysweep.")):
            continue
        parts = node.module.split(".")[1:]
        if own is not None and parts[0] == own:
            continue
        out.update((module, node.module, a.name) for a in node.names
                   if a.name.startswith("_") and not a.name.startswith("__"))
    return out


def _package_imports() -> list[Import]:
    out: list[Import] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        out.extend(imports_of(path.read_text(encoding="utf-8"), rel))
    return out


def test_every_module_keeps_to_its_layer() -> None:
    broken = [f"{imp}: {rule}" for imp, rule in violations(_package_imports())]
    assert not broken, "layering broken:\n" + "\n".join(broken)


def test_no_private_name_crosses_a_package() -> None:
    found: set[tuple[str, str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        found |= private_imports(path.read_text(encoding="utf-8"),
                                 path.relative_to(PACKAGE).as_posix())
    assert not found - PRIVATE_YET, ("private names imported across packages; make them "
                                     f"public: {sorted(found - PRIVATE_YET)}")
    assert not PRIVATE_YET - found, f"fixed; remove from PRIVATE_YET: {PRIVATE_YET - found}"


def test_the_private_name_scan() -> None:
    src = ("from raysweep.methods._base import _METHODS, get_method\n"
           "from raysweep.bench.suite import _write_workload\n")
    assert private_imports(src, "testing.py") == {
        ("testing.py", "raysweep.methods._base", "_METHODS"),
        ("testing.py", "raysweep.bench.suite", "_write_workload")}
    assert private_imports(src, "bench/_run.py") == {      # its own package's: allowed
        ("bench/_run.py", "raysweep.methods._base", "_METHODS")}


@pytest.mark.parametrize(("module", "source", "rule"), [
    ("methods/x.py", "import torch\ndef f():\n    import mlflow\n", "plain layer"),
    ("metrics/x.py", "from optuna.samplers import TPESampler\n", "plain layer"),
    ("engine.py", "from ray import tune\n", "plain layer"),
    ("bench/x.py", "def f():\n    import ray\n", "Ray lives under sweep/"),
    ("cli/x.py", "import ray\n", "Ray lives under sweep/"),
    ("doctor.py", "from ray._private import ray_constants\n", "ray._private"),
    ("sweep/runner.py", "from ray._private.services import x\n", "ray._private"),
    ("bench/x.py", "import optuna\n", "through sweep/search.py"),
    ("workload.py", "from mlflow.tracking import MlflowClient\n", "tracking modules"),
])
def test_the_scanner_catches_each_kind_of_break(module: str, source: str, rule: str) -> None:
    found = violations(imports_of(source, module))
    assert any(rule in r for _, r in found), found


@pytest.mark.parametrize(("module", "source"), [
    ("cli/x.py", "def cmd():\n    import ray\n"),                 # lazily, inside a command
    ("doctor.py", "def check():\n    import ray\n"),
    ("sweep/tasks.py", "import ray\n"),
    ("sweep/local_ray.py", "from ray._private import services\n"),
    ("bench/tracking.py", "from mlflow.tracking import MlflowClient\n"),
    ("methods/x.py", "from raysweep.data.bundle import UnlearnData\n"),
])
def test_the_scanner_accepts_what_the_rules_allow(module: str, source: str) -> None:
    assert violations(imports_of(source, module)) == []


# -- an import inside a function body is there for a reason ------------------------------------

#: Imported when the function runs, on purpose: a test (or a user's fault injection) that
#: patches ``raysweep.workload.prepare`` or ``raysweep.methods.run_method`` reaches every caller.
LATE_BOUND = {("raysweep.workload", "prepare"), ("raysweep.methods", "run_method")}


def needless_lazy_imports(source: str, module: str) -> list[str]:
    """Imports inside function bodies that have no reason to be there: a standard-library
    module (nothing to defer), or a module this file already imports at its top level (no
    import cost and no cycle to avoid). What stays lazy keeps a heavy dependency (torch, Ray,
    MLflow, ...) off a light path such as ``raysweep --help``, or breaks an import cycle."""
    tree = ast.parse(source)
    at_top = {node.module if isinstance(node, ast.ImportFrom) else alias.name
              for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
              for alias in node.names}
    found: list[str] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)) \
                    and getattr(child, "level", 0) == 0:
                names = ([(child.module, a.name) for a in child.names]
                         if isinstance(child, ast.ImportFrom) else
                         [(a.name, None) for a in child.names])
                for mod, name in names:
                    if (mod, name) in LATE_BOUND or mod is None:
                        continue
                    if mod.split(".")[0] in sys.stdlib_module_names:
                        found.append(f"raysweep/{module}:{child.lineno} imports the standard "
                                     f"library's {mod} inside a function")
                    elif mod in at_top:
                        found.append(f"raysweep/{module}:{child.lineno} imports {mod} inside a "
                                     "function though the module imports it at the top")
            visit(child, in_function or isinstance(child, (ast.FunctionDef,
                                                            ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def test_lazy_imports_have_a_reason() -> None:
    found = [f for path in sorted(PACKAGE.rglob("*.py"))
             for f in needless_lazy_imports(path.read_text(encoding="utf-8"),
                                            path.relative_to(PACKAGE).as_posix())]
    assert not found, "move these imports to the top of their module:\n" + "\n".join(found)


@pytest.mark.parametrize(("source", "needless"), [
    ("import json\ndef f():\n    import os\n", True),
    ("from raysweep.data import bundle\ndef f():\n    from raysweep.data import load\n", True),
    ("import torch\ndef f():\n    import ray\n", False),
    ("def f():\n    from raysweep.workload import prepare\n", False),
    ("from raysweep.workload import load_workload_config\n"
     "def f():\n    from raysweep.workload import prepare\n", False),    # LATE_BOUND
])
def test_the_lazy_import_scan(source: str, needless: bool) -> None:
    assert bool(needless_lazy_imports(source, "bench/x.py")) is needless
