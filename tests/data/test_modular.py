"""Modular-arithmetic data: sizes, labels, determinism."""

import numpy as np
import pytest

from optim_lab.data import registry
from optim_lab.data.modular import modular_arithmetic


def test_reference_split_sizes():
    ds = modular_arithmetic(modulus=113, train_fraction=0.4)
    assert (ds.train_x.shape, ds.test_x.shape) == ((5107, 226), (7662, 226))
    tokens = modular_arithmetic(exclude_zero=True, encoding="tokens")
    assert tokens.train_x.shape == (5017, 2) and tokens.num_train + tokens.test_x.shape[0] == 12544


@pytest.mark.parametrize("op,fn", [("add", np.add), ("mul", np.multiply), ("sub", np.subtract)])
def test_labels_and_encoding(op, fn):
    ds = modular_arithmetic(modulus=7, op=op, train_fraction=0.5, encoding="onehot")
    x, y = np.asarray(ds.train_x), np.asarray(ds.train_y)
    a, b = x[:, :7].argmax(1), x[:, 7:].argmax(1)
    np.testing.assert_array_equal(y, fn(a, b) % 7)
    assert x.sum(1).tolist() == [2.0] * len(x)
    pairs = {(int(p), int(q)) for p, q in zip(a, b)}
    x_test = np.asarray(ds.test_x)
    test_pairs = {(int(p), int(q)) for p, q in zip(x_test[:, :7].argmax(1), x_test[:, 7:].argmax(1))}
    assert not pairs & test_pairs and len(pairs | test_pairs) == 49


def test_split_is_deterministic_and_seeded():
    a, b = modular_arithmetic(split_seed=3), modular_arithmetic(split_seed=3)
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(a.train_y, modular_arithmetic(split_seed=4).train_y)


@pytest.mark.parametrize("kwargs,match", [
    ({"train_fraction": 1.0}, r"data.train_fraction must be in \(0, 1\)"),
    ({"train_fraction": -0.2}, r"data.train_fraction must be in \(0, 1\)"),
    ({"op": "div"}, "data.op must be one of"),
    ({"modulus": 1}, "data.modulus must be an integer >= 2"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        registry.build("modular", **kwargs)
