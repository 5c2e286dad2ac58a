"""Modular arithmetic (grokking): all pairs (a, b), label (a op b) mod p.

With p = 113 there are 12 769 pairs; a 40 % split gives 5 107 train / 7 662
test. ``exclude_zero=True`` uses a, b ∈ [1, p) (the transformer setting:
12 544 pairs, 5 017 train). Inputs are two concatenated one-hots
(``encoding="onehot"``, 2p features) or the integer pair
(``encoding="tokens"``).

The table's row ``n·a' + b'`` (``a' = a - lo``, ``b' = b - lo``, ``n`` values
per operand, ``lo`` 1 with ``exclude_zero`` else 0) holds the pair ``(a, b)``:
the order of the grokking reference's ``AlgorithmicDataset`` (``for x: for
y:``). ``split_from=FILE`` takes the train / test rows from a split file (e.g.
``tests/golden/grokking_start.npz``, the reference's seed-42
``random_split``) instead of the seeded random split.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from optim_lab import _validation
from optim_lab.data import reference_start
from optim_lab.data.dataset import Dataset
from optim_lab.data.dataset import DataSpec
from optim_lab.data.dataset import split

OPS = {"add": np.add, "mul": np.multiply, "sub": np.subtract}
# The grokking reference's names (its --binary_operation) for OPS.
REFERENCE_OPS = {"add_mod": "add", "product_mod": "mul", "subtract_mod": "sub"}
ENCODINGS = ("onehot", "tokens")


def modular_arithmetic(*, modulus: int = 113, op: str = "add",
                       train_fraction: float = 0.4, split_seed: int = 0,
                       exclude_zero: bool = False,
                       encoding: str = "onehot",
                       split_from: str | os.PathLike | None = None) -> Dataset:
    """Builds the full table and splits it deterministically.

    Args:
        modulus: ``p``; labels are ``(a op b) mod p``.
        op: ``"add"``, ``"mul"`` or ``"sub"``.
        train_fraction: ``int(train_fraction · N)`` training rows.
        split_seed: Seed of the random split (unused with ``split_from``).
        exclude_zero: Operands in ``[1, p)`` instead of ``[0, p)``.
        encoding: ``"onehot"`` (2p features) or ``"tokens"`` (the pair).
        split_from: A split file (``train_idx`` / ``test_idx`` arrays, see
            :mod:`optim_lab.data.reference_start`): its rows, in its order,
            replace the random split. They must partition the table, hold
            ``int(train_fraction · N)`` training rows, and the file's
            recorded modulus / operation (if any) must match; otherwise a
            ``ValueError`` names the mismatch.

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
    if split_from is None:
        return split(x, y, train_fraction, split_seed, spec)
    tr, te = _split_from_file(split_from, len(x), modulus, op, train_fraction)
    return Dataset(jnp.asarray(x[tr]), jnp.asarray(y[tr]), jnp.asarray(x[te]),
                   jnp.asarray(y[te]), spec)


def _split_from_file(path, n: int, modulus: int, op: str,
                     train_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train / test rows from ``path``, checked against this table."""
    train, test, meta = reference_start.load_split(path)
    config = meta.get("config", {})
    if config.get("modulus", modulus) != modulus:
        raise ValueError(f"data.split_from: {path} was recorded for modulus "
                         f"{config['modulus']}, data.modulus is {modulus}")
    file_op = config.get("binary_operation")
    if file_op is not None and REFERENCE_OPS.get(file_op, file_op) != op:
        raise ValueError(f"data.split_from: {path} was recorded for operation "
                         f"{file_op!r}, data.op is {op!r}")
    if train.size + test.size != n or max(train.max(initial=-1),
                                          test.max(initial=-1)) >= n:
        raise ValueError(f"data.split_from: {path} splits {train.size + test.size} "
                         f"rows (max index {max(train.max(initial=-1), test.max(initial=-1))}),"
                         f" but the table has {n}: not a partition of it")
    if train.size != int(train_fraction * n):
        raise ValueError(f"data.split_from: {path} has {train.size} training rows, "
                         f"but data.train_fraction={train_fraction} gives "
                         f"{int(train_fraction * n)}: set data.train_fraction="
                         f"{train.size / n:.6g} or use a matching file")
    return train, test
