"""Unlearning methods: one module per method, each registered with ``@register_method``.

Add a method: create ``raysweep/methods/<name>.py`` with a ``MethodConfig`` subclass and a
generator decorated with ``@register_method``. Every module in this package whose name does
not start with ``_`` is imported here, so the new file is the only change; the conformance
suite (``tests/test_methods_conformance.py``) then tests it automatically.
"""

from __future__ import annotations

import importlib
import pkgutil

from raysweep.methods._base import (
    EpochEnd,
    MethodConfig,
    MethodDivergedError,
    MethodInfo,
    RunResult,
    UnlearnContext,
    UnlearnData,
    UnsupportedModelError,
    get_method,
    list_methods,
    make_config,
    register_method,
    run_method,
)

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "EpochEnd", "MethodConfig", "MethodDivergedError", "MethodInfo", "RunResult", "UnlearnContext", "UnlearnData",
    "UnsupportedModelError", "get_method", "list_methods", "make_config", "register_method",
    "run_method",
]
