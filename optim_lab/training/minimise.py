"""``minimise``: run an optax transformation on a loss for a number of steps.

The one scan loop behind small studies and tests (toy problems, quadratics,
minibatch least squares): no model, no data pipeline, no checkpoints.
Each step computes ``value, grads = value_and_grad(loss_fn)(params[, batch])``
and applies ``tx.update(grads, state, params, value=value)``, so Polyak-type
transforms get the loss. It is pure and traceable (jit it, vmap it over
hyperparameters or seeds); nothing is compiled inside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import optax


class Minimised(NamedTuple):
    """What :func:`minimise` returns.

    Attributes:
        params: Parameters after the last step.
        opt_state: Optimizer state after the last step.
        values: Loss before each step, shape ``(steps,)``.
        records: ``record(params, opt_state)`` after each step, stacked along a
            leading ``steps`` axis (``None`` without ``record``).
    """
    params: Any
    opt_state: Any
    values: jax.Array
    records: Any


def minimise(tx: optax.GradientTransformation, loss_fn: Callable[..., jax.Array],
             params: Any, steps: int | None = None, batches: Any = None, *,
             record: Callable[[Any, Any], Any] | None = None) -> Minimised:
    """Runs ``tx`` on ``loss_fn`` from ``params`` in one ``lax.scan``.

    Args:
        tx: Any optax transformation (``value=`` is passed when it accepts
            extra arguments; plain transforms are wrapped to ignore it).
        loss_fn: ``loss_fn(params) -> scalar``, or ``loss_fn(params, batch)``
            when ``batches`` is given.
        params: Initial parameters (a pytree).
        steps: Number of steps; with ``batches`` it defaults to (and must
            equal) their leading axis.
        batches: Optional pytree whose leading axis indexes the steps.
        record: Optional ``fn(params, opt_state) -> pytree`` logged after
            each step.

    Returns:
        A :class:`Minimised` with the final params and state, the per-step
        losses and the records.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> out = minimise(optax.sgd(0.5), lambda x: jnp.sum(x ** 2), jnp.ones(2), 3)
        >>> [round(float(v), 4) for v in out.values]
        [2.0, 0.0, 0.0]
    """
    if batches is None and steps is None:
        raise ValueError("minimise: give steps, or batches with a leading steps axis")
    tx = optax.with_extra_args_support(tx)

    def body(carry, batch):
        p, s = carry
        args = () if batches is None else (batch,)
        value, grads = jax.value_and_grad(loss_fn)(p, *args)
        updates, s = tx.update(grads, s, p, value=value)
        p = optax.apply_updates(p, updates)
        return (p, s), (value, None if record is None else record(p, s))

    (p, s), (values, records) = jax.lax.scan(body, (params, tx.init(params)),
                                             batches, length=steps)
    return Minimised(p, s, values, records)
