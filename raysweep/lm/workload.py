"""Text-generation workloads: a causal LM that memorises its training passages, and the oracle.

A workload whose model is a causal language model (``gpt-tiny``) is prepared here; every other
path of the service (the run engine, sweeps, suites, leaderboards, MLflow) takes the
:class:`PreparedLMWorkload` exactly where it takes a classification workload, because both
answer the same calls (``unlearn_data``, ``context``, ``forward_selection``,
``evaluate_selection``, ``forward_full``, ``evaluate``, ``reference_metrics``,
``signal_check``...).

Preparation: the dataset's passages (a text dataset whose classes are the sources, e.g. the six
Austen novels) are split as every workload splits (val held out, D_f chosen by the scenario:
``class`` forgets one source, ``random`` a random set of passages); a BPE tokenizer is trained
on D_r's text; the original is trained on D = D_r + D_f and the oracle on D_r with the same
recipe and seed; both are measured by :func:`raysweep.lm.metrics.forward_lm`, and the oracle's
next-token distributions on D_f are kept for the JS term. All of it is cached under
``$RAYSWEEP_CACHE/workloads/<name>-<hash>/`` like any workload.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep._console import info
from raysweep.config import LMOptions, WorkloadConfig
from raysweep.data.bundle import UnlearnData
from raysweep.errors import ConfigError
from raysweep.lm.metrics import (
    LMEvalConfig,
    LMOutputs,
    bootstrap_terms,
    evaluate_lm,
    forward_lm,
    reference_distributions,
)
from raysweep.lm.tokenizer import encode_passages, train_tokenizer, vocab_size
from raysweep.metrics import ObjectiveConfig
from raysweep.metrics.oracle import LM_TERMS
from raysweep.models import ModelSpec
from raysweep.preflight import check_writable_dir
from raysweep.training import resolve_device, train_model
from raysweep.workload import (
    WorkloadBase,
    cache_root,
    cpu_state,
    load_data,
    matched_masks,
    safe_name,
    signal_row,
    split_indices,
    stratified_rows,
    workload_key,
    write_cache,
)

__all__ = ["PreparedLMWorkload", "prepare_lm", "check_lm_workload"]


def lm_options(cfg: WorkloadConfig) -> LMOptions:
    return cfg.lm or LMOptions()


def eval_config(cfg: WorkloadConfig) -> LMEvalConfig:
    o = lm_options(cfg)
    return LMEvalConfig(prefix=o.prefix, suffix=o.suffix, mink=o.mink, js_points=o.js_points,
                        retain_rows=o.retain_rows)


@dataclass
class PreparedLMWorkload(WorkloadBase):
    """A prepared text-generation workload (see the module docstring)."""

    config: WorkloadConfig
    key: str
    class_names: list[str]            # the sources (novels, categories)
    forget_classes: tuple[int, ...]   # forgotten sources (the class scenario), else ()
    splits: dict[str, TensorDataset]  # (inputs, targets) token ids per split
    sources: dict[str, np.ndarray]    # each passage's source, per split
    model_spec: ModelSpec
    tokenizer: str
    original_state: dict[str, torch.Tensor]
    retrain_state: dict[str, torch.Tensor]
    original_outputs: LMOutputs
    retrain_outputs: LMOutputs
    js_reference: np.ndarray          # the oracle's next-token distributions on D_f
    original_seconds: float
    retrain_seconds: float
    matched: dict[str, np.ndarray | None] = field(default_factory=dict)
    kind: str = "lm"
    task: str = "generate"

    @property
    def eval_config(self) -> LMEvalConfig:
        return eval_config(self.config)

    @property
    def eval_settings(self) -> LMEvalConfig:
        """The verbatim test's prefix, which the answer-replacing method reuses."""
        return self.eval_config

    @property
    def source_forgetting(self) -> bool:
        return bool(self.forget_classes)

    def warm(self, seeds: Any = (), val_rows: int | None = None) -> None:
        """Nothing to precompute: the references are plain per-passage statistics."""

    def retain_verbatim_rows(self) -> np.ndarray:
        """The D_r passages whose verbatim continuation is tested (fixed by the workload)."""
        return _retain_rows(self.config, len(self.splits["retain"]))

    # -- forward passes -----------------------------------------------------------------------
    def forward_full(self, model: nn.Module, data: UnlearnData, device: torch.device, *,
                     batch_size: int, splits: Any = None) -> LMOutputs:
        """Every split's statistics (``splits``: only these)."""
        return _forward_all(model, data, device, self.eval_config, batch_size=batch_size,
                            splits=splits, retain_rows=self.retain_verbatim_rows(),
                            js_reference=self.js_reference)

    def selection_rows(self, seed: int = 0, val_rows: int | None = None) -> np.ndarray | None:
        """The val rows the per-epoch selection reads (``None``: all of val)."""
        n_val = len(self.splits["val"])
        if val_rows is None or val_rows >= n_val:
            return None

        strata = self.sources["val"].astype(np.int64)
        return stratified_rows(strata, val_rows, seed)

    def forward_selection(self, model: nn.Module, device: torch.device, *, batch_size: int,
                          seed: int = 0, val_rows: int | None = None) -> LMOutputs:
        """What selection reads: D_f (with verbatim and JS), val, and D_r (losses and
        accuracies, no generation). With the whole of val the values are exactly those
        :meth:`evaluate` gives for these keys."""
        cfg = self.eval_config
        rows = self.selection_rows(seed, val_rows)
        val = self.splits["val"]
        if rows is not None:
            val = TensorDataset(*(t[torch.from_numpy(rows)] for t in val.tensors))
        return LMOutputs({
            "forget": forward_lm(model, self.splits["forget"], device, cfg,
                                 batch_size=batch_size, js_reference=self.js_reference),
            "retain": forward_lm(model, self.splits["retain"], device, cfg,
                                 batch_size=batch_size, verbatim=False),
            # val with its verbatim test: the final evaluation reuses these outputs whole
            "val": forward_lm(model, val, device, cfg, batch_size=batch_size)})

    # -- metrics ------------------------------------------------------------------------------
    def _refs(self, rows: np.ndarray | None) -> tuple[LMOutputs, LMOutputs,
                                                       dict[str, np.ndarray | None]]:
        if rows is None:
            return self.original_outputs, self.retrain_outputs, self.matched

        def cut(o: LMOutputs) -> LMOutputs:
            return LMOutputs({"forget": o["forget"], "retain": o["retain"],
                              "val": o["val"].subset(rows)})

        m = self.matched.get("val")
        return (cut(self.original_outputs), cut(self.retrain_outputs),
                {"val": None if m is None else np.asarray(m)[rows]})

    def evaluate_selection(self, outputs: LMOutputs, *, seconds: float | None, seed: int = 0,
                           retrain_seconds: float | None = None,
                           val_rows: int | None = None) -> dict[str, float]:
        original, retrain, matched = self._refs(self.selection_rows(seed, val_rows))
        view = LMOutputs({k: v for k, v in outputs.splits.items()
                          if k in ("forget", "retain", "val")})
        return evaluate_lm(view, original=_only(original, view), retrain=_only(retrain, view),
                           matched=matched, source_forgetting=self.source_forgetting,
                           seconds=seconds, retrain_seconds=retrain_seconds)

    def evaluate(self, outputs: LMOutputs, *, seconds: float | None, catboost: bool = True,
                 seed: int = 0, retrain_seconds: float | None = None) -> dict[str, float]:
        """All metrics (``catboost`` has no meaning here: the attacks are loss and Min-K%)."""
        return evaluate_lm(outputs, original=self.original_outputs,
                           retrain=self.retrain_outputs, matched=self.matched,
                           source_forgetting=self.source_forgetting, seconds=seconds,
                           retrain_seconds=retrain_seconds)

    def signal_check(self, objective: Any = None, *, split: str = "val",
                     seed: int = 0) -> list[dict[str, Any]]:
        """Does each objective term separate the original from the oracle? One row per term
        (the classification workload's format): the gap over the bootstrap spread of both."""
        weights = (objective or ObjectiveConfig()).for_task(self.task).weights()
        orig = self.evaluate(self.original_outputs, seconds=None)
        oracle = self.evaluate(self.retrain_outputs, seconds=None)
        kw: dict[str, Any] = {"split": split, "seed": seed}
        s_orig = bootstrap_terms(self.original_outputs, self.matched, self.source_forgetting,
                                 **kw)
        s_oracle = bootstrap_terms(self.retrain_outputs, self.matched, self.source_forgetting,
                                   **kw)
        rows = []
        for t in LM_TERMS:
            raw = t.raw_key(split)
            js = t.name == "js"   # a divergence to the oracle: its own raw value is its distance
            o, r = orig.get(raw), 0.0 if js else oracle.get(raw)
            diff = orig.get(t.dist_key(split))
            sd = s_orig.get(raw) if js else _hypot(s_orig.get(raw), s_oracle.get(raw))
            rows.append(signal_row(t.name, t.dist_key(split), o, r, diff, sd,
                                   bool(weights.get(t.name, 0.0))))
        return rows


def _retain_rows(cfg: WorkloadConfig, n: int) -> np.ndarray:
    k = min(n, eval_config(cfg).retain_rows)
    return np.sort(np.random.default_rng(cfg.seed + 17).choice(n, k, replace=False))


def _forward_all(model: nn.Module, data: UnlearnData, device: torch.device, cfg: LMEvalConfig, *,
                 batch_size: int, splits: Any, retain_rows: np.ndarray,
                 js_reference: np.ndarray) -> LMOutputs:
    wanted = tuple(splits) if splits is not None else ("forget", "retain", "val", "test")
    return LMOutputs({name: forward_lm(model, getattr(data, name), device, cfg,
                                       batch_size=batch_size,
                                       verbatim_rows=retain_rows if name == "retain" else None,
                                       js_reference=js_reference if name == "forget" else None)
                      for name in wanted})


def _hypot(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(np.hypot(a, b))


def _only(ref: LMOutputs, view: LMOutputs) -> LMOutputs:
    return LMOutputs({k: ref[k] for k in view.splits})


# -- preparation ------------------------------------------------------------------------------
def _texts(ds: Any, rows: np.ndarray | None, test: bool = False) -> list[str]:
    xs = ds.test_x if test else ds.train_x
    return list(xs) if rows is None else [xs[i] for i in rows]


def _spec(cfg: WorkloadConfig, vocab: int) -> ModelSpec:
    opts = dict(cfg.model.options)
    context = lm_options(cfg).context
    if "context" in opts and opts["context"] != context:
        raise ConfigError(f"workload {cfg.name}: model.options.context ({opts['context']}) "
                          f"differs from lm.context ({context}); set lm.context only")
    opts["context"] = context
    return ModelSpec(cfg.model.name, vocab, pretrained=False, options=opts)


def check_lm_workload(cfg: WorkloadConfig) -> Any:
    """What :func:`prepare_lm` checks before it trains; nothing is written. Returns the
    loaded dataset."""
    ds = load_data(cfg)
    if ds.kind != "text":
        raise ConfigError(f"workload {cfg.name}: model {cfg.model.name!r} is a language model "
                          f"and needs a text dataset; {cfg.dataset.name!r} is {ds.kind}")
    if cfg.model.pretrained:
        raise ConfigError(f"workload {cfg.name}: model.pretrained: {cfg.model.pretrained!r}: "
                          f"{cfg.model.name} is trained by the workload; set it to false")
    split_indices(cfg, ds)
    cfg.scenario.forget_classes(ds)
    _spec(cfg, lm_options(cfg).vocab_size).build(seed=0)   # the options build a model
    return ds


def prepare_lm(cfg: WorkloadConfig, *, device: str | None = None, force: bool = False,
               quiet: bool = False, cached_only: bool = False) -> PreparedLMWorkload | None:
    """Prepare (or load from cache) a text-generation workload; see the module docstring."""
    say = (lambda m: None) if quiet else info
    key = workload_key(cfg)
    cache = cache_root() / "workloads" / f"{safe_name(cfg.name)}-{key}"
    if not cached_only:
        check_writable_dir(cache_root(), "RAYSWEEP_CACHE")
    ds = check_lm_workload(cfg)
    dev = resolve_device(device)
    opts = lm_options(cfg)
    idx = split_indices(cfg, ds)
    forget_classes = cfg.scenario.forget_classes(ds)
    sources = {s: np.asarray(ds.train_y)[rows] for s, rows in idx.items()}
    sources["test"] = np.asarray(ds.test_y)
    matched = matched_masks(cfg, ds, idx)
    if cache.is_dir() and not force:
        try:
            return _load_cached(cache, cfg, key, ds, idx, sources, forget_classes, matched,
                                quiet)
        except (OSError, EOFError, KeyError, ValueError, RuntimeError,
                zipfile.BadZipFile) as exc:
            say(f"[yellow]cache {cache} unreadable ({exc}); preparing again[/]")
    if cached_only:
        return None
    tokenizer = train_tokenizer(_texts(ds, idx["retain"]), opts.vocab_size)
    splits = _encode(tokenizer, ds, idx, opts.context)
    spec = _spec(cfg, vocab_size(tokenizer))
    sizes = ", ".join(f"{k}={len(v)}" for k, v in splits.items())
    say(f"[bold]preparing language-model workload {cfg.name}[/] ({cfg.dataset.name}, "
        f"{cfg.model.name}, {cfg.scenario.kind}; {sizes} passages of <= {opts.context} tokens; "
        f"device {dev})")
    full = TensorDataset(*(torch.cat([splits["retain"].tensors[i], splits["forget"].tensors[i]])
                           for i in range(2)))

    def progress(tag: str) -> Any:
        def cb(epoch: int, loss: float, seconds: float) -> None:
            if epoch == 1 or epoch % 10 == 0 or epoch == cfg.train.epochs:
                say(f"  [{tag}] epoch {epoch}/{cfg.train.epochs}  loss {loss:.4f}  "
                    f"{seconds:6.1f}s")
        return cb

    original = spec.build(seed=cfg.seed)
    t_orig = train_model(original, full, cfg.train, device=dev, seed=cfg.seed,
                         on_epoch=progress("original"))
    retrain = spec.build(seed=cfg.seed)
    t_re = train_model(retrain, splits["retain"], cfg.train, device=dev, seed=cfg.seed,
                       on_epoch=progress("retrain"))
    ecfg = eval_config(cfg)
    js_ref = reference_distributions(retrain, splits["forget"], dev, points=ecfg.js_points,
                                     batch_size=cfg.eval_batch_size)
    data = UnlearnData(forget=splits["forget"], retain=splits["retain"], val=splits["val"],
                       test=splits["test"], num_classes=spec.num_classes)
    kw: dict[str, Any] = {"batch_size": cfg.eval_batch_size, "splits": None,
                          "retain_rows": _retain_rows(cfg, len(splits["retain"])),
                          "js_reference": js_ref}
    orig_out = _forward_all(original, data, dev, ecfg, **kw)
    re_out = _forward_all(retrain, data, dev, ecfg, **kw)
    write_cache(cache, cfg, original, retrain, orig_out, re_out, t_orig, t_re, idx,
                extra={"js_reference.npy": lambda p: np.save(p, js_ref),
                       "tokenizer.json": lambda p: p.write_text(tokenizer)},
                meta={"task": "generate"})
    say(f"  memorisation: verbatim continuation on D_f {_rate(orig_out)} (original) vs "
        f"{_rate(re_out)} (oracle); cached at {cache}")
    return PreparedLMWorkload(
        config=cfg, key=key, class_names=list(ds.class_names), forget_classes=forget_classes,
        splits=splits, sources=sources, model_spec=spec, tokenizer=tokenizer,
        original_state=cpu_state(original), retrain_state=cpu_state(retrain),
        original_outputs=orig_out, retrain_outputs=re_out, js_reference=js_ref,
        original_seconds=t_orig, retrain_seconds=t_re, matched=matched)


def _rate(out: LMOutputs) -> str:
    r = out["forget"].verbatim_rate()
    return "n/a" if r is None else f"{100 * r:.1f}%"


def _encode(tokenizer: str, ds: Any, idx: dict[str, np.ndarray],
            context: int) -> dict[str, TensorDataset]:
    out = {s: TensorDataset(*encode_passages(tokenizer, _texts(ds, rows), context))
           for s, rows in idx.items()}
    out["test"] = TensorDataset(*encode_passages(tokenizer, _texts(ds, None, test=True),
                                                 context))
    return out


def _load_cached(cache: Path, cfg: WorkloadConfig, key: str, ds: Any,
                 idx: dict[str, np.ndarray], sources: dict[str, np.ndarray],
                 forget_classes: tuple[int, ...], matched: dict[str, np.ndarray | None],
                 quiet: bool) -> PreparedLMWorkload:
    meta = json.loads((cache / "meta.json").read_text())
    cached = np.load(cache / "indices.npz")
    for split in ("forget", "retain", "val"):
        if not np.array_equal(cached[split], idx[split]):
            raise ValueError(f"cached {split} split differs from the data's")
    tokenizer = (cache / "tokenizer.json").read_text()
    try:   # the tokenizers library raises a bare Exception on a damaged file
        vocab = vocab_size(tokenizer)
    except Exception as exc:
        raise ValueError(f"tokenizer.json unreadable ({exc})") from None
    opts = lm_options(cfg)
    load = lambda p: torch.load(p, map_location="cpu", weights_only=True)  # noqa: E731
    spec = _spec(cfg, vocab)
    states = {which: load(cache / f"{which}.pt") for which in ("original", "retrain")}
    for state in states.values():   # weights of another shape fail here, not in a trial
        spec.build(seed=0).load_state_dict(state)
    outputs = {which: LMOutputs.from_npz(cache / f"{which}_outputs.npz")
               for which in ("original", "retrain")}
    splits = _encode(tokenizer, ds, idx, opts.context)
    for which, out in outputs.items():
        for split, ds_split in splits.items():
            if split not in out or len(out[split]) != len(ds_split):
                raise ValueError(f"cached {which} outputs lack split {split!r} or its rows")
    js_reference = np.load(cache / "js_reference.npy")
    if js_reference.shape[:2] != (len(splits["forget"]), eval_config(cfg).js_points):
        raise ValueError(f"cached js_reference has shape {js_reference.shape}")
    if not quiet:
        info(f"workload {cfg.name}: using cache {cache}")
    return PreparedLMWorkload(
        config=cfg, key=key, class_names=list(ds.class_names), forget_classes=forget_classes,
        splits=splits, sources=sources, model_spec=spec, tokenizer=tokenizer,
        original_state=states["original"], retrain_state=states["retrain"],
        original_outputs=outputs["original"], retrain_outputs=outputs["retrain"],
        js_reference=js_reference, original_seconds=float(meta["original_seconds"]),
        retrain_seconds=float(meta["retrain_seconds"]), matched=matched)
