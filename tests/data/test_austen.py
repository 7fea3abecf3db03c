"""The ``austen`` text dataset: Jane Austen's six novels from Debian's r-cran-janeaustenr."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from raysweep.data import LoadedDataset, load_dataset
from raysweep.data.embedded import JANEAUSTENR_DIR, load_austen
from raysweep.errors import ConfigError, DataError

TITLES = ["Sense & Sensibility", "Pride & Prejudice", "Mansfield Park", "Emma",
          "Northanger Abbey", "Persuasion"]
# Passages per novel with the default passage_lines=4 (the loader's docstring).
COUNTS = [2634, 2660, 3340, 3405, 1657, 1796]

needs_janeaustenr = pytest.mark.skipif(
    not (Path(JANEAUSTENR_DIR) / "Rdata.rdx").is_file(),
    reason=f"{JANEAUSTENR_DIR}/Rdata.rdx absent: apt-get install r-cran-janeaustenr",
)


@pytest.fixture(scope="module")
def austen() -> LoadedDataset:
    if not (Path(JANEAUSTENR_DIR) / "Rdata.rdx").is_file():
        pytest.skip(f"{JANEAUSTENR_DIR}/Rdata.rdx absent: apt-get install r-cran-janeaustenr")
    return load_dataset("austen")


def _one_line_data_error(exc: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_six_novels_with_their_passage_counts(austen: LoadedDataset) -> None:
    assert austen.kind == "text" and austen.class_names == TITLES
    y = np.concatenate([austen.train_y, austen.test_y])
    assert y.dtype == np.int64 and np.bincount(y).tolist() == COUNTS
    assert len(austen.train_x) == len(austen.train_y) == 12394
    assert len(austen.test_x) == len(austen.test_y) == 3098


def test_passages_are_text_without_headings(austen: LoadedDataset) -> None:
    heading = re.compile(r"\b(CHAPTER|Chapter|VOLUME)\s+([0-9]+|[IVXLC]+)\b")
    for text in austen.train_x + austen.test_x:
        assert isinstance(text, str) and len(text) > 20
        assert not heading.search(text), text
        assert "  " not in text and text == text.strip()
    opening = "It is a truth universally acknowledged, that a single man in possession"
    assert any(opening in text for text in austen.train_x + austen.test_x)


def test_split_is_stratified_and_deterministic(austen: LoadedDataset) -> None:
    for label, total in enumerate(COUNTS):
        assert int((austen.test_y == label).sum()) == round(total * 0.2)
    assert not set(austen.train_x) & set(austen.test_x)
    again = load_dataset("austen")
    assert again.train_x == austen.train_x and again.test_x == austen.test_x
    assert np.array_equal(again.train_y, austen.train_y)


@needs_janeaustenr
def test_options_change_passages_and_split() -> None:
    ds = load_dataset("austen", passage_lines=8, test_fraction=0.5)
    y = np.concatenate([ds.train_y, ds.test_y])
    assert len(y) == 7747 and ds.num_classes == 6
    assert abs(len(ds.test_y) - len(ds.train_y)) <= 6


@needs_janeaustenr
def test_root_and_env_var_point_at_a_copy(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("Rdata.rdx", "Rdata.rdb"):
        shutil.copy(Path(JANEAUSTENR_DIR) / name, tmp_path / name)
    assert len(load_austen(root=str(tmp_path), passage_lines=50).class_names) == 6
    monkeypatch.setenv("RAYSWEEP_JANEAUSTENR", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="nope") as exc:
        load_austen()
    _one_line_data_error(exc)


def test_missing_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset("austen", root=str(tmp_path / "nope"))
    msg = _one_line_data_error(exc)
    assert str(tmp_path / "nope") in msg
    assert "apt-get install r-cran-janeaustenr" in msg and "RAYSWEEP_JANEAUSTENR" in msg


def test_missing_or_corrupt_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Rdata\.rdx not found") as exc:
        load_austen(root=str(tmp_path))
    assert "apt-get install r-cran-janeaustenr" in _one_line_data_error(exc)
    (tmp_path / "Rdata.rdx").write_bytes(b"not R data")
    (tmp_path / "Rdata.rdb").write_bytes(b"")
    with pytest.raises(DataError, match="not a readable R lazy-load database") as exc:
        load_austen(root=str(tmp_path))
    _one_line_data_error(exc)


@pytest.mark.parametrize("option, value, expected", [
    ("test_fraction", 0.0, r"test_fraction must be in \(0, 1\)"),
    ("test_fraction", 1.0, r"test_fraction must be in \(0, 1\)"),
    ("passage_lines", 0, r"passage_lines must be an integer in 1\.\.100"),
    ("passage_lines", 101, r"passage_lines must be an integer in 1\.\.100"),
])
def test_bad_options_are_one_line(option: str, value: float, expected: str) -> None:
    with pytest.raises(DataError, match=expected) as exc:
        load_austen(**{option: value})
    _one_line_data_error(exc)


def test_option_types_are_checked_by_the_registry() -> None:
    with pytest.raises(ConfigError, match=r"options\.passage_lines"):
        load_dataset("austen", passage_lines=2.5)
    with pytest.raises(DataError, match="passage_lines"):
        load_austen(passage_lines=True)
