"""The deterministic (seed, step) -> batch stream."""

import jax
import jax.numpy as jnp
import numpy as np

from optim_lab.data import dataset
from optim_lab.data.dataset import get_batch


def test_full_batch_and_epoch_permutations():
    x, y = jnp.arange(10.0)[:, None], jnp.arange(10)
    fx, fy = get_batch(x, y, 0, jnp.int32(3), 0)
    assert fx.shape == (10, 1)
    step = jax.jit(lambda s: get_batch(x, y, 0, s, 3)[1])
    epoch0 = np.concatenate([step(jnp.int32(s)) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # 3 batches of 3, no repeats, 1 dropped
    np.testing.assert_array_equal(step(jnp.int32(1)), step(jnp.int32(1)))
    epoch1 = np.concatenate([step(jnp.int32(s)) for s in range(3, 6)])
    assert not np.array_equal(epoch0, epoch1)


def test_batch_of_epoch_is_get_batch_given_the_epochs_permutation():
    x, y = jnp.arange(20.0)[:, None], jnp.arange(20)
    per_epoch = dataset.steps_per_epoch(20, 6)
    assert per_epoch == 3 and dataset.steps_per_epoch(20, 0) == 0
    assert dataset.steps_per_epoch(20, 20) == 0
    for seed in (0, 3):
        for step in range(7):
            perm = dataset.epoch_permutation(seed, step // per_epoch, 20)
            got = dataset.batch_of_epoch(x, y, perm, jnp.int32(step), 6)
            want = get_batch(x, y, seed, jnp.int32(step), 6)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
            assert got[1].shape == (6,)
    got = dataset.rows_of_epochs((x, y, perm[None], jnp.int32(2)), None, jnp.int32(6), 6)
    np.testing.assert_array_equal(got[1], get_batch(x, y, 3, jnp.int32(6), 6)[1])
