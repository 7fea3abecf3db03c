"""Datasets (a registry of embedded and local-directory loaders) and forget scenarios.

Add a dataset: write ``fn(root=None, **options) -> LoadedDataset`` decorated with
``@register_dataset(name, kind=..., embedded=..., description=...)`` in ``embedded.py``
(data that ships in a package) or ``local.py`` (data the user points to).
"""

from __future__ import annotations

from raysweep.data import embedded as _embedded  # noqa: F401  (registers loaders)
from raysweep.data import local as _local  # noqa: F401
from raysweep.data._base import (
    DatasetInfo,
    LoadedDataset,
    get_dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
)
from raysweep.data.scenarios import (
    SELECTORS,
    ClassScenario,
    RandomScenario,
    Scenario,
    SubclassScenario,
    TargetedScenario,
    register_selector,
)

__all__ = [
    "DatasetInfo", "LoadedDataset", "get_dataset_info", "list_datasets", "load_dataset",
    "register_dataset", "Scenario", "ClassScenario", "SubclassScenario", "RandomScenario",
    "TargetedScenario", "SELECTORS", "register_selector",
]
