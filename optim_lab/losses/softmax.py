"""Softmax cross-entropy computed in a chosen floating-point precision.

The grokking experiments study how the *precision* of the softmax decides when
Softmax Collapse sets in (absorption of every non-maximal term once logit gaps
exceed about 8 / 17 / 37 in float16 / 32 / 64), so the dtype is explicit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


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
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(dtype), labels.astype(jnp.int32))
