"""Loaders for data the user keeps in a local directory (nothing is ever downloaded).

CIFAR is read from torchvision's on-disk layout (``cifar-10-batches-py/``,
``cifar-100-python/``) with our own reader rather than ``torchvision.datasets.CIFAR10``:
torchvision refuses any file whose MD5 differs from the official archive, which rules out
trimmed or re-packed copies, and it hides CIFAR-100's coarse labels that the sub-class
scenario needs. Files are unpickled with a restricted unpickler that only builds plain
containers and numpy arrays, so a hostile file cannot run code.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from raysweep.data._base import LoadedDataset, register_dataset
from raysweep.errors import DataError

CIFAR10_LAYOUT = """expected layout (torchvision's, from cifar-10-python.tar.gz):
  ROOT/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta"""
CIFAR100_LAYOUT = """expected layout (torchvision's, from cifar-100-python.tar.gz):
  ROOT/cifar-100-python/train, test, meta"""


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "bytes"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            obj = _SafeUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a valid CIFAR pickle ({exc}); "
                        f"re-extract the archive") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a valid CIFAR pickle (top level is {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _images(batch: dict[str, Any], path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be an (N, 3072) array, got shape {data.shape}")
    return (data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)


def _labels(batch: dict[str, Any], key: str, n: int, path: Path, num_classes: int) -> np.ndarray:
    if key not in batch:
        raise DataError(f"{path}: missing {key!r}")
    try:
        y = np.asarray(batch[key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: {key!r} are not integer class labels; re-extract the "
                        f"archive") from None
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{path}: {n} images but {key} of shape {y.shape}")
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: {key}[{i}] = {int(y[i])} is outside 0..{num_classes - 1} "
                        f"({int(bad.sum())} such labels); this is not an intact CIFAR file: "
                        f"re-extract the archive")
    return y


def _require_dir(root: str | None, sub: str, layout: str, name: str) -> Path:
    if root is None:
        raise DataError(f"{name} is not bundled: set dataset.root to the directory holding "
                        f"{sub}/ ({layout})")
    base = Path(root).expanduser() / sub
    if not base.is_dir():
        raise DataError(f"{name}: directory {base} not found; {layout.replace('ROOT', str(root))}")
    return base


def _require_file(base: Path, fname: str, layout: str) -> Path:
    path = base / fname
    if not path.is_file():
        raise DataError(f"{path} not found; {layout}")
    return path


@register_dataset("cifar10", kind="image", embedded=False,
                  description="CIFAR-10 from a local directory (torchvision layout, no download)")
def load_cifar10(root: str | None = None) -> LoadedDataset:
    base = _require_dir(root, "cifar-10-batches-py", CIFAR10_LAYOUT, "cifar10")
    xs, ys = [], []
    for i in range(1, 6):
        path = _require_file(base, f"data_batch_{i}", CIFAR10_LAYOUT)
        batch = _unpickle(path)
        x = _images(batch, path)
        xs.append(x)
        ys.append(_labels(batch, "labels", len(x), path, 10))
    test_path = _require_file(base, "test_batch", CIFAR10_LAYOUT)
    test = _unpickle(test_path)
    xte = _images(test, test_path)
    yte = _labels(test, "labels", len(xte), test_path, 10)
    names = [str(i) for i in range(10)]
    meta_path = base / "batches.meta"
    if meta_path.is_file():
        meta = _unpickle(meta_path)
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in meta.get("label_names", names)]
    return LoadedDataset("cifar10", "image", np.concatenate(xs), np.concatenate(ys), xte, yte,
                         names)


@register_dataset("cifar100", kind="image", embedded=False,
                  description="CIFAR-100 from a local directory; labels=fine|coarse "
                              "(20 superclasses)")
def load_cifar100(root: str | None = None, labels: str = "fine") -> LoadedDataset:
    """With ``labels="coarse"`` the model learns the 20 superclasses and the 100 fine classes are
    groups, so a sub-class scenario can forget e.g. "rocket" inside "vehicles 2"."""
    if labels not in ("fine", "coarse"):
        raise DataError(f"cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
    base = _require_dir(root, "cifar-100-python", CIFAR100_LAYOUT, "cifar100")
    out = {}
    for split in ("train", "test"):
        path = _require_file(base, split, CIFAR100_LAYOUT)
        batch = _unpickle(path)
        x = _images(batch, path)
        out[split] = (x, _labels(batch, "fine_labels", len(x), path, 100),
                      _labels(batch, "coarse_labels", len(x), path, 20))
    fine_names = [str(i) for i in range(100)]
    coarse_names = [str(i) for i in range(20)]
    meta_path = base / "meta"
    if meta_path.is_file():
        meta = _unpickle(meta_path)
        fine_names = [str(n) for n in meta.get("fine_label_names", fine_names)]
        coarse_names = [str(n) for n in meta.get("coarse_label_names", coarse_names)]
    (xtr, ftr, ctr), (xte, fte, cte) = out["train"], out["test"]
    if labels == "fine":
        return LoadedDataset("cifar100", "image", xtr, ftr, xte, fte, fine_names,
                             group_names=coarse_names, train_groups=ctr, test_groups=cte)
    return LoadedDataset("cifar100", "image", xtr, ctr, xte, cte, coarse_names,
                         group_names=fine_names, train_groups=ftr, test_groups=fte)


@register_dataset("image-folder", kind="image", embedded=False,
                  description="ROOT/train/<class>/*.png|jpg and ROOT/test/<class>/* "
                              "(torchvision ImageFolder)")
def load_image_folder(root: str | None = None, image_size: int = 32,
                      grayscale: bool = False) -> LoadedDataset:
    from torchvision import datasets, transforms

    if root is None:
        raise DataError("image-folder needs dataset.root: a directory with train/<class>/ and "
                        "test/<class>/")
    splits = {}
    tfm = [transforms.Resize((image_size, image_size))]
    if grayscale:
        tfm.append(transforms.Grayscale())
    tfm.append(transforms.ToTensor())
    for split in ("train", "test"):
        d = Path(root).expanduser() / split
        if not d.is_dir():
            raise DataError(f"image-folder: {d} not found; expected ROOT/train/<class>/* and "
                            f"ROOT/test/<class>/*")
        try:
            ds = datasets.ImageFolder(str(d), transform=transforms.Compose(tfm))
        except (FileNotFoundError, RuntimeError) as exc:
            raise DataError(f"image-folder: {d}: {exc}") from None
        x = np.stack([_read_image(ds, i) for i in range(len(ds))]).astype(np.float32)
        splits[split] = (x, np.asarray(ds.targets, dtype=np.int64), list(ds.classes))
    if splits["train"][2] != splits["test"][2]:
        raise DataError(f"image-folder: train classes {splits['train'][2]} differ from test "
                        f"classes {splits['test'][2]}")
    return LoadedDataset("image-folder", "image", splits["train"][0], splits["train"][1],
                         splits["test"][0], splits["test"][1], splits["train"][2])


def _read_image(ds: Any, i: int) -> np.ndarray:
    """One image of an ``ImageFolder``; an unreadable file is one line naming it."""
    path = ds.samples[i][0]
    try:
        return ds[i][0].numpy()
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: truncated, not an image, bad header
        raise DataError(f"image-folder: {path} cannot be read as an image ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:120]}); "
                        f"remove or replace the file") from None


def _read_text_table(path: Path, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    import pandas as pd

    try:
        if path.suffix in (".jsonl", ".ndjson"):
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            frame = pd.DataFrame(rows)
        else:
            frame = pd.read_csv(path)
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse ({exc})") from None
    missing = {text_col, label_col} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; "
                        f"found {list(frame.columns)} "
                        f"(set dataset.options.text_column / label_column)")
    frame = frame.dropna(subset=[text_col, label_col])
    return frame[text_col].astype(str).tolist(), frame[label_col].astype(str).tolist()


@register_dataset("text-files", kind="text", embedded=False,
                  description="ROOT/train.{csv,jsonl} and ROOT/test.{csv,jsonl} with text and "
                              "label columns")
def load_text_files(root: str | None = None, text_column: str = "text",
                    label_column: str = "label") -> LoadedDataset:
    if root is None:
        raise DataError("text-files needs dataset.root: a directory with train.csv|jsonl and "
                        "test.csv|jsonl")
    base = Path(root).expanduser()
    found = {}
    for split in ("train", "test"):
        cands = [base / f"{split}{ext}" for ext in (".csv", ".jsonl", ".ndjson")]
        path = next((p for p in cands if p.is_file()), None)
        if path is None:
            raise DataError(f"text-files: none of {[str(c) for c in cands]} exists")
        found[split] = _read_text_table(path, text_column, label_column)
    class_names = sorted(set(found["train"][1]))
    index = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(set(found["test"][1]) - set(index))
    if unknown:
        raise DataError(f"text-files: test labels {unknown} never appear in train")
    ytr = np.array([index[c] for c in found["train"][1]], dtype=np.int64)
    yte = np.array([index[c] for c in found["test"][1]], dtype=np.int64)
    return LoadedDataset("text-files", "text", found["train"][0], ytr, found["test"][0], yte,
                         class_names)
