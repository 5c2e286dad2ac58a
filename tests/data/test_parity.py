"""Sparse parity data."""

import numpy as np
import pytest

from optim_lab.data.parity import sparse_parity


def test_shapes_uniqueness_and_labels():
    ds = sparse_parity()
    x = np.concatenate([ds.train_x, ds.test_x])
    y = np.concatenate([ds.train_y, ds.test_y])
    assert x.shape == (2000, 43) and ds.num_train == 1000
    assert len(np.unique(x, axis=0)) == 2000
    np.testing.assert_array_equal(y, x[:, :3].sum(1) % 2)
    assert 0.4 < y.mean() < 0.6


def test_too_many_samples_for_the_bit_space():
    with pytest.raises(ValueError, match="num_samples must be <= 2"):
        sparse_parity(k=2, n_noise=1, num_samples=9)
