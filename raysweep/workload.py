"""Workloads: one unlearning problem, prepared once and cached on disk.

``prepare(config)`` loads the dataset, draws the forget set, trains the original model on D
and the retrain-from-scratch oracle on D_r, records one forward pass of each over every split,
and stores all of it under ``$RAYSWEEP_CACHE/workloads/<name>-<hash>/``. The hash covers every
field that defines those artefacts (dataset, model, scenario, recipe, seed) plus
:data:`CACHE_VERSION`, so editing any of them, or the name only, does the right thing: a new
key for the former, a cache hit for the latter.

Splits: the training set is split into D (model training) and a held-out val set
(``dataset.val_fraction``); D is split into D_f (the scenario's selection) and D_r. Test is the
dataset's own test set. For class forgetting the test metrics are also reported on retained and
forgotten classes separately.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep._console import info
from raysweep._resources import search_spaces_dir
from raysweep.config import WorkloadConfig, load_yaml, parse_model
from raysweep.data import LoadedDataset, load_dataset
from raysweep.data.bundle import UnlearnData
from raysweep.errors import ConfigError, did_you_mean
from raysweep.methods import PassCount, retrain_passes
from raysweep.methods._base import UnlearnContext
from raysweep.metrics import (
    SPLITS,
    TERMS,
    ModelOutputs,
    ObjectiveConfig,
    evaluate,
    evaluate_selection,
    forward_splits,
    membership_rows,
    oracle_distances,
    raw_terms,
    term_spread,
)
from raysweep.metrics._evaluate import oracle_lr_auc
from raysweep.models import ModelSpec, model_kind
from raysweep.preflight import check_writable_dir
from raysweep.training import resolve_device, train_model

__all__ = ["PreparedWorkload", "WorkloadBase", "prepare", "check_workload",
           "load_workload_config", "cache_root", "workload_key", "task_of", "CACHE_VERSION",
           "BUNDLED_WORKLOADS", "load_data", "split_indices", "matched_masks", "safe_name",
           "stratified_rows", "signal_row", "write_cache", "cpu_state"]

CACHE_VERSION = 2  # 2: outputs carry penultimate features (the representation probe)
BUNDLED_WORKLOADS = search_spaces_dir() / "workloads"


def cache_root() -> Path:
    # Set but empty means unset: an empty path would put workloads/ in the current directory.
    return Path(os.environ.get("RAYSWEEP_CACHE") or Path.home() / ".cache" / "raysweep")


def workload_key(cfg: WorkloadConfig) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **cfg.identity()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_workload_config(ref: str | Path) -> WorkloadConfig:
    """Load a workload from a YAML path, or by the name of a bundled workload."""
    path = Path(ref)
    if not path.exists() and not str(ref).endswith((".yaml", ".yml")):
        bundled = BUNDLED_WORKLOADS / f"{ref}.yaml"
        if bundled.exists():
            path = bundled
        else:
            names = sorted(p.stem for p in BUNDLED_WORKLOADS.glob("*.yaml"))
            raise ConfigError(f"workload {ref!r} is neither a file nor a bundled workload"
                              f"{did_you_mean(str(ref), names)} (bundled: {', '.join(names)})")
    return parse_model(WorkloadConfig, load_yaml(path), str(path))


class WorkloadBase:
    """What every prepared workload (a classifier's :class:`PreparedWorkload`, a language
    model's :class:`raysweep.lm.workload.PreparedLMWorkload`) computes the same way: its name,
    the cost of retraining and the reference rows' metrics. Subclasses are dataclasses with
    ``config``, ``class_names``, ``splits``, ``original_outputs``/``retrain_outputs``,
    ``original_seconds``/``retrain_seconds`` and an ``evaluate`` method."""

    config: WorkloadConfig
    kind: str
    task: str
    class_names: list[str]
    splits: dict[str, TensorDataset]
    forget_classes: tuple[int, ...]
    model_spec: ModelSpec
    original_state: dict[str, torch.Tensor]
    retrain_state: dict[str, torch.Tensor]
    original_outputs: Any
    retrain_outputs: Any
    original_seconds: float
    retrain_seconds: float

    def unlearn_data(self, batch_size: int = 128) -> UnlearnData:
        """The splits as a method receives them; ``num_classes`` is the model's output width
        (the classes, or a language model's vocabulary)."""
        s = self.splits
        return UnlearnData(forget=s["forget"], retain=s["retain"], val=s["val"], test=s["test"],
                           num_classes=self.model_spec.num_classes,
                           forget_classes=self.forget_classes, batch_size=batch_size)

    @property
    def eval_settings(self) -> Any:
        """Task-specific evaluation settings a method may read (``ctx.eval_settings``)."""
        return None

    def build_model(self, which: str = "original") -> nn.Module:
        """The original (or, ``which="retrain"``, the oracle) rebuilt from its weights."""
        model = self.model_spec.build(pretrained=False, seed=self.config.seed)
        model.load_state_dict(self.original_state if which == "original"
                              else self.retrain_state)
        return model.eval()

    def context(self, device: torch.device | None = None,
                seed: int | None = None) -> UnlearnContext:
        """What a method receives besides its data: the frozen original, the model spec (for
        fresh models), the device, the seed and the training recipe."""
        dev = device or torch.device("cpu")
        return UnlearnContext(original=self.build_model("original").to(dev),
                              model_spec=self.model_spec, device=dev,
                              seed=self.config.seed if seed is None else seed,
                              train_recipe=self.config.train, is_text=self.kind != "image",
                              task=self.task, eval_settings=self.eval_settings)

    def evaluate(self, outputs: Any, *, seconds: float | None, catboost: bool = True,
                 seed: int = 0, retrain_seconds: float | None = None) -> dict[str, float]:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def retrain_cost(self) -> PassCount:
        """Sample-passes of retraining from scratch with the workload's recipe."""
        return retrain_passes(len(self.splits["retain"]), self.config.train.epochs)

    def reference_metrics(self, catboost: bool = True) -> dict[str, dict[str, float]]:
        """The original's and the oracle's metrics; cost: the original spends nothing on
        unlearning (ratio 0), the oracle retrains (ratio 1), in the same sample-pass units."""
        refs = {
            "original": self.evaluate(self.original_outputs, seconds=self.original_seconds,
                                      catboost=catboost, seed=self.config.seed),
            "retrain": self.evaluate(self.retrain_outputs, seconds=self.retrain_seconds,
                                     catboost=catboost, seed=self.config.seed),
        }
        zero = PassCount(0, 0)
        for name, cost in (("original", zero), ("retrain", self.retrain_cost)):
            refs[name].update(cost.as_metrics())
            refs[name]["cost/ratio"] = cost.passes / max(self.retrain_cost.passes, 1)
        return refs


@dataclass
class PreparedWorkload(WorkloadBase):
    """Everything a trial needs, small enough to share through Ray's object store."""

    config: WorkloadConfig
    key: str
    kind: str
    class_names: list[str]
    forget_classes: tuple[int, ...]
    splits: dict[str, TensorDataset]
    model_spec: ModelSpec
    original_state: dict[str, torch.Tensor]
    retrain_state: dict[str, torch.Tensor]
    original_outputs: ModelOutputs
    retrain_outputs: ModelOutputs
    teacher_forget_logits: np.ndarray
    original_seconds: float
    retrain_seconds: float
    #: Per held-out split, the rows matched to the forget set (MIA non-members, probe target);
    #: ``None`` = every row (random forgetting). See :mod:`raysweep.metrics.oracle`.
    matched: dict[str, np.ndarray | None] = field(default_factory=dict)
    _oracle_raw: dict[int, dict[str, float]] = field(default_factory=dict, repr=False)
    _oracle_lr: dict[int, float | None] = field(default_factory=dict, repr=False)
    _selection_cache: dict[tuple[int, int], tuple[Any, ...]] = field(default_factory=dict,
                                                                      repr=False)
    task: str = "classify"

    def warm(self, seeds: Iterable[int], val_rows: int | None = None) -> None:
        """Compute the oracle's per-seed references now (its raw objective terms, its LR-attack
        AUC, the selection view of ``val_rows``): every trial receives a copy of this object,
        and without them each would compute them again (about a second per trial on
        fmnist-class-small, a quarter of its evaluation)."""
        for seed in seeds:
            self.oracle_raw(seed)
            self.oracle_lr(seed)
            self._selection_refs(seed, val_rows)

    def oracle_raw(self, seed: int = 0) -> dict[str, float]:
        """The oracle's raw term values (:func:`raysweep.metrics.raw_terms`), computed once."""
        if seed not in self._oracle_raw:
            self._oracle_raw[seed] = raw_terms(self.retrain_outputs,
                                               forget_classes=self.forget_classes,
                                               matched=self.matched, seed=seed)
        return self._oracle_raw[seed]

    def selection_rows(self, seed: int = 0,
                       val_rows: int | None = None) -> dict[str, np.ndarray | None]:
        """The rows of each split that the per-epoch selection evaluation runs (``None``: all).

        D_f whole; val whole, or ``val_rows`` of it (:func:`stratified_rows`: every class and
        the scenario's matched rows in their proportions; fixed by ``seed``); D_r only under
        random forgetting, and then only the membership probe's rows
        (:func:`raysweep.metrics.membership_rows`), which give the same probe as all of D_r.
        With the whole of val, :meth:`evaluate_selection` gives exactly the values that
        :meth:`evaluate` gives.
        """
        n_val = len(self.splits["val"])
        val = None
        if val_rows is not None and val_rows < n_val:
            strata = self.splits["val"].tensors[1].numpy().astype(np.int64) * 2
            if self.matched.get("val") is not None:
                strata = strata + np.asarray(self.matched["val"], dtype=np.int64)
            val = stratified_rows(strata, val_rows, seed)
        rows: dict[str, np.ndarray | None] = {"forget": None, "val": val}
        if self.matched.get("val") is None:
            rows["retain"] = membership_rows(len(self.splits["retain"]),
                                             n_val if val is None else len(val), seed)
        return rows

    def forward_full(self, model: nn.Module, data: UnlearnData, device: torch.device, *,
                     batch_size: int, splits: Iterable[str] | None = None) -> ModelOutputs:
        """One forward pass over ``splits`` of ``data`` (default: every split)."""
        return forward_splits(model, data, device, batch_size=batch_size,
                              splits=tuple(splits) if splits is not None else SPLITS)

    def forward_selection(self, model: nn.Module, device: torch.device, *, batch_size: int,
                          seed: int = 0, val_rows: int | None = None) -> ModelOutputs:
        """One forward pass over :meth:`selection_rows` (what :meth:`evaluate_selection` reads)."""
        rows = self.selection_rows(seed, val_rows)
        return forward_splits(model, self.unlearn_data(), device, batch_size=batch_size,
                              splits=tuple(rows),
                              rows={k: v for k, v in rows.items() if v is not None})

    def evaluate_selection(self, outputs: ModelOutputs, *, seconds: float | None, seed: int = 0,
                           retrain_seconds: float | None = None,
                           val_rows: int | None = None) -> dict[str, float]:
        """The metrics selection reads, from :meth:`forward_selection`'s outputs (see
        :func:`raysweep.metrics.evaluate_selection`). On a val subset the original and the
        oracle are cut to the same rows, so every distance compares like with like."""
        original, retrain, matched, oracle_raw = self._selection_refs(seed, val_rows)
        return evaluate_selection(outputs, forget_classes=self.forget_classes,
                                  original=original, retrain=retrain, matched=matched,
                                  retrain_raw=oracle_raw, seconds=seconds,
                                  retrain_seconds=retrain_seconds, seed=seed)

    def _selection_refs(self, seed: int, val_rows: int | None) -> tuple[Any, Any, Any, Any]:
        val = self.selection_rows(seed, val_rows)["val"]
        if val is None:
            return self.original_outputs, self.retrain_outputs, self.matched, self.oracle_raw(seed)
        key = (seed, len(val))
        if key not in self._selection_cache:
            def cut(out: ModelOutputs) -> ModelOutputs:
                return ModelOutputs({**out.splits, "val": out["val"].subset(val)})

            matched = dict(self.matched)
            if matched.get("val") is not None:
                matched["val"] = np.asarray(matched["val"], dtype=bool)[val]
            original, retrain = cut(self.original_outputs), cut(self.retrain_outputs)
            oracle_raw = raw_terms(_selection_view(retrain, self.selection_rows(seed, val_rows)),
                                   forget_classes=self.forget_classes, matched=matched, seed=seed)
            self._selection_cache[key] = (original, retrain, matched, oracle_raw)
        return self._selection_cache[key]

    def evaluate(self, outputs: ModelOutputs, *, seconds: float | None, catboost: bool = True,
                 seed: int = 0, retrain_seconds: float | None = None) -> dict[str, float]:
        """All metrics of a model's outputs against this workload's original and oracle.

        ``retrain_seconds`` is the retrain time that ``time/ratio`` divides by; give it only when
        it was measured under the same conditions as ``seconds`` (no ratio otherwise).
        """
        return evaluate(outputs, forget_classes=self.forget_classes,
                        original=self.original_outputs, retrain=self.retrain_outputs,
                        random_teacher_forget_logits=self.teacher_forget_logits,
                        seconds=seconds, retrain_seconds=retrain_seconds,
                        catboost=catboost, seed=seed, matched=self.matched,
                        retrain_raw=self.oracle_raw(seed), retrain_lr_auc=self.oracle_lr(seed))

    def oracle_lr(self, seed: int = 0) -> float | None:
        """The oracle's LR-attack AUC on test, computed once per seed."""
        if seed not in self._oracle_lr:
            self._oracle_lr[seed] = oracle_lr_auc(self.retrain_outputs,
                                                  forget_classes=self.forget_classes,
                                                  matched=self.matched, seed=seed)
        return self._oracle_lr[seed]

    def signal_check(self, objective: Any = None, *, split: str = "val",
                     seed: int = 0) -> list[dict[str, Any]]:
        """Does each objective term separate the original from the oracle? One row per term.

        ``separation`` is ``|original - oracle|`` in units of the spread of that difference
        (:func:`raysweep.metrics.term_spread`: resampling of the attack's, the probe's and the
        accuracies' samples); under 2 it is marked ``signal: False``. ``weighted`` says whether
        ``objective`` (an :class:`~raysweep.metrics.ObjectiveConfig`) weights the term.
        """
        objective = objective or ObjectiveConfig()
        weights = objective.weights()
        orig = raw_terms(self.original_outputs, forget_classes=self.forget_classes,
                         matched=self.matched, seed=seed)
        oracle = self.oracle_raw(seed)
        kw: dict[str, Any] = {"forget_classes": self.forget_classes, "matched": self.matched,
                              "split": split, "seed": seed}
        s_orig = term_spread(self.original_outputs, reference=self.retrain_outputs, **kw)
        s_oracle = term_spread(self.retrain_outputs, **kw)
        dists = oracle_distances(orig, oracle, model_out=self.original_outputs,
                                 oracle_out=self.retrain_outputs)
        rows = []
        o: float | None
        r: float | None
        for term in TERMS:
            raw = term.raw_key(split)
            if term.name == "js":
                diff, sd = dists.get("dist/js"), s_orig.get("dist/js")
                o, r = diff, 0.0
            else:
                o, r = orig.get(raw), oracle.get(raw)
                diff = None if o is None or r is None else abs(o - r)
                sd = None
                if raw in s_orig and raw in s_oracle:
                    sd = float(np.hypot(s_orig[raw], s_oracle[raw]))
                if term.name == "heldout" and self.forget_classes:
                    # class forgetting: the distance sums retained and forgotten classes
                    diff = dists.get(term.dist_key(split))
                    k2 = f"heldout/acc_forgotten/{split}"
                    if sd is not None and k2 in s_orig and k2 in s_oracle:
                        sd = float(np.sqrt(sd**2 + s_orig[k2] ** 2 + s_oracle[k2] ** 2))
            rows.append(signal_row(term.name, term.dist_key(split), o, r, diff, sd,
                                   bool(weights.get(term.name, 0.0))))
        return rows


def signal_row(term: str, metric: str, original: float | None, oracle: float | None,
               distance: float | None, sigma: float | None, weighted: bool) -> dict[str, Any]:
    """One row of a signal check: ``separation = distance / sigma``; under 2, no signal."""
    sep = None if distance is None or not sigma else distance / sigma
    if distance is not None and sigma == 0.0:
        sep = float("inf") if distance > 0 else 0.0
    return {"term": term, "metric": metric, "original": original, "oracle": oracle,
            "distance": distance, "sigma": sigma, "separation": sep,
            "signal": bool(sep is not None and sep >= 2.0), "weighted": weighted}


def _build(spec: ModelSpec, *, pretrained: bool, seed: int) -> nn.Module:
    # Text encoders read their architecture from the checkpoint either way; ``pretrained=False``
    # only skips loading its weights (the random teacher, state-dict rebuilds).
    return spec.build(pretrained=pretrained, seed=seed)


def load_data(cfg: WorkloadConfig) -> LoadedDataset:
    d = cfg.dataset
    ds = load_dataset(d.name, root=d.root, **d.options)
    # A subset larger than the data is not a subset: say so rather than train on all of it.
    for field_name, size, have in (("train_size", d.train_size, len(ds.train_y)),
                                   ("test_size", d.test_size, len(ds.test_y))):
        if size is not None and size > have:
            raise ConfigError(f"workload {cfg.name}: dataset.{field_name}: {size} is more than "
                              f"the {have} samples {d.name} has; lower it or remove it to use "
                              f"them all")
    if d.train_size or d.test_size:
        ds = ds.subsample(d.train_size, d.test_size, seed=cfg.seed)
    if ds.kind == "image" and d.image_size and ds.train_x.shape[-1] != d.image_size:
        side = d.image_size

        def resize(x: np.ndarray) -> np.ndarray:
            t = torch.nn.functional.interpolate(torch.from_numpy(x), size=(side, side),
                                                mode="bilinear", align_corners=False)
            return t.numpy()
        ds.train_x, ds.test_x = resize(ds.train_x), resize(ds.test_x)
    return ds


def split_indices(cfg: WorkloadConfig, ds: LoadedDataset) -> dict[str, np.ndarray]:
    n = len(ds.train_y)
    rng = np.random.default_rng(cfg.seed + 1)
    n_val = round(cfg.dataset.val_fraction * n)
    perm = rng.permutation(n)
    val_idx, d_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    # The forget mask is drawn on the full training set so that a targeted selector sees every
    # sample; rows that fell into val are dropped from both D_f and D_r.
    mask = cfg.scenario.forget_mask(ds, seed=cfg.seed)
    forget_idx = d_idx[mask[d_idx]]
    retain_idx = d_idx[~mask[d_idx]]
    if len(forget_idx) == 0:
        raise ConfigError(f"workload {cfg.name}: the forget set is empty after holding out val "
                          f"(scenario {cfg.scenario.describe()})")
    return {"forget": forget_idx, "retain": retain_idx, "val": val_idx}


def stratified_rows(strata: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` row indices (sorted) drawn without replacement so that every stratum keeps its
    share (largest remainders; at least one row of every stratum while ``size`` allows)."""
    strata = np.asarray(strata)
    values, counts = np.unique(strata, return_counts=True)
    size = int(min(size, len(strata)))
    exact = counts * size / len(strata)
    take = np.floor(exact).astype(int)
    take = np.maximum(take, np.minimum(1, counts)) if size >= len(values) else take
    while take.sum() > size:                      # the "at least one" rule overshot
        take[np.argmax(take - exact)] -= 1
    order = np.argsort(-(exact - take), kind="stable")
    for i in order[: size - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(strata == v), size=k, replace=False)
            for v, k in zip(values, take) if k]
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def _selection_view(out: ModelOutputs, rows: dict[str, np.ndarray | None]) -> ModelOutputs:
    """``out`` (val already cut) with D_r cut to the probe's rows, as the model's selection
    outputs are."""
    splits = {k: out[k] for k in ("forget", "val")}
    retain_rows = rows.get("retain")
    if retain_rows is not None and "retain" in out:
        splits["retain"] = out["retain"].subset(retain_rows)
    return ModelOutputs(splits)


def matched_masks(cfg: WorkloadConfig, ds: LoadedDataset,
                   idx: dict[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """Held-out rows the scenario would have selected (see :mod:`raysweep.metrics.oracle`).

    val rows come from the training set, so the forget mask itself says which are matched. On
    test the scenario is applied to the test set (a selector that takes a ``count`` gets it
    scaled to the test set's size; when the scenario cannot run there, ``None``: every row).
    """
    sc = cfg.scenario
    if sc.kind == "random":
        return {"val": None, "test": None}
    val = np.asarray(sc.forget_mask(ds, seed=cfg.seed), dtype=bool)[idx["val"]]
    view = replace(ds, train_x=ds.test_x, train_y=ds.test_y, train_groups=ds.test_groups)
    if sc.kind == "targeted" and "count" in sc.params:
        scale = len(ds.test_y) / max(len(ds.train_y), 1)
        sc = sc.model_copy(update={"params": {**sc.params,
                                              "count": max(1, round(sc.params["count"] * scale))}})
    try:
        test: np.ndarray | None = np.asarray(sc._mask(view, seed=cfg.seed), dtype=bool)
    except Exception:
        test = None
    return {"val": val, "test": test}


def _tensorize(cfg: WorkloadConfig, ds: LoadedDataset, idx: dict[str, np.ndarray],
               text_model: nn.Module | None) -> dict[str, TensorDataset]:
    def x_of(xs: Any, rows: np.ndarray | None) -> torch.Tensor:
        if ds.kind == "text":
            assert text_model is not None
            texts = xs if rows is None else [xs[i] for i in rows]
            # torch types a Module's attributes as ``Tensor | Module``; a text model tokenizes
            return cast(Any, text_model).tokenize(texts)
        arr = xs if rows is None else xs[rows]
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    out = {}
    for split, rows in idx.items():
        out[split] = TensorDataset(x_of(ds.train_x, rows), torch.from_numpy(ds.train_y[rows]))
    out["test"] = TensorDataset(x_of(ds.test_x, None), torch.from_numpy(ds.test_y))
    return out


def _model_spec(cfg: WorkloadConfig, ds: LoadedDataset) -> ModelSpec:
    kind = model_kind(cfg.model.name)
    if kind != ds.kind:
        raise ConfigError(f"workload {cfg.name}: model {cfg.model.name!r} takes {kind} input but "
                          f"dataset {cfg.dataset.name!r} is {ds.kind}")
    shape = ds.input_shape or (0, 0, 0)
    return ModelSpec(cfg.model.name, ds.num_classes, in_chans=int(shape[0]),
                     img_size=int(shape[-1]), pretrained=cfg.model.pretrained,
                     options=dict(cfg.model.options))


def task_of(cfg: WorkloadConfig) -> str:
    """``generate`` for a workload whose model is a causal language model (prepared by
    :mod:`raysweep.lm.workload`), ``classify`` otherwise."""
    return "generate" if model_kind(cfg.model.name) == "lm" else "classify"


def check_workload(cfg: WorkloadConfig) -> None:
    """Everything :func:`prepare` checks before it trains: the data loads, the subset sizes fit,
    the model takes this input and the scenario selects a forget set. Nothing is written."""
    if task_of(cfg) == "generate":
        from raysweep.lm.workload import check_lm_workload

        check_lm_workload(cfg)
        return
    if cfg.lm is not None:
        raise ConfigError(f"workload {cfg.name}: lm: is for language-model workloads, and "
                          f"model {cfg.model.name!r} is a classifier; remove the lm: section")
    ds = load_data(cfg)
    _model_spec(cfg, ds)
    split_indices(cfg, ds)
    cfg.scenario.forget_classes(ds)


def prepare(cfg: WorkloadConfig, *, device: str | None = None, force: bool = False,
            quiet: bool = False, cached_only: bool = False) -> PreparedWorkload | None:
    """Prepare (or load from cache) the workload's original model, oracle and outputs.

    With ``cached_only`` nothing is trained: the cached workload, or ``None`` when there is none.
    A workload whose model is a causal language model is prepared by
    :func:`raysweep.lm.workload.prepare_lm` (same cache, same interface).
    """
    if task_of(cfg) == "generate":
        from raysweep.lm.workload import prepare_lm

        return prepare_lm(cfg, device=device, force=force, quiet=quiet,  # type: ignore[return-value]
                          cached_only=cached_only)
    if cfg.lm is not None:
        check_workload(cfg)
    say = (lambda m: None) if quiet else info
    key = workload_key(cfg)
    cache = cache_root() / "workloads" / f"{safe_name(cfg.name)}-{key}"
    if not cached_only:  # the cache is written after training: an unusable one fails first
        check_writable_dir(cache_root(), "RAYSWEEP_CACHE")
    dev = resolve_device(device)
    ds = load_data(cfg)
    spec = _model_spec(cfg, ds)
    idx = split_indices(cfg, ds)
    forget_classes = cfg.scenario.forget_classes(ds)
    text_model = None
    if ds.kind == "text":
        text_model = _build(spec, pretrained=False, seed=cfg.seed)
    splits = _tensorize(cfg, ds, idx, text_model)
    common: dict[str, Any] = {"config": cfg, "key": key, "kind": ds.kind,
                              "class_names": list(ds.class_names),
                              "forget_classes": forget_classes, "splits": splits,
                              "model_spec": spec, "matched": matched_masks(cfg, ds, idx)}
    if cache.is_dir() and not force:
        try:
            return _load_cached(cache, common, quiet)
        except (OSError, EOFError, KeyError, ValueError, RuntimeError,
                zipfile.BadZipFile) as exc:  # truncated or foreign files: prepare again
            say(f"[yellow]cache {cache} unreadable ({exc}); preparing again[/]")
    if cached_only:
        return None
    # Built before the first progress line: unusable pretrained weights are one error line.
    original = _build(spec, pretrained=True, seed=cfg.seed)
    sizes = ", ".join(f"{k}={len(v)}" for k, v in splits.items())
    say(f"[bold]preparing workload {cfg.name}[/] ({cfg.dataset.name}, {cfg.model.name}, "
        f"{cfg.scenario.kind}; {sizes}; device {dev})")
    data = UnlearnData(forget=splits["forget"], retain=splits["retain"], val=splits["val"],
                       test=splits["test"], num_classes=len(ds.class_names),
                       forget_classes=forget_classes, batch_size=cfg.train.batch_size)
    full = TensorDataset(torch.cat([splits["retain"].tensors[0], splits["forget"].tensors[0]]),
                         torch.cat([splits["retain"].tensors[1], splits["forget"].tensors[1]]))

    def progress(tag: str) -> Any:
        def cb(epoch: int, loss: float, seconds: float) -> None:
            say(f"  [{tag}] epoch {epoch}/{cfg.train.epochs}  loss {loss:.4f}  {seconds:6.1f}s")
        return cb

    t_orig = train_model(original, full, cfg.train, device=dev, seed=cfg.seed,
                         on_epoch=progress("original"))
    retrain = _build(spec, pretrained=True, seed=cfg.seed)
    t_re = train_model(retrain, splits["retain"], cfg.train, device=dev, seed=cfg.seed,
                       on_epoch=progress("retrain"))
    teacher = _build(spec, pretrained=False, seed=cfg.seed + 7919).to(dev)
    bs = cfg.eval_batch_size
    orig_out = forward_splits(original, data, dev, batch_size=bs)
    re_out = forward_splits(retrain, data, dev, batch_size=bs)
    teacher_logits = forward_splits(
        teacher, _only_forget(data), dev, batch_size=bs).splits["forget"].logits
    write_cache(cache, cfg, original, retrain, orig_out, re_out, t_orig, t_re, idx,
                extra={"teacher_forget_logits.npy": lambda p: np.save(p, teacher_logits)})
    say(f"cached at {cache}")
    return PreparedWorkload(**common, original_state=cpu_state(original),
                            retrain_state=cpu_state(retrain), original_outputs=orig_out,
                            retrain_outputs=re_out, teacher_forget_logits=teacher_logits,
                            original_seconds=t_orig, retrain_seconds=t_re)


def _only_forget(data: UnlearnData) -> UnlearnData:
    empty = TensorDataset(data.forget.tensors[0][:0], data.forget.tensors[1][:0])
    return UnlearnData(forget=data.forget, retain=empty, val=empty, test=empty,
                       num_classes=data.num_classes, forget_classes=data.forget_classes)


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def write_cache(cache: Path, cfg: WorkloadConfig, original: nn.Module, retrain: nn.Module,
                orig_out: Any, re_out: Any, t_orig: float, t_re: float,
                idx: dict[str, np.ndarray], *,
                extra: Mapping[str, Callable[[Path], object]] | None = None,
                meta: Mapping[str, Any] | None = None) -> None:
    """Store a prepared workload: both models' weights and outputs (anything with ``to_npz``),
    the split indices, ``meta.json``, and each ``extra`` file (name -> writer of that path)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling and rename: a crash or a concurrent preparer never leaves
    # a half-written cache that a later run would trust.
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
    torch.save(cpu_state(original), tmp / "original.pt")
    torch.save(cpu_state(retrain), tmp / "retrain.pt")
    orig_out.to_npz(tmp / "original_outputs.npz")
    re_out.to_npz(tmp / "retrain_outputs.npz")
    for name, write in (extra or {}).items():
        write(tmp / name)
    # numpy's stub matches ``**kwds`` against its ``allow_pickle: bool`` keyword too
    np.savez_compressed(tmp / "indices.npz", **idx)  # type: ignore[arg-type]
    doc = {"name": cfg.name, "key": workload_key(cfg), "identity": cfg.identity(),
           **(meta or {}), "original_seconds": t_orig, "retrain_seconds": t_re,
           "created": time.time()}
    (tmp / "meta.json").write_text(json.dumps(doc, indent=2))
    if cache.exists():
        shutil.rmtree(cache, ignore_errors=True)
    try:
        tmp.rename(cache)
    except OSError:  # another process won the race; its artefacts are equivalent
        shutil.rmtree(tmp, ignore_errors=True)


def _load_cached(cache: Path, common: dict[str, Any], quiet: bool = False) -> PreparedWorkload:
    meta = json.loads((cache / "meta.json").read_text())
    idx = np.load(cache / "indices.npz")
    for split in ("forget", "retain", "val"):
        if len(idx[split]) != len(common["splits"][split]):
            raise ValueError(f"cached {split} split has {len(idx[split])} rows, data gives "
                             f"{len(common['splits'][split])}")
    load = lambda p: torch.load(p, map_location="cpu", weights_only=True)  # noqa: E731
    if not quiet:
        info(f"workload {common['config'].name}: using cache {cache}")
    return PreparedWorkload(
        **common, original_state=load(cache / "original.pt"),
        retrain_state=load(cache / "retrain.pt"),
        original_outputs=ModelOutputs.from_npz(cache / "original_outputs.npz"),
        retrain_outputs=ModelOutputs.from_npz(cache / "retrain_outputs.npz"),
        teacher_forget_logits=np.load(cache / "teacher_forget_logits.npy"),
        original_seconds=float(meta["original_seconds"]),
        retrain_seconds=float(meta["retrain_seconds"]))

