"""StableMax: parity with the reference formula (s(z) = z + 1 for z >= 0, else
1 / (1 - z), normalised), its NaN traps and the API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab import log_stablemax
from optim_lab import stablemax
from optim_lab import stablemax_cross_entropy

from tolerances import F32
from tolerances import assert_close


def reference_log_stablemax(z):
    """Float64 NumPy transcription of the reference definition (eps 1e-30)."""
    z = np.asarray(z, np.float64)
    s = np.where(z >= 0, z + 1, 1 / (1 - np.minimum(z, 0) + 1e-30))
    return np.log(s / s.sum(-1, keepdims=True))


def _logit_sets():
    rng = np.random.default_rng(0)
    special = np.array([[0.0, 1.0, -1.0, 2.5], [1e6, 0.0, 1.0, -3.0]])
    return [rng.normal(scale=5.0, size=(64, 10)), special]


@pytest.mark.parametrize("i", [0, 1])
def test_log_stablemax_matches_reference_formula_in_float64(i):
    z = _logit_sets()[i]
    with jax.enable_x64(True):
        got = np.asarray(log_stablemax(jnp.asarray(z, jnp.float64)))
    # 4500 float64 eps of |log p| + 1 (rtol = atol = 1e-12)
    assert_close(got, reference_log_stablemax(z), ulps=4500, scale=1.0)


@pytest.mark.parametrize("i", [0, 1])
def test_float32_matches_reference(i):
    z = _logit_sets()[i]
    got = np.asarray(log_stablemax(jnp.asarray(z, jnp.float32)))
    # 8 float32 eps of |log p| + 1 (rtol = atol = 1e-6): log p is a difference
    # of O(log C) terms
    assert_close(got, reference_log_stablemax(z), ulps=8, scale=1.0, dtype=F32)


def test_rows_sum_to_one_and_not_shift_invariant():
    z = jnp.asarray(_logit_sets()[0], jnp.float32)
    assert_close(stablemax(z).sum(-1), 1.0, ulps=8)  # a sum of 10 positives
    assert not np.allclose(stablemax(z), stablemax(z + 3.0), atol=1e-4)
    labels = jnp.zeros(z.shape[0], jnp.int32)
    assert not np.allclose(stablemax_cross_entropy(z, labels),
                           stablemax_cross_entropy(z + 3.0, labels), atol=1e-4)


@pytest.mark.parametrize("logit", [-1.0, 0.0, 1.0, 1e6])
def test_gradients_finite_in_float32(logit):
    def loss(z):
        return stablemax_cross_entropy(z, jnp.array([0, 1])).sum()
    z = jnp.array([[logit, 0.5, -2.0], [logit, logit, 1.0]], jnp.float32)
    g = jax.grad(loss)(z)
    assert g.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(g)))


def test_slope_of_g_at_zero_is_one():
    # log_stablemax(z)_0 = g(z_0) - logsumexp(g(z)); at z=(0, 0) its
    # derivative in z_0 is g'(0) * (1 - 1/2) = 1/2 iff g'(0) = 1.
    d = jax.grad(lambda a: log_stablemax(jnp.stack([a, 0.0]))[0])(0.0)
    assert_close(d, 0.5, ulps=4)
    # and the probability is differentiable from both sides with the same slope
    left = jax.grad(lambda a: stablemax(jnp.stack([a, 0.0]))[0])(-1e-7)
    right = jax.grad(lambda a: stablemax(jnp.stack([a, 0.0]))[0])(1e-7)
    at = jax.grad(lambda a: stablemax(jnp.stack([a, 0.0]))[0])(0.0)
    # one-sided slopes 1e-7 away differ by O(1e-7), about one eps
    assert_close(left, at, ulps=8)
    assert_close(right, at, ulps=8)


def test_cross_entropy_api():
    z = jnp.asarray(_logit_sets()[0][:5], jnp.float32)
    labels = jnp.array([0, 1, 2, 3, 4])
    loss = stablemax_cross_entropy(z, labels)
    assert loss.shape == (5,) and loss.dtype == jnp.float32
    want = -reference_log_stablemax(np.asarray(z))[np.arange(5), np.arange(5)]
    assert_close(loss, want, ulps=8)  # as in test_softmax
    with jax.enable_x64(True):
        loss64 = stablemax_cross_entropy(jnp.asarray(z), labels, dtype=jnp.float64)
        assert loss64.dtype == jnp.float64
        # the float64 path from float32 logits vs the float64 reference
        assert_close(loss64, want, ulps=4500, scale=1.0)


def test_bf16_logits_are_computed_in_float32():
    z = jnp.asarray(_logit_sets()[0][:4], jnp.bfloat16)
    assert stablemax_cross_entropy(z, jnp.zeros(4, jnp.int32)).dtype == jnp.float32


@pytest.mark.parametrize("x", [0.0, 1.0, -1.0])
def test_g_transform_derivative(x):
    from optim_lab.losses.stablemax import _g
    want = 1.0 / (1.0 + abs(x))  # d/dx sign(x) log1p|x|, = 1 at 0 (not 0.5, not 0)
    assert_close(jax.grad(_g)(jnp.float32(x)), want, ulps=4)
