"""Digits dataset: shapes, scaling, determinism, registry."""

import numpy as np

from optim_lab.data import registry
from optim_lab.data.digits import digits


def test_shapes_scaling_and_split():
    flat, img = digits(), digits(image=True)
    assert flat.train_x.shape == (1437, 64) and flat.test_x.shape == (360, 64)
    assert img.train_x.shape == (1437, 8, 8, 1) and img.spec.num_features == (8, 8, 1)
    np.testing.assert_array_equal(np.asarray(img.train_x).reshape(1437, 64), flat.train_x)
    assert float(flat.train_x.min()) == 0.0 and float(flat.train_x.max()) == 1.0
    assert set(np.unique(flat.train_y).tolist()) == set(range(10))


def test_deterministic_split_and_registry():
    a, b = digits(split_seed=3), registry.build("digits", split_seed=3)
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(digits(split_seed=0).train_y, a.train_y)
