"""Softmax cross-entropy in a chosen precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab import softmax_cross_entropy
from optim_lab.losses import registry


def test_matches_numpy_and_dtype():
    z = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    y = np.arange(8) % 5
    want = -(z - np.log(np.exp(z).sum(-1, keepdims=True)))[np.arange(8), y]
    got = softmax_cross_entropy(jnp.asarray(z), jnp.asarray(y))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert softmax_cross_entropy(jnp.asarray(z), jnp.asarray(y),
                                 dtype=jnp.float16).dtype == jnp.float16


def test_float32_loss_is_exactly_zero_past_collapse_gap():
    z = jnp.array([[0.0, 17.0], [0.0, 16.0]], jnp.float32)
    loss = softmax_cross_entropy(z, jnp.array([1, 1]))
    assert float(loss[0]) == 0.0 and float(loss[1]) > 0.0


def test_registry_errors():
    with pytest.raises(ValueError, match="loss must be one of 'softmax', 'stablemax'"):
        registry.get("hinge")
    with pytest.raises(ValueError, match="loss_dtype must be one of 16, 32, 64"):
        registry.dtype_from_bits(8)
    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="enable_x64"):
            registry.dtype_from_bits(64)
    with jax.enable_x64(True):
        assert registry.dtype_from_bits(64) == jnp.float64
