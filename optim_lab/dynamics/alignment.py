r"""Gradient / weight alignment: the naïve-loss-minimisation (NLM) probe.

For a positively homogeneous network, moving along :math:`\theta` only scales
the logits. After memorisation the negative gradient aligns with the weights:

.. math::
    \cos_l = \frac{\langle -\nabla_{\theta_l} L, \theta_l \rangle}
                  {\|\nabla_{\theta_l} L\|\,\|\theta_l\|},

reported per leaf and over the concatenated parameter vector (0 for zero
leaves, never NaN). Reference: Prieto et al., ICLR 2025, Fig. 5.
"""

from __future__ import annotations

import jax

from optim_lab import _numerics
from optim_lab.dynamics.norms import _per_leaf


def grad_weight_cosine(grads, params, prefix: str = "cos_neg_grad_weight"
                       ) -> dict[str, jax.Array]:
    """``{prefix/<leaf>: cos(-g, w), prefix/global: ...}``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab.dynamics import grad_weight_cosine
        >>> out = grad_weight_cosine({"w": jnp.array([-2.0, 0.0])},
        ...                          {"w": jnp.array([1.0, 0.0])})
        >>> float(out["cos_neg_grad_weight/w"])
        1.0
    """
    def cos(g, w):
        return _numerics.cosine(-_numerics.vdot(g, w), _numerics.sq_norm(g),
                                _numerics.sq_norm(w))
    out = {f"{prefix}/{k}": v for k, v in _per_leaf(cos, grads, params).items()}
    out[f"{prefix}/global"] = _numerics.cosine(
        -_numerics.tree_vdot(grads, params), _numerics.tree_sq_norm(grads),
        _numerics.tree_sq_norm(params))
    return out
