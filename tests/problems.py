"""Shared test problems (losses and starting points) imported by every test file.

Each problem is a ``(loss_fn, params0, solution)`` triple in float32, with the
minimum value 0, so Polyak-type optimizers can use ``value=`` directly.
"""

from __future__ import annotations

import jax.numpy as jnp


def quadratic():
    """``0.5 Σ a_i (x_i - 1)^2`` with curvatures in [0.5, 2], from 0."""
    a = jnp.array([0.5, 1.0, 2.0, 1.5], jnp.float32)

    def loss(params):
        return 0.5 * jnp.sum(a * jnp.square(params["x"] - 1.0))

    return loss, {"x": jnp.zeros(4, jnp.float32)}, {"x": jnp.ones(4, jnp.float32)}


def rosenbrock(b: float = 10.0):
    """``(1 - x)^2 + b (y - x^2)^2`` from (-1, 1); minimum 0 at (1, 1)."""

    def loss(params):
        x, y = params["xy"][0], params["xy"][1]
        return jnp.square(1.0 - x) + b * jnp.square(y - x * x)

    return (loss, {"xy": jnp.array([-1.0, 1.0], jnp.float32)},
            {"xy": jnp.ones(2, jnp.float32)})
