"""The deterministic (seed, step) -> batch stream."""

import jax
import jax.numpy as jnp
import numpy as np

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
