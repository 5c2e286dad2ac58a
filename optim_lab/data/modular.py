"""Modular arithmetic (grokking): all pairs (a, b), label (a op b) mod p.

With p = 113 there are 12 769 pairs; a 40 % split gives 5 107 train / 7 662
test. ``exclude_zero=True`` uses a, b ∈ [1, p) (the transformer setting:
12 544 pairs, 5 017 train). Inputs are two concatenated one-hots
(``encoding="onehot"``, 2p features) or the integer pair
(``encoding="tokens"``).
"""

from __future__ import annotations

import numpy as np

from optim_lab import _validation
from optim_lab.data.dataset import Dataset, DataSpec, split

OPS = {"add": np.add, "mul": np.multiply, "sub": np.subtract}
ENCODINGS = ("onehot", "tokens")


def modular_arithmetic(*, modulus: int = 113, op: str = "add",
                       train_fraction: float = 0.4, split_seed: int = 0,
                       exclude_zero: bool = False,
                       encoding: str = "onehot") -> Dataset:
    """Builds the full table and splits it deterministically.

    Examples:
        >>> from optim_lab.data.modular import modular_arithmetic
        >>> ds = modular_arithmetic()
        >>> ds.train_x.shape, ds.test_x.shape
        ((5107, 226), (7662, 226))
    """
    _validation.check_int("data.modulus", modulus, low=2)
    _validation.check_choice("data.op", op, OPS)
    _validation.check_range("data.train_fraction", train_fraction, 0.0, 1.0,
                            low_inclusive=False, high_inclusive=False)
    _validation.check_choice("data.encoding", encoding, ENCODINGS)
    lo = 1 if exclude_zero else 0
    a, b = np.meshgrid(np.arange(lo, modulus), np.arange(lo, modulus),
                       indexing="ij")
    a, b = a.ravel(), b.ravel()
    y = (OPS[op](a, b) % modulus).astype(np.int32)
    if encoding == "onehot":
        eye = np.eye(modulus, dtype=np.float32)
        x = np.concatenate([eye[a], eye[b]], axis=1)
        spec = DataSpec(2 * modulus, modulus)
    else:
        x = np.stack([a, b], axis=1).astype(np.int32)
        spec = DataSpec(2, modulus)
    return split(x, y, train_fraction, split_seed, spec)
