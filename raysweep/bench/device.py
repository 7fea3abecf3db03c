"""``raysweep bench device``: images/s of training and of evaluation for the shipped models.

For every model of :mod:`raysweep.models`, at the input size of the workloads that use it (or
CIFAR's 32x32x3 for the paper-scale networks), on the device asked for:

* **train**: SGD steps (forward, cross-entropy, backward, momentum update) over a synthetic
  batch, as a method's epoch over D_r runs them;
* **eval**: forward passes under ``torch.inference_mode`` at the evaluation batch size, as
  the per-epoch evaluation runs them.

The synthetic data set is created on the device once and stays there for the whole
measurement (what a trial does when its data fits), so the figures are the model's compute,
not a data loader's. Warm-up steps (cuDNN autotuning, allocator growth, lazy init) are not
timed; CUDA is synchronised before every clock read. On a CPU the trial's thread count is
used (one, by default, as a one-CPU trial runs).

From the ResNet-18 (CIFAR stem) figures it projects the paper-scale sweep of
``docs/results/scale.md``: T_epoch = 50,000 / train images/s, one evaluation = 60,000 /
eval images/s, and

    t_trial = 2.0 x T_epoch + 3 x T_eval + 2.3 s;   1,980 trials.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raysweep._provenance import load_average
from raysweep.models import create_model

__all__ = ["MODEL_INPUTS", "PRECISIONS", "check_device", "measure_model", "project_sweep",
           "run_device_bench", "write_device_report"]

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ModelInput:
    """The input a model is measured at: image channels/size, or token ids of a length."""

    in_chans: int
    img_size: int
    num_classes: int
    seq_len: int = 0  # > 0: a text model fed token ids
    causal: bool = False  # a causal language model: a target token per position


#: Per shipped model: the input of the workloads that use it (Fashion-MNIST 28x28x1 for the
#: CPU models, CIFAR-100 32x32x3 for the paper-scale networks, 48 tokens for MiniLM).
MODEL_INPUTS: dict[str, ModelInput] = {
    "mlp": ModelInput(1, 28, 10),
    "smallcnn": ModelInput(1, 28, 10),
    "vit-micro": ModelInput(1, 28, 10),
    "resnet18-cifar": ModelInput(3, 32, 100),
    "resnet18": ModelInput(3, 32, 100),
    "vit-tiny": ModelInput(3, 32, 100),
    "efficientnet-lite0": ModelInput(3, 32, 100),
    "minilm": ModelInput(0, 0, 2, seq_len=48),
    "gpt-tiny": ModelInput(0, 0, 512, seq_len=32, causal=True),   # austen-novel-gpt's
}

#: The projection's network and data set sizes (CIFAR-100: 50,000 train, 10,000 test).
PROJECTION_MODEL = "resnet18-cifar"
TRAIN_IMAGES = 50_000
EVAL_IMAGES = 60_000
#: From docs/results/scale.md: method epochs-equivalent per trial (mean of 22 methods), reported
#: epochs per trial, sweep overhead per trial (s), trials (22 methods x 30 configs x 3 seeds).
METHOD_EPOCHS, EVALS_PER_TRIAL, OVERHEAD_S, SWEEP_TRIALS = 2.0, 3, 2.3, 1980


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _data(inp: ModelInput, n: int, device: torch.device,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if inp.causal:  # ids and next-token targets over the model's own vocabulary
        x = torch.randint(2, inp.num_classes, (n, inp.seq_len), generator=gen)
        y = torch.randint(2, inp.num_classes, (n, inp.seq_len), generator=gen)
        return x.to(device), y.to(device)
    if inp.seq_len:
        # Token ids above the special tokens (MiniLM's vocabulary has 30,522 entries).
        x = torch.randint(1000, 30_000, (n, inp.seq_len), generator=gen)
    else:
        x = torch.randn(n, inp.in_chans, inp.img_size, inp.img_size, generator=gen)
    y = torch.randint(0, inp.num_classes, (n,), generator=gen)
    return x.to(device), y.to(device)


def _rate(step: Callable[[int], None], n_batches: int, batch: int, warmup: int,
          device: torch.device) -> float:
    for i in range(warmup):
        step(i)
    _sync(device)
    t = time.perf_counter()
    for i in range(n_batches):
        step(i)
    _sync(device)
    return n_batches * batch / (time.perf_counter() - t)


def measure_model(name: str, device: torch.device, *, train_batch: int, eval_batch: int,
                  batches: int, warmup: int, precision: str = "fp32",
                  seed: int = 0) -> dict[str, Any]:
    """Training and evaluation images/s of one model (data on ``device`` throughout)."""
    inp = MODEL_INPUTS[name]
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"pretrained": False} if not inp.seq_len or inp.causal else {}
    model: nn.Module = create_model(name, inp.num_classes, in_chans=inp.in_chans or 3,
                                    img_size=inp.img_size or 32, **kwargs).to(device)
    gen = torch.Generator().manual_seed(seed)
    # One resident pool, cycled through: a few batches' worth, so every step reads new memory.
    pool = max(train_batch, eval_batch) * 4
    x, y = _data(inp, pool, device, gen)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def train_step(i: int) -> None:
        lo = (i * train_batch) % (pool - train_batch + 1)
        xb, yb = x[lo:lo + train_batch], y[lo:lo + train_batch]
        opt.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            loss = loss_fn(model(xb), yb)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def eval_step(i: int) -> None:
        lo = (i * eval_batch) % (pool - eval_batch + 1)
        with torch.inference_mode(), _autocast(device, precision):
            model(x[lo:lo + eval_batch])

    model.train()
    train_ips = _rate(train_step, batches, train_batch, warmup, device)
    model.eval()
    eval_ips = _rate(eval_step, batches, eval_batch, warmup, device)
    params = sum(p.numel() for p in model.parameters())
    unit = "sequences" if inp.seq_len else "images"
    return {
        "model": name, "input": (f"{inp.seq_len} tokens" if inp.seq_len
                                 else f"{inp.in_chans}x{inp.img_size}x{inp.img_size}"),
        "unit": unit, "classes": inp.num_classes, "parameters": params,
        "train_batch": train_batch, "eval_batch": eval_batch, "timed_batches": batches,
        "train_per_s": round(train_ips, 1), "eval_per_s": round(eval_ips, 1),
        "eval_over_train": round(eval_ips / train_ips, 2),
    }


def project_sweep(row: dict[str, Any]) -> dict[str, Any]:
    """The paper-scale sweep of docs/results/scale.md from one model's measured rates."""
    t_epoch = TRAIN_IMAGES / row["train_per_s"]
    t_eval = EVAL_IMAGES / row["eval_per_s"]
    t_trial = METHOD_EPOCHS * t_epoch + EVALS_PER_TRIAL * t_eval + OVERHEAD_S
    hours = SWEEP_TRIALS * t_trial / 3600
    return {"model": row["model"], "t_epoch_seconds": round(t_epoch, 1),
            "t_eval_seconds": round(t_eval, 1), "t_trial_seconds": round(t_trial, 1),
            "trials": SWEEP_TRIALS, "device_hours": round(hours, 1),
            "formula": f"{METHOD_EPOCHS} x T_epoch + {EVALS_PER_TRIAL} x T_eval + {OVERHEAD_S} s"}


def _describe(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return (f"CPU {platform.processor() or platform.machine()}, {threads} thread(s) of "
            f"{os.cpu_count()} cores")


def run_device_bench(*, device: str = "cpu", models: tuple[str, ...] | None = None,
                     quick: bool = False, precision: str = "fp32", threads: int = 1,
                     log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Measure every model in ``models`` (default: all shipped) and project the sweep."""
    dev = torch.device(device)
    names = tuple(models or MODEL_INPUTS)
    saved_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(threads)
    if quick:
        sizes = {"train_batch": 8, "eval_batch": 16, "batches": 2, "warmup": 1}
    elif dev.type == "cuda":
        sizes = {"train_batch": 256, "eval_batch": 1024, "batches": 50, "warmup": 10}
    else:
        sizes = {"train_batch": 64, "eval_batch": 256, "batches": 3, "warmup": 1}
    rows, skipped = [], {}
    load_before = load_average()
    try:
        for name in names:
            log(f"device benchmark: {name} on {dev} ({precision})")
            try:
                row = measure_model(name, dev, precision=precision, **sizes)
            except (ImportError, OSError) as exc:  # an optional model's package or weights
                skipped[name] = f"{type(exc).__name__}: {exc}"
                log(f"  skipped: {skipped[name]}")
                continue
            log(f"  train {row['train_per_s']:,.0f}/s, eval {row['eval_per_s']:,.0f}/s")
            rows.append(row)
    finally:
        torch.set_num_threads(saved_threads)
    proj = next((project_sweep(r) for r in rows if r["model"] == PROJECTION_MODEL), None)
    return {
        "benchmark": "device", "created": time.strftime("%Y-%m-%d %H:%M"),
        "device": str(dev), "device_name": _describe(dev, threads), "precision": precision,
        "threads": threads if dev.type == "cpu" else None, "quick": quick,
        "host": f"{platform.node()}, torch {torch.__version__}", **sizes,
        "models": rows, "skipped": skipped, "projection": proj,
        "load_average": [load_before, load_average()],
    }


def write_device_report(report: dict[str, Any], out: Path, command: str) -> Path:
    """The markdown page (and ``<stem>.json`` next to it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Device throughput: images/s of training and evaluation",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Produced {report['created']} on {report['device_name']} ({report['host']}), "
        f"precision {report['precision']}. Synthetic data resident on the device; training = "
        f"SGD steps at batch {report['train_batch']}, evaluation = `inference_mode` forward "
        f"passes at batch {report['eval_batch']}; {report['batches']} timed batches "
        f"after {report['warmup']} warm-up batch(es). Load average (1 min) at the start and "
        f"the end: {report['load_average'][0]} and {report['load_average'][1]}.",
        "",
        "| model | input | parameters | train /s | eval /s | eval / train |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["models"]:
        lines.append(f"| {r['model']} | {r['input']} | {r['parameters']:,} | "
                     f"{r['train_per_s']:,.0f} | {r['eval_per_s']:,.0f} | "
                     f"{r['eval_over_train']} |")
    for name, why in report["skipped"].items():
        lines.append(f"| {name} | skipped: {why} | | | | |")
    p = report["projection"]
    if p:
        lines += [
            "",
            f"**Projection** (the paper-scale sweep of [scale.md](scale.md), on this device): "
            f"{p['model']} on CIFAR-100, T_epoch = 50,000 / train rate = "
            f"{p['t_epoch_seconds']:,} s, one evaluation = 60,000 / eval rate = "
            f"{p['t_eval_seconds']:,} s; t_trial = {p['formula']} = "
            f"{p['t_trial_seconds']:,} s; {p['trials']:,} trials = "
            f"**{p['device_hours']:,} device-hours**.",
        ]
    if report["device"] == "cpu":
        lines += ["", "No GPU was measured here: the GPU figures are pending a session on a GPU "
                      "machine "
                      "(`raysweep bench device --device cuda -o docs/results/device-gpu.md`)."]
    if report["quick"]:
        lines += ["", "`--quick`: a handful of tiny batches; the rates are not meaningful."]
    out.write_text("\n".join(lines) + "\n")
    return out


def check_device(device: str) -> str | None:
    """Why ``device`` cannot be used here (None: it can)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        return "not a torch device name"
    if dev.type not in ("cpu", "cuda"):
        return "only cpu and cuda are measured"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device is visible here"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"only {torch.cuda.device_count()} CUDA device(s) here"
    return None

