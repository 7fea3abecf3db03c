"""Language-model metrics: perplexity, next-token accuracy, verbatim memorisation, membership
attacks (loss and Min-K% probability), and every one's distance to the retrain oracle.

One forward pass per split (:func:`forward_lm`) records per-passage statistics
(:class:`LMSplit`); :func:`evaluate_lm` turns them into the flat metric dict, the same shape
that classification workloads give, so the run engine, the objective, leaderboards and MLflow
treat both alike. Keys shared with classification mean the analogous thing:

* ``forget/acc``, ``retain/acc``, ``val/acc``, ``test/acc``: next-token accuracy (top-1 over
  every real target token of the split).
* ``mia/auc/{split}``: the loss attack, P(a D_f passage has lower loss than a held-out one of
  the same source(s)); ``mia/mink_auc/{split}``: the same attack on the Min-K% probability
  score (Shi et al. 2024: the mean log-probability of the k% least likely tokens).
* ``js/retrain`` and ``dist/js``: the mean Jensen-Shannon divergence between the model's and the
  oracle's next-token distributions at fixed positions of each D_f passage.
* ``forget/verbatim`` (and retain, val, test): the share of passages whose greedy continuation
  of a ``prefix``-token prompt reproduces the next ``suffix`` tokens exactly (passages shorter
  than ``prefix + suffix`` do not count).
* ``forget/ppl`` (and retain, val, test): exp of the mean next-token cross-entropy.

Held-out text: under source forgetting (the ``class`` scenario: forget a novel) the matched
held-out passages are those of the forgotten source(s), the attack's non-members; the
held-out accuracy term adds up the distances on the retained and the forgotten sources, as the
classification term does for retained and forgotten classes. Under random forgetting every
held-out passage is matched.

Every distance compares two values measured by this module the same way on the model and on
the oracle, so the oracle's distances are exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.metrics.oracle import HELDOUT_SPLITS, loss_auc
from raysweep.models.lm import IGNORE_INDEX

__all__ = ["LMEvalConfig", "LMSplit", "LMOutputs", "forward_lm", "evaluate_lm", "js_positions",
           "reference_distributions", "LM_SPLITS"]

LM_SPLITS: tuple[str, ...] = ("forget", "retain", "val", "test")


@dataclass(frozen=True)
class LMEvalConfig:
    """How the statistics are measured (the workload's ``lm:`` section fixes them)."""

    prefix: int = 16          # prompt tokens of the verbatim test (the <s> token included)
    suffix: int = 16          # tokens the greedy continuation must reproduce
    mink: float = 0.2         # the k of Min-K% probability
    js_points: int = 8        # positions per D_f passage where JS to the oracle is measured
    retain_rows: int = 256    # D_r passages whose verbatim continuation is tested


@dataclass
class LMSplit:
    """Per-passage statistics of one split (arrays of length N)."""

    nll: np.ndarray           # mean next-token cross-entropy over the passage's real targets
    tokens: np.ndarray        # real target tokens
    correct: np.ndarray       # targets predicted exactly (argmax)
    mink: np.ndarray          # minus the mean log-prob of the k% least likely tokens
    verbatim: np.ndarray      # 1/0 greedy continuation matched; NaN: too short or not tested
    js: np.ndarray = field(default_factory=lambda: np.zeros(0))  # D_f only: JS to the oracle

    def __len__(self) -> int:
        return len(self.nll)

    def subset(self, rows: np.ndarray) -> LMSplit:
        return LMSplit(**{f.name: (getattr(self, f.name)[rows]
                                   if len(getattr(self, f.name)) == len(self)
                                   else getattr(self, f.name))
                          for f in fields(self)})

    def acc(self) -> float:
        return float(self.correct.sum() / max(self.tokens.sum(), 1))

    def mean_nll(self) -> float:
        """Token-weighted: the split's cross-entropy, log of its perplexity."""
        return float((self.nll * self.tokens).sum() / max(self.tokens.sum(), 1))

    def verbatim_rate(self) -> float | None:
        tested = self.verbatim[np.isfinite(self.verbatim)]
        return float(tested.mean()) if len(tested) else None


@dataclass
class LMOutputs:
    """:class:`LMSplit` per split (what the cache stores for the original and the oracle)."""

    splits: dict[str, LMSplit]

    def __getitem__(self, split: str) -> LMSplit:
        return self.splits[split]

    def __contains__(self, split: str) -> bool:
        return split in self.splits

    def nonfinite_splits(self) -> list[str]:
        """Splits whose losses are NaN (a diverged model; an infinite loss is a valid value)."""
        return [s for s, o in self.splits.items() if np.isnan(o.nll).any()]

    def to_npz(self, path: Path) -> None:
        arrays = {f"{s}.{f.name}": getattr(o, f.name) for s, o in self.splits.items()
                  for f in fields(o)}
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def from_npz(cls, path: Path) -> LMOutputs:
        data = np.load(path)
        splits: dict[str, dict[str, np.ndarray]] = {}
        for key in data.files:
            split, name = key.split(".", 1)
            splits.setdefault(split, {})[name] = data[key]
        try:
            return cls({s: LMSplit(**v) for s, v in splits.items()})
        except TypeError as exc:   # a field missing or foreign: a damaged or older file
            raise ValueError(f"{path}: not a language-model outputs file ({exc})") from None


def js_positions(targets: torch.Tensor, points: int) -> torch.Tensor:
    """``(N, points)`` positions spread evenly over each passage's real targets (repeats on a
    short passage); the model and the oracle are compared at the same ones."""
    real = (targets != IGNORE_INDEX).sum(1).clamp_min(1)
    steps = torch.linspace(0, 1, points).unsqueeze(0)
    return (steps * (real.unsqueeze(1) - 1)).round().long()


def _lm_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """``(B, T, V)`` logits: a :class:`~raysweep.models.lm.CausalLM` gives them directly; any
    other model in the ``(B, V, T)`` convention is transposed."""
    fn = getattr(model, "logits", None)
    return fn(ids) if callable(fn) else model(ids).transpose(1, 2)


def reference_distributions(model: nn.Module, ds: TensorDataset, device: torch.device, *,
                            points: int, batch_size: int = 128) -> np.ndarray:
    """The oracle's next-token probabilities at :func:`js_positions` of each passage,
    ``(N, points, V)`` float16 (what every later model's JS on D_f is measured against)."""
    x_all, y_all = ds.tensors
    pos_all = js_positions(y_all, points)
    out = []
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(x_all), batch_size):
                x = x_all[i:i + batch_size].to(device)
                pos = pos_all[i:i + batch_size].to(device)
                logits = _lm_logits(model, x).float()
                picked = logits.gather(1, pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
                out.append(torch.softmax(picked, -1).half().cpu())
    finally:
        model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, points, 0), np.float16)


def forward_lm(model: nn.Module, ds: TensorDataset, device: torch.device, cfg: LMEvalConfig, *,
               batch_size: int = 128, verbatim_rows: np.ndarray | None = None,
               verbatim: bool = True, js_reference: np.ndarray | None = None) -> LMSplit:
    """Per-passage statistics of ``model`` on ``ds`` (inputs, targets), in inference mode.

    ``verbatim_rows``: test the greedy continuation on these rows only (``None``: every row;
    ``verbatim=False``: none). ``js_reference``: the oracle's :func:`reference_distributions`
    of these passages, for the per-passage JS.
    """
    x_all, y_all = ds.tensors
    n = len(x_all)
    nll, tokens, correct, mink = (np.zeros(n) for _ in range(4))
    js = np.zeros(n if js_reference is not None else 0)
    pos_all = js_positions(y_all, cfg.js_points) if js_reference is not None else None
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                x = x_all[i:i + batch_size].to(device)
                y = y_all[i:i + batch_size].to(device)
                logits = _lm_logits(model, x).float()
                logp = torch.log_softmax(logits, -1)
                real = y != IGNORE_INDEX
                tok_logp = logp.gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1)
                tok_logp = torch.where(real, tok_logp, torch.zeros_like(tok_logp))
                count = real.sum(1)
                rows = slice(i, i + len(x))
                tokens[rows] = count.cpu().numpy()
                nll[rows] = (-tok_logp.sum(1) / count.clamp_min(1)).cpu().numpy()
                correct[rows] = ((logits.argmax(-1) == y) & real).sum(1).cpu().numpy()
                mink[rows] = _mink(tok_logp, real, cfg.mink).cpu().numpy()
                if js_reference is not None and pos_all is not None:
                    pos = pos_all[rows].to(device)
                    picked = logp.gather(1, pos.unsqueeze(-1).expand(-1, -1, logp.shape[-1]))
                    ref = torch.from_numpy(js_reference[rows].astype(np.float32)).to(device)
                    js[rows] = _js(picked.exp(), ref).mean(1).cpu().numpy()
            verb = np.full(n, np.nan)
            if verbatim:
                rows_v = np.arange(n) if verbatim_rows is None else np.asarray(verbatim_rows)
                verb[rows_v] = _verbatim(model, x_all, y_all, rows_v, cfg, device, batch_size)
    finally:
        model.train(was)
    return LMSplit(nll=nll, tokens=tokens, correct=correct, mink=mink, verbatim=verb, js=js)


def _mink(tok_logp: torch.Tensor, real: torch.Tensor, k: float) -> torch.Tensor:
    """Minus the mean log-probability of each row's ceil(k x real) least likely real tokens."""
    masked = torch.where(real, tok_logp, torch.full_like(tok_logp, math.inf))
    ordered = masked.sort(1).values
    take = (real.sum(1).float() * k).ceil().clamp_min(1).long()
    # Real tokens sort before the +inf padding, and take <= the real count: ``keep`` selects real
    # tokens only. A log-probability of -inf (an underflowed token) stays: the score is +inf.
    keep = torch.arange(ordered.shape[1], device=ordered.device).unsqueeze(0) < take.unsqueeze(1)
    ordered = torch.where(keep, ordered, torch.zeros_like(ordered))
    return -ordered.sum(1) / take.float()


def _js(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) over the last dimension."""
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, a * (a.clamp_min(1e-30).log() - m.clamp_min(1e-30).log()),
                           torch.zeros_like(a)).sum(-1)

    return (0.5 * kl(p) + 0.5 * kl(q)).clamp(0.0, math.log(2.0))


def _verbatim(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, rows: np.ndarray,
              cfg: LMEvalConfig, device: torch.device, batch_size: int) -> np.ndarray:
    """1.0 where greedy decoding from the first ``prefix`` input tokens reproduces the next
    ``suffix`` tokens exactly, 0.0 where not, NaN where the passage is too short."""
    p, s = cfg.prefix, cfg.suffix
    out = np.full(len(rows), np.nan)
    long_enough = ((y_all[rows] != IGNORE_INDEX).sum(1) >= p + s - 1).numpy()
    todo = np.flatnonzero(long_enough)
    for j in range(0, len(todo), batch_size):
        sel = todo[j:j + batch_size]
        x = x_all[rows[sel]].to(device)
        cur = x[:, :p]
        for _ in range(s):
            nxt = _lm_logits(model, cur)[:, -1].argmax(-1, keepdim=True)
            cur = torch.cat([cur, nxt], 1)
        out[sel] = (cur[:, p:p + s] == x[:, p:p + s]).all(1).float().cpu().numpy()
    return out


def _split_keys(name: str, o: LMSplit) -> dict[str, float]:
    nll = o.mean_nll()
    out = {f"{name}/acc": o.acc(), f"{name}/ppl": float(math.exp(min(nll, 700.0)))}
    rate = o.verbatim_rate()
    if rate is not None:
        out[f"{name}/verbatim"] = rate
    return out


def _raw(out: LMOutputs, matched: dict[str, np.ndarray | None],
         source_forgetting: bool) -> dict[str, float]:
    """Every raw value a distance reads (not yet the distances)."""
    raw: dict[str, float] = {}
    f = out["forget"]
    raw["forget/nll"] = f.mean_nll()
    for name, o in out.splits.items():
        raw.update(_split_keys(name, o))
        raw[f"{name}/nll"] = o.mean_nll()
    if len(f.js):
        raw["js/retrain"] = float(f.js.mean())
    for split in HELDOUT_SPLITS:
        if split not in out:
            continue
        h = out[split]
        mask = matched.get(split)
        nonmembers = h if mask is None else h.subset(np.flatnonzero(mask))
        auc = loss_auc(f.nll, nonmembers.nll)
        mink = loss_auc(f.mink, nonmembers.mink)
        if auc is not None:
            raw[f"mia/auc/{split}"] = auc
            raw[f"mia/auc_n/{split}"] = float(min(len(f), len(nonmembers)))
        if mink is not None:
            raw[f"mia/mink_auc/{split}"] = mink
        if source_forgetting and mask is not None:
            raw[f"heldout/acc/{split}"] = h.subset(np.flatnonzero(~mask)).acc()
            raw[f"heldout/acc_forgotten/{split}"] = nonmembers.acc()
        else:
            raw[f"heldout/acc/{split}"] = h.acc()
    return raw


def evaluate_lm(out: LMOutputs, *, original: LMOutputs, retrain: LMOutputs,
                matched: dict[str, np.ndarray | None], source_forgetting: bool,
                seconds: float | None = None,
                retrain_seconds: float | None = None) -> dict[str, float]:
    """The flat metric dict of a model's outputs against the original and the oracle.

    Only the splits present in ``out`` are evaluated (the per-epoch selection pass has D_f and
    val): a key is recorded only when both sides of it were measured.
    """
    mine = _raw(out, matched, source_forgetting)
    oracle = _raw(retrain, matched, source_forgetting)
    orig = _raw(original, matched, source_forgetting)
    metrics = {k: v for k, v in mine.items() if not k.endswith("/nll")}
    metrics["forget/loss"] = mine["forget/nll"]
    if "test/nll" in mine:
        metrics["test/loss"] = mine["test/nll"]

    def dist(key: str, raw_key: str) -> None:
        if raw_key in mine and raw_key in oracle:
            metrics[key] = abs(mine[raw_key] - oracle[raw_key])

    dist("dist/forget_acc", "forget/acc")
    dist("dist/retain_acc", "retain/acc")
    if "retain/acc" in mine:
        # below the lower of the original's and the oracle's (see metrics/_evaluate.py)
        metrics["rel/retain_drop"] = (min(orig["retain/acc"], oracle.get("retain/acc", 1.0))
                                      - mine["retain/acc"])
    dist("dist/forget_verbatim", "forget/verbatim")
    dist("dist/forget_ppl", "forget/nll")   # in log space: |log ppl - the oracle's log ppl|
    dist("dist/retain_ppl", "retain/nll")
    if "js/retrain" in mine:
        metrics["dist/js"] = mine["js/retrain"]
    for split in HELDOUT_SPLITS:
        dist(f"dist/mia_auc/{split}", f"mia/auc/{split}")
        dist(f"dist/mink_auc/{split}", f"mia/mink_auc/{split}")
        dist(f"dist/heldout_ppl/{split}", f"{split}/nll")
        key = f"heldout/acc/{split}"
        if key in mine and key in oracle:
            d = abs(mine[key] - oracle[key])
            k2 = f"heldout/acc_forgotten/{split}"
            if k2 in mine and k2 in oracle:
                d += abs(mine[k2] - oracle[k2])
            metrics[f"dist/heldout_acc/{split}"] = d
            metrics[f"rel/heldout_drop/{split}"] = min(orig[key], oracle[key]) - mine[key]
    if seconds is not None:
        metrics["time/seconds"] = float(seconds)
        if retrain_seconds:
            metrics["time/ratio"] = float(seconds) / float(retrain_seconds)
    return metrics


def bootstrap_terms(out: LMOutputs, matched: dict[str, np.ndarray | None],
                    source_forgetting: bool, *, split: str = "val", draws: int = 200,
                    seed: int = 0) -> dict[str, float]:
    """Standard deviation of each objective term's raw value over bootstrap resamples of the
    passages (D_f, D_r and the held-out split resampled independently): the spread the signal
    check compares the original-oracle gap with."""
    rng = np.random.default_rng(seed)
    keys = ("forget/acc", "forget/verbatim", "retain/acc", f"heldout/acc/{split}",
            f"mia/auc/{split}", "js/retrain")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    f, r, h = out["forget"], out["retain"], out[split]
    m = matched.get(split)
    for _ in range(draws):
        fr = rng.integers(0, len(f), len(f))
        rr = rng.integers(0, len(r), len(r))
        hr = rng.integers(0, len(h), len(h))
        view = LMOutputs({"forget": f.subset(fr), "retain": r.subset(rr),
                          split: h.subset(hr)})
        mview = {split: None if m is None else np.asarray(m)[hr]}
        raw = _raw(view, mview, source_forgetting)
        for k in keys:
            if k in raw:
                samples[k].append(raw[k])
    return {k: float(np.std(v)) for k, v in samples.items() if len(v) > 1}
