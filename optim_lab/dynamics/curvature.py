r"""Curvature probe: the top Hessian eigenvalue by HVP power iteration.

The Hessian-vector product :math:`Hv = \partial_\epsilon \nabla L(\theta +
\epsilon v)|_0` costs one forward-over-reverse pass (``jax.jvp`` of
``jax.grad``), so

.. math::
    v_{k+1} = \frac{H v_k}{\|H v_k\|}, \qquad
    \lambda_k = \langle v_k, H v_k \rangle

converges to the eigenvalue of largest magnitude (the sharpness that
edge-of-stability analyses compare with :math:`2/\eta`) without forming
:math:`H`. Runs a fixed number of iterations under ``lax.fori_loop`` (jit-safe).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from optim_lab import _numerics


def hvp(loss_fn: Callable, params, v):
    """Hessian-vector product of ``loss_fn`` at ``params`` along ``v``."""
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def _normalize(tree):
    norm = jnp.sqrt(_numerics.tree_sq_norm(tree))
    return jax.tree.map(lambda x: (x / jnp.where(norm > 0, norm, 1)).astype(x.dtype), tree)


def top_hessian_eigenvalue(loss_fn: Callable, params, key: jax.Array,
                           num_iters: int = 20) -> jax.Array:
    """Largest-magnitude Hessian eigenvalue of ``loss_fn`` at ``params``.

    Args:
        loss_fn: Scalar function of the params pytree.
        params: Where to evaluate the Hessian.
        key: PRNG key of the random start vector.
        num_iters: Power iterations (static).

    Returns:
        The Rayleigh quotient after ``num_iters`` iterations (float32 scalar).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from optim_lab.dynamics.curvature import top_hessian_eigenvalue
        >>> loss = lambda p: 0.5 * (3.0 * p["a"][0] ** 2 + p["a"][1] ** 2)
        >>> lam = top_hessian_eigenvalue(loss, {"a": jnp.ones(2)}, jax.random.key(0))
        >>> round(float(lam), 4)
        3.0
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype)
                                     for k, x in zip(keys, leaves)])

    def body(_, v):
        return _normalize(hvp(loss_fn, params, v))

    v = jax.lax.fori_loop(0, num_iters, body, _normalize(v))
    return _numerics.tree_vdot(v, hvp(loss_fn, params, v))
