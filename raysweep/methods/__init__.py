"""Unlearning methods: one module per method, each registered with ``@register_method``.

Third-party methods (plugins): set ``RAYSWEEP_PLUGINS=pkg.mod1,pkg.mod2``; each module is
imported after the bundled ones and may call ``register_method``. The variable is read in every
process that resolves a method (the driver and, through the inherited environment, Ray workers),
so the modules must be importable there too (installed, or on ``PYTHONPATH``).

Add a method: create ``raysweep/methods/<name>.py`` with a ``MethodConfig`` subclass and a
generator decorated with ``@register_method`` (its default search space may travel with it:
``register_method(..., space={...})``, else ``search_spaces/<name>.yaml``; then regenerate the
README's method table with ``raysweep methods table --markdown --write README.md``). Every
module in this package whose name does not start with ``_`` is imported here, so the new file
is the only change; the conformance suite (``tests/test_methods_conformance.py``) then tests it
automatically.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from raysweep.errors import ConfigError
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
from raysweep.methods._cost import PassCount, PassCounter, retrain_passes
from raysweep.methods._docs import readme_table

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")


def _load_plugins() -> None:
    names = (m.strip() for m in os.environ.get("RAYSWEEP_PLUGINS", "").split(","))
    for name in filter(None, names):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"RAYSWEEP_PLUGINS: cannot import {name!r} ({exc}); install it or "
                              f"put it on PYTHONPATH") from None


_load_plugins()

__all__ = [
    "EpochEnd", "MethodConfig", "MethodDivergedError", "MethodInfo", "RunResult", "UnlearnContext",
    "UnlearnData",
    "UnsupportedModelError", "get_method", "list_methods", "make_config", "register_method",
    "run_method", "PassCount", "PassCounter", "retrain_passes", "readme_table",
]
