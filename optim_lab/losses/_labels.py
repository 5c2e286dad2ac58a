"""Shared argument checks of the cross-entropy losses (static: shapes, dtypes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_labels(logits: jax.Array, labels) -> jax.Array:
    """Returns ``labels`` as an array after checking it against ``logits``.

    Only static properties are checked (they are known under ``jit`` too):
    ``labels.shape == logits.shape[:-1]`` and an integer dtype. Label *values*
    cannot be checked inside ``jit``; see the losses' docstrings for what an
    out-of-range label gives.

    Raises:
        ValueError: naming ``labels``, for a wrong shape (e.g. one-hot labels,
            or a batch size that would silently broadcast) or a non-integer
            dtype.
    """
    labels = jnp.asarray(labels)
    logits_shape = jnp.shape(logits)
    if len(logits_shape) < 1:
        raise ValueError(f"logits must have a class axis (shape [..., num_classes]), "
                         f"got shape {logits_shape}")
    if labels.shape != logits_shape[:-1]:
        raise ValueError(
            f"labels must have shape logits.shape[:-1] = {logits_shape[:-1]} "
            f"(integer class indices, not one-hot), got shape {labels.shape} "
            f"for logits of shape {logits_shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integer class indices, got dtype "
                         f"{labels.dtype}")
    return labels


def pick(logp: jax.Array, labels: jax.Array) -> jax.Array:
    """``logp[..., labels]``; an out-of-range label gives NaN (``mode="fill"``).

    Labels in ``[-num_classes, -1]`` index from the end, as in NumPy.
    """
    return jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1,
                               mode="fill", fill_value=jnp.nan)[..., 0]
