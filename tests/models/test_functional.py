"""Functional view: pure apply over dict pytrees, with an optional PRNG key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from optim_lab.models.functional import functionalize
from optim_lab.models.mlp import MLP

EPS = float(jnp.finfo(jnp.float32).eps)


class Noisy(nnx.Module):
    """Adds N(0, 1) noise keyed by ``rng`` in training; needs the key there."""

    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(3, 3, rngs=rngs)
        self.deterministic = False

    def __call__(self, x, *, rng=None):
        y = self.linear(x)
        if self.deterministic:
            return y
        if rng is None:
            raise ValueError("Noisy needs rng in training")
        return y + jax.random.normal(rng, y.shape)


def test_rng_reaches_the_module():
    m = Noisy(nnx.Rngs(0))
    fn = functionalize(m)
    x = jnp.ones((2, 3))
    key = jax.random.fold_in(jax.random.PRNGKey(0), 3)
    apply = jax.jit(fn.apply, static_argnums=3)
    out, state = apply(fn.params, fn.model_state, x, True, key)
    want = m.linear(x) + jax.random.normal(key, (2, 3))  # eager; jit may fuse differently
    np.testing.assert_allclose(out, want, rtol=0, atol=4 * EPS * float(jnp.abs(want).max()))
    assert state == fn.model_state == {}
    other, _ = apply(fn.params, fn.model_state, x, True, jax.random.PRNGKey(1))
    assert not np.array_equal(out, other)
    evaluation, _ = fn.apply(fn.params, fn.model_state, x, False)
    np.testing.assert_array_equal(evaluation, m.linear(x))
    with pytest.raises(ValueError, match="needs rng in training"):
        fn.apply(fn.params, fn.model_state, x, True)


def test_models_without_rng_ignore_it():
    m = MLP(4, (8,), 3, rngs=nnx.Rngs(1))
    fn = functionalize(m)
    x = jax.random.normal(jax.random.key(0), (5, 4))
    old, _ = fn.apply(fn.params, fn.model_state, x, True)  # the original call
    new, _ = fn.apply(fn.params, fn.model_state, x, True, rng=jax.random.PRNGKey(4))
    np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(old, m(x))
