"""Sparse parity: label = parity of the first k bits of a random bit vector.

The grokking paper's Fig. 4 uses k = 3 parity bits plus 40 noise bits, 2 000
*unique* samples split 50/50.
"""

from __future__ import annotations

import numpy as np

from optim_lab import _validation
from optim_lab.data.dataset import Dataset
from optim_lab.data.dataset import DataSpec
from optim_lab.data.dataset import split


def sparse_parity(*, k: int = 3, n_noise: int = 40, num_samples: int = 2000,
                  train_fraction: float = 0.5, split_seed: int = 0) -> Dataset:
    """Unique random 0/1 vectors of length ``k + n_noise``.

    Examples:
        >>> from optim_lab.data.parity import sparse_parity
        >>> ds = sparse_parity()
        >>> ds.train_x.shape, int(ds.spec.num_classes)
        ((1000, 43), 2)
    """
    _validation.check_int("data.k", k, low=1)
    _validation.check_int("data.n_noise", n_noise, low=0)
    _validation.check_int("data.num_samples", num_samples, low=2)
    _validation.check_range("data.train_fraction", train_fraction, 0.0, 1.0,
                            low_inclusive=False, high_inclusive=False)
    n_bits = k + n_noise
    if num_samples > 2 ** n_bits:
        raise ValueError(f"data.num_samples must be <= 2**(k + n_noise) = "
                         f"{2 ** n_bits}, got {num_samples}")
    rng = np.random.default_rng(split_seed)
    x = np.zeros((0, n_bits), np.float32)
    while len(x) < num_samples:
        draw = rng.integers(0, 2, (num_samples, n_bits)).astype(np.float32)
        x = np.unique(np.concatenate([x, draw]), axis=0)
    x = x[rng.permutation(len(x))[:num_samples]]
    y = (x[:, :k].sum(axis=1) % 2).astype(np.int32)
    return split(x, y, train_fraction, split_seed, DataSpec(n_bits, 2))
