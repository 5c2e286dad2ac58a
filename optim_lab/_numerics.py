"""Small numerical helpers shared by every algorithm and probe.

Statistics are computed in float32 (float64 when the input is float64), so
bf16 / f16 parameters get exact-enough dot products and norms.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax


def stat_dtype(x: jax.Array) -> jnp.dtype:
    """float64 for float64 inputs, float32 for everything else."""
    return jnp.float64 if x.dtype == jnp.float64 else jnp.float32


def tree_stat_dtype(tree) -> jnp.dtype:
    """float64 if any leaf is float64, else float32 (the statistics dtype)."""
    leaves = jax.tree.leaves(tree)
    return (jnp.float64 if any(jnp.result_type(x) == jnp.float64 for x in leaves)
            else jnp.float32)


def tree_asarray(tree):
    """Every leaf as a JAX array (``None`` stays ``None``).

    Python scalars are valid pytree leaves, and optax's own transforms treat a
    Python float parameter like ``jnp.asarray(x)`` (a 0-d float32 array, or
    float64 under x64); transforms that read ``.dtype`` / ``.shape`` call this
    on ``params`` and ``updates`` first to do the same.
    """
    return None if tree is None else jax.tree.map(jnp.asarray, tree)


def tree_unzip(tree, like, n: int) -> tuple:
    """Splits a tree of ``n``-tuples (one at each leaf of ``like``) into ``n`` trees.

    The per-leaf style: map a function returning several values per leaf with
    ``jax.tree.map``, then unzip the result.

    Examples:
        >>> out = jax.tree.map(lambda x: (x + 1, x * 2), {"a": 1, "b": 2})
        >>> tree_unzip(out, {"a": 1, "b": 2}, 2)
        ({'a': 2, 'b': 3}, {'a': 2, 'b': 4})
    """
    return jax.tree.transpose(jax.tree.structure(like), jax.tree.structure((0,) * n),
                              tree)


def upcast(x: jax.Array) -> jax.Array:
    """Casts ``x`` to its statistics dtype (float32, or float64 if already)."""
    return x.astype(stat_dtype(x))


def vdot(a: jax.Array, b: jax.Array) -> jax.Array:
    """Flattened dot product ``<a, b>`` in the statistics dtype."""
    return jnp.vdot(upcast(a).ravel(), upcast(b).ravel())


def sq_norm(x: jax.Array) -> jax.Array:
    """``||x||^2`` in the statistics dtype."""
    return vdot(x, x)


def tree_vdot(a: optax.Params, b: optax.Params) -> jax.Array:
    """Tree-wide dot product, accumulated in float32 (float64 under x64)."""
    parts = jax.tree.leaves(jax.tree.map(vdot, a, b))
    if not parts:
        return jnp.zeros((), jnp.float32)
    return sum(parts[1:], parts[0])


def tree_sq_norm(tree: optax.Params) -> jax.Array:
    """Tree-wide squared L2 norm."""
    return tree_vdot(tree, tree)


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` where ``den != 0``, else 0 (gradient-safe)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def cosine(dot: jax.Array, sq_a: jax.Array, sq_b: jax.Array) -> jax.Array:
    """``dot / (|a| |b|)`` clamped to [-1, 1]; 0 when either norm is zero."""
    return jnp.clip(safe_div(dot, jnp.sqrt(sq_a) * jnp.sqrt(sq_b)), -1.0, 1.0)


def rms(x: jax.Array) -> jax.Array:
    """Root-mean-square of a leaf, in the statistics dtype."""
    return jnp.sqrt(jnp.mean(jnp.square(upcast(x))))


def clamped_cosine(dot: jax.Array, norm_a: jax.Array, norm_b: jax.Array,
                   eps: float) -> jax.Array:
    """``dot / (max(|a|, eps) * max(|b|, eps))`` (``torch.cosine_similarity``)."""
    return dot / (jnp.maximum(norm_a, eps) * jnp.maximum(norm_b, eps))


def tree_abs_sum(tree: optax.Params) -> jax.Array:
    """Tree-wide L1 norm ``sum |x|``, in the statistics dtype."""
    parts = [jnp.sum(jnp.abs(upcast(x))) for x in jax.tree.leaves(tree)]
    if not parts:
        return jnp.zeros((), jnp.float32)
    return sum(parts[1:], parts[0])


def is_static_number(x) -> bool:
    """A Python int/float (not bool): known at trace time, safe to branch on."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def one_minus_pow(base, t: jax.Array) -> jax.Array:
    """``1 - base**t`` for ``t >= 1`` without cancellation, in ``t``'s dtype.

    Computed as ``-expm1(t * log(base))`` with ``log(base)`` taken in float64
    for a Python ``base``: the naive float32 ``1 - 0.999**1`` is off by 1.3e-5
    relative, while torch forms such bias corrections in double precision.
    """
    if is_static_number(base):
        if base == 0:
            return jnp.ones_like(t)
        log_base = math.log(base)
    else:
        log_base = jnp.log(jnp.asarray(base, t.dtype))
    return -jnp.expm1(t * log_base)
