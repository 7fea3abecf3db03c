"""Model factory. Add a model: a function decorated with ``@register_model`` in ``vision.py``
``text.py`` or ``lm.py`` (or a new module imported here)."""

from __future__ import annotations

from raysweep.models import lm as _lm  # noqa: F401  (registers models)
from raysweep.models import text as _text  # noqa: F401
from raysweep.models import vision as _vision  # noqa: F401
from raysweep.models._factory import (
    ModelSpec,
    create_model,
    list_models,
    model_blocks,
    model_kind,
    register_model,
)

__all__ = ["ModelSpec", "create_model", "list_models", "model_blocks", "model_kind",
           "register_model"]
