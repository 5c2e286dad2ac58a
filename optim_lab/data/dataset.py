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

For minibatches of rows, ``get_batch`` computes the epoch's permutation of the
whole training set at every step; the training loop instead computes it once
per epoch (:func:`epoch_permutation`) and slices it per step
(:func:`batch_of_epoch`); for a block of epochs at once
(:func:`epoch_permutations`, :func:`batch_of_epochs`, the sampler function
:func:`rows_of_epochs`): the same batches, bit for bit
(``training.train.Batches``).
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


def steps_per_epoch(num_train: int, batch_size: int | None) -> int:
    """Minibatches per epoch (the last incomplete one dropped); 0 for the full batch."""
    return 0 if is_full_batch(batch_size, num_train) else num_train // batch_size


def epoch_permutation(seed: int | jax.Array, epoch: int | jax.Array, n: int) -> jax.Array:
    """The order of the ``n`` training rows in epoch ``epoch`` (jit-safe in
    ``seed`` and ``epoch``; ``n`` is a Python int)."""
    return jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), n)


def batch_of_epoch(x: jax.Array, y: jax.Array, perm: jax.Array, step: jax.Array,
                   batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Minibatch ``step`` given its epoch's permutation (jit-safe in ``step``).

    With ``perm = epoch_permutation(seed, step // steps_per_epoch(n,
    batch_size), n)`` this is :func:`get_batch`'s batch, without recomputing
    the permutation: a loop computes it once per epoch and passes it in.
    """
    epoch = step // (x.shape[0] // batch_size)
    return batch_of_epochs(x, y, perm[None], epoch, step, batch_size)


def get_batch(x: jax.Array, y: jax.Array, seed: int, step: jax.Array,
              batch_size: int | None) -> tuple[jax.Array, jax.Array]:
    """Batch ``step`` of the epoch-wise shuffled stream (jit-safe in ``step``).

    ``batch_size`` of 0/None (or >= n) returns the full training set; the last
    incomplete batch of an epoch is dropped. Computes the epoch's permutation
    of all ``n`` rows; a loop over many steps should compute it once per epoch
    (:func:`epoch_permutation`, :func:`batch_of_epoch`).
    """
    n = x.shape[0]
    per_epoch = steps_per_epoch(n, batch_size)
    if not per_epoch:
        return x, y
    perm = epoch_permutation(seed, step // per_epoch, n)
    return batch_of_epoch(x, y, perm, step, batch_size)


def epoch_permutations(seed: int | jax.Array, first_epoch: int | jax.Array,
                       epochs: int, n: int) -> jax.Array:
    """``[epochs, n]``: :func:`epoch_permutation` of ``epochs`` consecutive epochs
    from ``first_epoch``, in one program (vmapped: the same permutations)."""
    return jax.vmap(lambda e: epoch_permutation(seed, e, n))(
        first_epoch + jnp.arange(epochs, dtype=jnp.int32))


def batch_of_epochs(x: jax.Array, y: jax.Array, perms: jax.Array, first_epoch: jax.Array,
                    step: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Minibatch ``step`` given the permutations of a block of epochs.

    ``perms = epoch_permutations(seed, first_epoch, k, n)``, and ``step`` lies
    in one of those ``k`` epochs: the same rows as :func:`batch_of_epoch` with
    that epoch's permutation, so a loop can run one call across epoch ends.
    """
    per_epoch = x.shape[0] // batch_size
    row = step // per_epoch - first_epoch
    idx = jax.lax.dynamic_slice(perms, (row, step % per_epoch * batch_size),
                                (1, batch_size))[0]
    return x[idx], y[idx]


def rows_of_epochs(source, seed, step, batch_size):
    """A :class:`Sampler` function on ``source = (x, y, perms, first_epoch)``:
    the rows of :func:`batch_of_epochs` (``seed`` is already in ``perms``)."""
    del seed
    return batch_of_epochs(*source, step, batch_size)


def _rows(source, seed, step, batch_size):
    """The default :class:`Sampler` function: ``get_batch(*source, ...)``."""
    return get_batch(*source, seed, step, batch_size)
