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
    test_pairs = {(int(p), int(q))
                  for p, q in zip(x_test[:, :7].argmax(1), x_test[:, 7:].argmax(1))}
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


def _split_file(path, train, test, **config):
    import json
    meta = {"config": config} if config else {}
    np.savez(path, train_idx=np.asarray(train), test_idx=np.asarray(test),
             __meta__=np.array(json.dumps(meta)))
    return path


def test_split_from_file_keeps_rows_and_order(tmp_path):
    """p = 5: 25 rows, row 5 a + b holds (a, b); 10 training rows in the
    file's order (int(0.4 * 25) = 10)."""
    rng = np.random.default_rng(0)
    perm = rng.permutation(25)
    path = _split_file(tmp_path / "s.npz", perm[:10], perm[10:], modulus=5,
                       binary_operation="add_mod")
    ds = modular_arithmetic(modulus=5, train_fraction=0.4, split_from=path)
    x = np.asarray(ds.train_x)
    np.testing.assert_array_equal(x[:, :5].argmax(1), perm[:10] // 5)
    np.testing.assert_array_equal(x[:, 5:].argmax(1), perm[:10] % 5)
    np.testing.assert_array_equal(ds.train_y, (perm[:10] // 5 + perm[:10] % 5) % 5)
    x_test = np.asarray(ds.test_x)
    np.testing.assert_array_equal(x_test[:, :5].argmax(1) * 5 + x_test[:, 5:].argmax(1),
                                  perm[10:])
    tokens = modular_arithmetic(modulus=5, train_fraction=0.4, split_from=path,
                                encoding="tokens")
    np.testing.assert_array_equal(tokens.train_x, np.stack([perm[:10] // 5, perm[:10] % 5], 1))
    # registry / config path: data.split_from=FILE
    np.testing.assert_array_equal(
        registry.build("modular", modulus=5, train_fraction=0.4, split_from=str(path)).train_y,
        ds.train_y)


@pytest.mark.parametrize("train,test,config,kwargs,match", [
    (range(10), range(10, 24), {}, {}, "not a partition"),
    (range(10), range(10, 26), {}, {}, "not a partition"),
    (range(9), range(9, 25), {}, {}, r"9 training rows.*train_fraction=0.36"),
    (range(10), range(10, 25), {"modulus": 7}, {}, "modulus 7"),
    (range(10), range(10, 25), {"binary_operation": "product_mod"}, {}, "'product_mod'"),
    (range(10), range(9, 25), {}, {}, "overlap"),
])
def test_split_from_file_rejects_mismatches(tmp_path, train, test, config, kwargs, match):
    path = _split_file(tmp_path / "s.npz", list(train), list(test), **config)
    with pytest.raises(ValueError, match=match):
        modular_arithmetic(modulus=5, train_fraction=0.4, split_from=path, **kwargs)


def test_split_from_reference_golden():
    """The grokking reference's seed-42 split (tests/golden/grokking_start.npz)."""
    import goldens
    ds = modular_arithmetic(split_from=goldens.GOLDEN_DIR / "grokking_start.npz")
    assert (ds.train_x.shape, ds.test_x.shape) == ((5107, 226), (7662, 226))
    with pytest.raises(ValueError, match="train_fraction"):
        modular_arithmetic(train_fraction=0.3,
                           split_from=goldens.GOLDEN_DIR / "grokking_start.npz")
