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

from optim_lab.losses import _labels


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, *,
                          dtype: jnp.dtype | None = None) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels in ``dtype``.

    Args:
        logits: ``[..., num_classes]``.
        labels: ``[...]`` integer class indices, shape ``logits.shape[:-1]``
            (not one-hot). Values are not checked (they may be traced): a
            label in ``[-num_classes, -1]`` counts from the end as in NumPy;
            any other out-of-range label gives a NaN loss (and zero gradient)
            for that example.
        dtype: Precision of the log-softmax (float16, float32, or float64
            under x64); default: the logits' dtype promoted to float32.

    Returns:
        ``[...]`` per-example losses in ``dtype``.

    Raises:
        ValueError: naming ``labels`` when its shape is not
            ``logits.shape[:-1]`` or its dtype is not an integer type.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab.losses.softmax import softmax_cross_entropy
        >>> round(float(softmax_cross_entropy(jnp.zeros((1, 2)), jnp.array([0]))[0]), 6)
        0.693147
    """
    labels = _labels.check_labels(logits, labels)
    dtype = jnp.promote_types(logits.dtype, jnp.float32) if dtype is None else dtype
    logp = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
    return -_labels.pick(logp, labels)
