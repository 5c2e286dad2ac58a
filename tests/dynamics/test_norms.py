"""Norm and effective-step probes."""

import jax.numpy as jnp

from optim_lab import effective_step
from optim_lab import tree_norms

from tolerances import assert_close


def test_tree_norms():
    out = tree_norms({"a": jnp.array([3.0, 4.0]), "b": jnp.array([12.0])}, "params")
    assert_close(out["params/a/norm"], 5.0, ulps=4)
    assert_close(out["params/global/norm"], 13.0, ulps=4)


def test_effective_step_and_zero_weights():
    out = effective_step({"a": jnp.array([0.3, 0.4]), "z": jnp.ones(2)},
                         {"a": jnp.array([3.0, 4.0]), "z": jnp.zeros(2)})
    assert_close(out["effective_step/a"], 0.1, ulps=4)
    assert float(out["effective_step/z"]) == 0.0  # guarded 0 / 0
    assert_close(out["effective_step/global"], (0.25 + 2) ** 0.5 / 5.0, ulps=4)
