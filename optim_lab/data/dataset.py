"""The in-memory dataset type and the deterministic (seed, step) -> batch map.

Every dataset of the lab is small enough to live on device. A batch is a pure
function of ``(seed, step)``: epoch ``e = step // steps_per_epoch`` uses the
permutation ``random.permutation(fold_in(key(seed), e), n)``, so resuming at a
step reproduces the exact stream with no iterator state to checkpoint.

``(train_x, train_y, test_x, test_y)`` is always the *evaluation* set (full-set
forward passes). Training batches come from :meth:`Dataset.train_sampler`: by
default rows of ``(train_x, train_y)`` through :func:`get_batch`; a dataset
whose training stream is not a table of examples (the byte-level language
model data of ``text.py``) brings its own :class:`Sampler`. A training loop
therefore does::

    sampler = data.train_sampler()
    data.check_batch_size(batch_size)                  # before compiling
    train = jax.jit(lambda state, source: step(
        state, sampler.fn(source, seed, state.step, batch_size)))
    train(state, sampler.source)
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class DataSpec(NamedTuple):
    num_features: int | tuple[int, ...]
    num_classes: int


class Sampler(NamedTuple):
    """How training batches are drawn.

    ``fn(source, seed, step, batch_size) -> (x, y)`` is pure and jit-safe in
    ``step`` (and ``seed``); ``batch_size`` is a Python int. ``source`` is the
    pytree of arrays ``fn`` reads: pass it to the jitted step as an argument
    (not a closure constant), so it is neither baked into the program nor
    copied per call. ``full_batch``: whether ``batch_size`` 0 (the whole
    training set) is meaningful.
    """
    source: Any
    fn: Callable[[Any, Any, Any, int | None], tuple[jax.Array, jax.Array]]
    full_batch: bool = True


class Dataset(NamedTuple):
    """Evaluation arrays, data spec, and optionally a training sampler.

    ``sampler=None``: training batches are rows of ``(train_x, train_y)``.
    ``fingerprint``: JSON-able provenance of data read from outside the
    package (e.g. a corpus's size and sha256), to record with the run so a
    resumed run can detect that its data changed; ``None`` for data the lab
    generates itself.
    """
    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    spec: DataSpec
    sampler: Sampler | None = None
    fingerprint: Mapping[str, Any] | None = None

    @property
    def num_train(self) -> int:
        """Rows of ``train_x`` (for a stream dataset: training eval windows)."""
        return int(self.train_x.shape[0])

    def train_sampler(self) -> Sampler:
        """The training-batch sampler (default: :func:`get_batch` on rows)."""
        if self.sampler is not None:
            return self.sampler
        return Sampler((self.train_x, self.train_y), _rows)

    def check_batch_size(self, batch_size: int | None) -> None:
        """Raises ``ValueError`` if ``batch_size`` 0 / None (full batch) is
        requested from a dataset without a full batch."""
        if not batch_size and not self.train_sampler().full_batch:
            raise ValueError("batch_size must be >= 1 for this dataset: its "
                             "training data is a stream with no full batch "
                             f"(got {batch_size!r})")


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


def _rows(source, seed, step, batch_size):
    """The default :class:`Sampler` function: ``get_batch(*source, ...)``."""
    return get_batch(*source, seed, step, batch_size)
