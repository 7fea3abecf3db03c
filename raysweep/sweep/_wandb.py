"""W&B sweep spellings in a raysweep sweep YAML: translated where the meaning is exact, else
refused with one line that names the raysweep key to write instead.

The sweep YAML is W&B-shaped, so W&B users write W&B's own keys. Exact translations:

* ``metric: {name, goal[, target]}``  -> ``objectives: [{metric, goal[, target]}]``
* ``method: bayes | random | grid`` (W&B's search method) -> ``search.algorithm: tpe | random |
  grid`` (``method:`` is the unlearning method here, and ``bayes`` names no unlearning method)
* ``distribution: log_uniform_values | int_uniform | uniform | categorical | constant`` ->
  ``loguniform`` and the same names; ``q_log_uniform_values`` / ``q_uniform`` with ``q`` ->
  the same with ``step``

Refused (no exact meaning here): ``log_uniform`` (W&B's bounds are exponents), ``normal``-family
and ``inv_log_uniform*`` distributions, ``early_terminate.type: hyperband``, ``run_cap``,
``program``, ``command``, ``entity``, ``project``.
"""

from __future__ import annotations

import copy
from typing import Any

from raysweep.errors import ConfigError

__all__ = ["translate_wandb", "WANDB_SEARCH_METHODS"]

#: W&B's search methods -> raysweep's Optuna samplers (``bayes`` is W&B's model-based search).
WANDB_SEARCH_METHODS = {"bayes": "tpe", "random": "random", "grid": "grid"}
_DISTRIBUTIONS = {"log_uniform_values": "loguniform", "int_uniform": "int_uniform",
                  "uniform": "uniform", "categorical": "categorical", "constant": "constant",
                  "q_log_uniform_values": "loguniform", "q_uniform": "uniform"}
_REFUSED_DISTRIBUTIONS = {
    "log_uniform": "W&B's log_uniform takes exponents (min: -5 means e^-5); write distribution: "
                   "loguniform with min/max as the values themselves",
    "inv_log_uniform": "no inverse log-uniform here; search the parameter itself with "
                       "distribution: loguniform",
    "inv_log_uniform_values": "no inverse log-uniform here; search the parameter itself with "
                              "distribution: loguniform",
    "normal": "no normal distribution here; give bounds with distribution: uniform",
    "q_normal": "no normal distribution here; give bounds with distribution: uniform and step",
    "log_normal": "no log-normal distribution here; give bounds with distribution: loguniform",
    "q_log_normal": "no log-normal distribution here; give bounds with distribution: loguniform",
    "q_log_uniform": "W&B's q_log_uniform takes exponents; write distribution: loguniform with "
                     "min/max as values",
}
_REFUSED_TOP = {
    "run_cap": "search.num_samples (configurations; each runs once per seed in seeds:)",
    "program": "methods: and workload: (raysweep runs the trials itself)",
    "command": "methods: and workload: (raysweep runs the trials itself)",
    "entity": "tracking.experiment (MLflow, MLFLOW_TRACKING_URI)",
    "project": "tracking.experiment (MLflow, MLFLOW_TRACKING_URI)",
}


def _param(where: str, spec: Any, source: str) -> Any:
    if not isinstance(spec, dict) or "distribution" not in spec:
        return spec
    dist = spec["distribution"]
    if dist in _REFUSED_DISTRIBUTIONS:
        raise ConfigError(f"{source}: {where}.distribution: {dist!r}: "
                          f"{_REFUSED_DISTRIBUTIONS[dist]}")
    if dist not in _DISTRIBUTIONS or _DISTRIBUTIONS[dist] == dist:
        return spec  # raysweep's own name, or an unknown one the schema reports
    out = {k: v for k, v in spec.items() if k != "q"}
    out["distribution"] = _DISTRIBUTIONS[dist]
    if dist.startswith("q_"):
        if "q" not in spec:
            raise ConfigError(f"{source}: {where}: distribution {dist!r} needs q: (W&B's "
                              f"quantisation step; raysweep's key is step:)")
        if out["distribution"] == "loguniform":
            raise ConfigError(f"{source}: {where}.distribution: {dist!r}: a log scale takes no "
                              f"step here; use distribution: loguniform without q, or "
                              f"values: [...]")
        out["step"] = spec["q"]
    return out


def _params(where: str, params: Any, source: str) -> Any:
    if not isinstance(params, dict):
        return params
    return {k: _param(f"{where}.{k}", v, source) for k, v in params.items()}


def translate_wandb(data: Any, source: str = "<sweep>") -> Any:
    """``data`` with W&B spellings translated (a copy), or a :class:`ConfigError` naming the
    raysweep key when a W&B key has no exact meaning here. Anything else is left to the schema."""
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    for key, instead in _REFUSED_TOP.items():
        if key in data:
            raise ConfigError(f"{source}: {key}: is a W&B sweep key with no exact meaning in "
                              f"raysweep; use {instead}")
    if "metric" in data:
        metric = data.pop("metric")
        if "objectives" in data:
            raise ConfigError(f"{source}: metric: and objectives: both given; keep objectives: "
                              f"(metric: is W&B's spelling of one objective)")
        if not isinstance(metric, dict) or "name" not in metric:
            raise ConfigError(f"{source}: metric: expected W&B's {{name: ..., goal: minimize|"
                              f"maximize}}, got {metric!r}; raysweep's key is objectives:")
        unknown = [k for k in metric if k not in ("name", "goal", "target")]
        if unknown:
            raise ConfigError(f"{source}: metric.{unknown[0]}: not supported; metric: takes "
                              f"name, goal and target")
        kept = {k: metric[k] for k in ("goal", "target") if k in metric}
        data["objectives"] = [{"metric": metric["name"], **kept}]
    method = data.get("method")
    if isinstance(method, str) and method in WANDB_SEARCH_METHODS:
        algorithm = WANDB_SEARCH_METHODS[method]
        search = data.get("search") if isinstance(data.get("search"), dict) else {}
        if search.get("algorithm") not in (None, algorithm):
            raise ConfigError(f"{source}: method: {method!r} is W&B's search method "
                              f"(search.algorithm: {algorithm} here) but search.algorithm is "
                              f"{search['algorithm']!r}; keep one")
        data.pop("method")
        data["search"] = {**search, "algorithm": algorithm}
        if "parameters" in data and "methods" not in data:
            raise ConfigError(f"{source}: method: {method!r} is W&B's search method, so these "
                              f"parameters: belong to no unlearning method; write method: "
                              f"<unlearning method> with search.algorithm: {algorithm}, or "
                              f"methods: {{name: {{parameters: ...}}}}")
    et = data.get("early_terminate")
    if isinstance(et, dict) and et.get("type") == "hyperband":
        raise ConfigError(f"{source}: early_terminate.type: 'hyperband' is W&B's; raysweep's is "
                          f"{{type: asha, grace_period: N, reduction_factor: R}} (W&B's min_iter "
                          f"is grace_period, eta is reduction_factor)")
    if "parameters" in data:
        data["parameters"] = _params("parameters", data["parameters"], source)
    if isinstance(data.get("methods"), dict):
        for name, ms in data["methods"].items():
            if isinstance(ms, dict) and "parameters" in ms:
                ms["parameters"] = _params(f"methods.{name}.parameters", ms["parameters"], source)
    return data
