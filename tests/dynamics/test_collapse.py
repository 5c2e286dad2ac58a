"""Softmax-Collapse and zero-loss probes at the spec's gap thresholds."""

import jax
import jax.numpy as jnp
import pytest

from optim_lab import softmax_collapse_frac
from optim_lab import zero_loss_frac

from tolerances import assert_close


@pytest.mark.parametrize("dtype,below,at", [
    (jnp.float16, 7, 8), (jnp.float32, 16, 17), ("float64", 36, 37)])
def test_two_class_thresholds(dtype, below, at):
    with jax.enable_x64(dtype == "float64"):
        dt = jnp.float64 if dtype == "float64" else dtype
        z = jnp.array([[0.0, below]], dt)
        assert float(softmax_collapse_frac(z, dt)) == 0.0
        assert float(softmax_collapse_frac(jnp.array([[0.0, at]], dt), dt)) == 1.0


def test_fraction_over_rows_and_precision_argument():
    z = jnp.array([[0.0, 20.0], [0.0, 1.0], [30.0, 0.0], [0.0, 0.0]])
    assert float(softmax_collapse_frac(z)) == 0.5
    assert float(softmax_collapse_frac(z, jnp.float16)) == 0.5
    assert float(softmax_collapse_frac(jnp.array([[0.0, 10.0]]), jnp.float16)) == 1.0


def test_zero_loss_counts_exact_zeros_only():
    # (XLA:CPU flushes subnormals to zero, so the tiny value is a normal one.)
    x = jnp.array([0.0, 1e-37, 1.2e-7, -0.0, 3.0])
    assert_close(zero_loss_frac(x), 2 / 5, ulps=4)
