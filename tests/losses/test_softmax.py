"""Softmax cross-entropy in a chosen precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab import softmax_cross_entropy
from optim_lab import stablemax_cross_entropy
from optim_lab.losses import registry

from tolerances import assert_close

CROSS_ENTROPIES = [softmax_cross_entropy, stablemax_cross_entropy]


def test_matches_numpy_and_dtype():
    z = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    y = np.arange(8) % 5
    want = -(z - np.log(np.exp(z).sum(-1, keepdims=True)))[np.arange(8), y]
    got = softmax_cross_entropy(jnp.asarray(z), jnp.asarray(y))
    assert got.dtype == jnp.float32
    # log-sum-exp of 5 terms minus a logit (terms of |z| <= 3 can cancel):
    # 8 eps of |loss| + the largest loss (measured < 1)
    assert_close(got, want, ulps=8)
    assert softmax_cross_entropy(jnp.asarray(z), jnp.asarray(y),
                                 dtype=jnp.float16).dtype == jnp.float16


def test_float32_loss_is_exactly_zero_past_collapse_gap():
    z = jnp.array([[0.0, 17.0], [0.0, 16.0]], jnp.float32)
    loss = softmax_cross_entropy(z, jnp.array([1, 1]))
    assert float(loss[0]) == 0.0 and float(loss[1]) > 0.0


def test_registry_errors():
    with pytest.raises(ValueError, match="loss must be one of 'softmax', 'stablemax'"):
        registry.get("hinge")
    with pytest.raises(ValueError, match=r"got 'stablemx' \(did you mean 'stablemax'\?\)"):
        registry.get("stablemx")
    assert registry.get("softmax") is softmax_cross_entropy
    with pytest.raises(ValueError, match="loss_dtype must be one of 16, 32, 64"):
        registry.dtype_from_bits(8)
    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="enable_x64"):
            registry.dtype_from_bits(64)
    with jax.enable_x64(True):
        assert registry.dtype_from_bits(64) == jnp.float64


@pytest.mark.parametrize("loss", CROSS_ENTROPIES)
@pytest.mark.parametrize("logits_shape,labels", [
    ((1, 3), np.array([0, 1])),                      # batch 2 would broadcast
    ((2, 3), np.array([0])),                         # batch 1 would broadcast
    ((2, 3), np.eye(3, dtype=np.int32)[[0, 1]]),     # one-hot
    ((2, 3), np.array([[0], [1]])),                  # trailing axis
    ((4, 2, 3), np.zeros(4, np.int32)),              # missing axis
], ids=["broadcast_up", "broadcast_down", "one_hot", "column", "rank"])
def test_labels_shape_is_checked(loss, logits_shape, labels):
    z = jnp.zeros(logits_shape)
    with pytest.raises(ValueError, match=r"labels must have shape logits.shape\[:-1\]"):
        loss(z, jnp.asarray(labels))
    with pytest.raises(ValueError, match="labels"):  # static: also under jit
        jax.jit(loss)(z, jnp.asarray(labels))


@pytest.mark.parametrize("loss", CROSS_ENTROPIES)
@pytest.mark.parametrize("labels", [np.array([0.0, 1.0], np.float32),
                                    np.array([True, False])], ids=["float", "bool"])
def test_labels_must_be_integers(loss, labels):
    with pytest.raises(ValueError, match="labels must be integer class indices"):
        loss(jnp.zeros((2, 3)), jnp.asarray(labels))


@pytest.mark.parametrize("loss", CROSS_ENTROPIES)
def test_label_values_as_documented(loss):
    """Integer dtypes and Python lists are accepted; labels in [-C, -1] count
    from the end; labels outside [-C, C) give NaN (and no gradient)."""
    z = jnp.array([[0.0, 1.0, 2.0], [2.0, -1.0, 0.5]])
    ref = loss(z, jnp.array([2, 0]))
    for labels in (np.array([2, 0], np.uint8), [2, 0], jnp.array([-1, -3])):
        np.testing.assert_array_equal(loss(z, labels), ref)
    bad = loss(z, jnp.array([3, -4]))
    assert np.isnan(np.asarray(bad)).all()
    grad = jax.grad(lambda z: loss(z, jnp.array([3, 0])).sum())(z)
    assert np.isfinite(np.asarray(grad)).all()
    assert not np.asarray(grad)[0].any() and np.asarray(grad)[1].any()
