"""Softmax cross-entropy computed in a chosen floating-point precision.

The grokking experiments study how the *precision* of the softmax decides when
Softmax Collapse sets in (absorption of every non-maximal term once logit gaps
exceed about 8 / 17 / 37 in float16 / 32 / 64), so the dtype is explicit.
The loss is ``-(z_y - max z - log sum exp(z - max z))`` as in the reference
(max-shifted log-softmax), so a sample's loss is exactly 0 precisely when its
shifted sum of exps rounds to 1 and the correct class is the maximum. (optax's
``lse - z_y`` form absorbs earlier: at a float32 gap of 16 it already gives 0.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, *,
                          dtype: jnp.dtype | None = None) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels in ``dtype``.

    Args:
        logits: ``[..., num_classes]``.
        labels: ``[...]`` integer class indices.
        dtype: Precision of the log-softmax (float16, float32, or float64
            under x64); default: the logits' dtype promoted to float32.

    Returns:
        ``[...]`` per-example losses in ``dtype``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab.losses.softmax import softmax_cross_entropy
        >>> round(float(softmax_cross_entropy(jnp.zeros((1, 2)), jnp.array([0]))[0]), 6)
        0.693147
    """
    dtype = jnp.promote_types(logits.dtype, jnp.float32) if dtype is None else dtype
    logp = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32),
                                axis=-1)[..., 0]
