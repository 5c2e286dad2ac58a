"""The in-memory dataset type and the deterministic (seed, step) -> batch map.

Every dataset of the lab is small enough to live on device. A batch is a pure
function of ``(seed, step)``: epoch ``e = step // steps_per_epoch`` uses the
permutation ``random.permutation(fold_in(key(seed), e), n)``, so resuming at a
step reproduces the exact stream with no iterator state to checkpoint.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class DataSpec(NamedTuple):
    num_features: int | tuple[int, ...]
    num_classes: int


class Dataset(NamedTuple):
    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    spec: DataSpec

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])


def split(x: np.ndarray, y: np.ndarray, train_fraction: float, seed: int,
          spec: DataSpec) -> Dataset:
    """Random split with ``int(train_fraction * n)`` training samples."""
    perm = np.random.default_rng(seed).permutation(len(x))
    n_train = int(train_fraction * len(x))
    tr, te = perm[:n_train], perm[n_train:]
    return Dataset(jnp.asarray(x[tr]), jnp.asarray(y[tr]), jnp.asarray(x[te]),
                   jnp.asarray(y[te]), spec)


def is_full_batch(batch_size: int | None, num_train: int) -> bool:
    return not batch_size or batch_size >= num_train


def get_batch(x: jax.Array, y: jax.Array, seed: int, step: jax.Array,
              batch_size: int | None) -> tuple[jax.Array, jax.Array]:
    """Batch ``step`` of the epoch-wise shuffled stream (jit-safe in ``step``).

    ``batch_size`` of 0/None (or >= n) returns the full training set; the last
    incomplete batch of an epoch is dropped.
    """
    n = x.shape[0]
    if is_full_batch(batch_size, n):
        return x, y
    per_epoch = n // batch_size
    epoch, pos = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(
        jax.random.fold_in(jax.random.key(seed), epoch), n)
    idx = jax.lax.dynamic_slice_in_dim(perm, pos * batch_size, batch_size)
    return x[idx], y[idx]
