r"""Softmax Collapse (SC) probes.

With max-shifted logits the largest term of :math:`\sum_j e^{z_j - \max z}` is
exactly 1; once every other term is below half an ulp of 1 the sum rounds to
**exactly** 1, the sample's cross-entropy is exactly 0 and the correct-class
gradient :math:`p_y - 1` vanishes. For two classes this happens at an integer
logit gap of 8 (float16), 17 (float32) and 37 (float64).

Reference: Prieto et al., *Grokking at the Edge of Numerical Stability*,
ICLR 2025 (arXiv 2501.04697).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_collapse_frac(logits: jax.Array, dtype: jnp.dtype = jnp.float32
                          ) -> jax.Array:
    """Fraction of rows whose max-shifted sum of exps is exactly 1 in ``dtype``.

    Compute it in the precision being studied, not the training precision.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab.dynamics import softmax_collapse_frac
        >>> float(softmax_collapse_frac(jnp.array([[0.0, 16.0], [0.0, 17.0]])))
        0.5
    """
    z = logits.astype(dtype)
    sum_exp = jnp.sum(jnp.exp(z - jnp.max(z, axis=-1, keepdims=True)), axis=-1)
    return jnp.mean((sum_exp == 1).astype(jnp.float32))


def zero_loss_frac(per_example_loss: jax.Array) -> jax.Array:
    """Fraction of per-example losses that are exactly zero (no tolerance).

    XLA:CPU flushes subnormal floats to zero, so a subnormal loss counts as 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab.dynamics import zero_loss_frac
        >>> float(zero_loss_frac(jnp.array([0.0, 1e-30, 2.0, 0.0])))
        0.5
    """
    return jnp.mean((per_example_loss == 0).astype(jnp.float32))
