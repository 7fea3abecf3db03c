from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raysweep.methods._base import UnlearnData
from raysweep.metrics import SPLITS, ModelOutputs, SplitOutputs, cross_entropy, forward_splits


def test_split_outputs_casts_and_validates():
    s = SplitOutputs(np.zeros((3, 2), np.float64), [0, 1, 1])
    assert s.logits.dtype == np.float32 and s.labels.dtype == np.int64
    assert len(s) == 3 and s.num_classes == 2
    with pytest.raises(ValueError, match="disagree on N"):
        SplitOutputs(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        SplitOutputs(np.zeros(3), np.zeros(3))


def test_cross_entropy_matches_torch():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 10, size=(50, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 50)
    want = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels),
                                       reduction="none").numpy()
    np.testing.assert_allclose(cross_entropy(logits, labels), want, rtol=1e-5, atol=1e-5)
    assert cross_entropy(np.zeros((0, 3)), np.zeros(0)).shape == (0,)


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    out = ModelOutputs({name: SplitOutputs(rng.normal(size=(n, 3)), rng.integers(0, 3, n))
                        for name, n in zip(SPLITS, (5, 9, 0, 4))})
    path = tmp_path / "outputs"  # no suffix: the file is written exactly there
    out.to_npz(path)
    back = ModelOutputs.from_npz(path)
    assert list(back.splits) == list(SPLITS)
    for name in SPLITS:
        np.testing.assert_array_equal(back[name].logits, out[name].logits)
        np.testing.assert_array_equal(back[name].labels, out[name].labels)
        assert back[name].logits.dtype == np.float32 and back[name].labels.dtype == np.int64


def test_from_npz_rejects_foreign_file(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(ValueError, match="not a raysweep ModelOutputs file"):
        ModelOutputs.from_npz(path)


def test_missing_split_names_available_ones():
    out = ModelOutputs({"forget": SplitOutputs(np.zeros((1, 2)), [0])})
    with pytest.raises(KeyError, match="have: forget"):
        out["test"]


def test_forward_splits_one_pass_per_split():
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    sizes = {"forget": 5, "retain": 11, "val": 3, "test": 7}
    ds = {k: TensorDataset(torch.randn(n, 3), torch.randint(0, 4, (n,))) for k, n in sizes.items()}
    data = UnlearnData(**ds, num_classes=4)
    model.train()
    out = forward_splits(model, data, "cpu", batch_size=512)
    assert model.training  # mode restored
    assert calls == [5, 11, 3, 7]
    for name, d in ds.items():
        x, y = d.tensors
        np.testing.assert_allclose(out[name].logits, model(x).detach().numpy(), rtol=1e-6)
        np.testing.assert_array_equal(out[name].labels, y.numpy())
