r"""StableMax: a softmax replacement that cannot collapse numerically.

Prieto et al. define :math:`s(x) = x + 1` for :math:`x \ge 0` and
:math:`s(x) = 1 / (1 - x)` for :math:`x < 0`, and

.. math::
    \mathrm{StableMax}(z)_i = \frac{s(z_i)}{\sum_j s(z_j)}.

Since :math:`\log s(x) = \operatorname{sign}(x) \log(1 + |x|)`, StableMax is the
softmax of :math:`g(z)` with :math:`g(x) = \operatorname{sign}(x)\log(1+|x|)`,
so :math:`\log\mathrm{StableMax}(z) = \mathrm{log\_softmax}(g(z))` reuses the
stable log-sum-exp. Each branch of :math:`g` sees a masked input, so neither
an unselected ``log1p(-x)`` at :math:`x = 1` nor a tie-splitting
``maximum`` can poison the gradient; the slope of :math:`g` at exactly 0 is 1.

.. warning::
    StableMax is **not** shift invariant: no max-subtraction is applied, and
    adding a constant to the logits changes the output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optim_lab.losses import _labels


def _g(x: jax.Array) -> jax.Array:
    """``sign(x) * log1p(|x|)`` with masked branches (finite grads, slope 1 at 0)."""
    nonneg = x >= 0
    zp = jnp.where(nonneg, x, 0)
    zn = jnp.where(nonneg, 0, x)
    return jnp.where(nonneg, jnp.log1p(zp), -jnp.log1p(-zn))


def log_stablemax(logits: jax.Array, axis: int = -1) -> jax.Array:
    """Log of StableMax along ``axis``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab import log_stablemax
        >>> float(jnp.exp(log_stablemax(jnp.array([0.0, 1.0]))).sum())
        1.0
    """
    return jax.nn.log_softmax(_g(logits), axis=axis)


def stablemax(logits: jax.Array, axis: int = -1) -> jax.Array:
    """StableMax probabilities along ``axis``: ``s(z_i) / sum_j s(z_j)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab import stablemax
        >>> [round(p, 6) for p in stablemax(jnp.array([0.0, 1.0])).tolist()]  # s = (1, 2)
        [0.333333, 0.666667]
    """
    return jax.nn.softmax(_g(logits), axis=axis)


def stablemax_cross_entropy(logits: jax.Array, labels: jax.Array, *,
                            dtype: jnp.dtype | None = None) -> jax.Array:
    """Per-example cross-entropy of StableMax with integer labels.

    Args:
        logits: ``[..., num_classes]`` unnormalised scores.
        labels: ``[...]`` integer class indices, shape ``logits.shape[:-1]``
            (not one-hot). Values are not checked (they may be traced): a
            label in ``[-num_classes, -1]`` counts from the end as in NumPy;
            any other out-of-range label gives a NaN loss (and zero gradient)
            for that example.
        dtype: Computation dtype; default float32 (at least). Pass
            ``jnp.float64`` with ``jax_enable_x64`` for the reference's
            float64 path.

    Returns:
        ``[...]`` losses, in ``dtype``.

    Raises:
        ValueError: naming ``labels`` when its shape is not
            ``logits.shape[:-1]`` or its dtype is not an integer type.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab import stablemax_cross_entropy
        >>> loss = stablemax_cross_entropy(jnp.array([[0.0, 1.0]]), jnp.array([1]))
        >>> round(float(loss[0]), 6)  # -log(2/3)
        0.405465

    References:
        Prieto et al., `Grokking at the Edge of Numerical Stability
        <https://arxiv.org/abs/2501.04697>`_, ICLR 2025.
    """
    labels = _labels.check_labels(logits, labels)
    dtype = jnp.promote_types(logits.dtype, jnp.float32) if dtype is None else dtype
    logp = log_stablemax(logits.astype(dtype), axis=-1)
    return -_labels.pick(logp, labels)
