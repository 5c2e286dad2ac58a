"""Norm and effective-step probes."""

import jax.numpy as jnp
import pytest

from optim_lab import effective_step
from optim_lab import tree_norms


def test_tree_norms():
    out = tree_norms({"a": jnp.array([3.0, 4.0]), "b": jnp.array([12.0])}, "params")
    assert float(out["params/a/norm"]) == 5.0
    assert float(out["params/global/norm"]) == 13.0


def test_effective_step_and_zero_weights():
    out = effective_step({"a": jnp.array([0.3, 0.4]), "z": jnp.ones(2)},
                         {"a": jnp.array([3.0, 4.0]), "z": jnp.zeros(2)})
    assert float(out["effective_step/a"]) == pytest.approx(0.1)
    assert float(out["effective_step/z"]) == 0.0
    assert float(out["effective_step/global"]) == pytest.approx(
        (0.25 + 2) ** 0.5 / 5.0)
