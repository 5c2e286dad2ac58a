r"""⊥Grad ("ortho-grad"): drop the gradient component parallel to the weights.

Prieto et al. show that after a network memorises its training set, the
gradient aligns with the *naïve loss minimisation* direction: for a positively
homogeneous network, moving along :math:`\theta` only scales the logits. ⊥Grad
removes that component before the base optimiser sees the gradient:

.. math::
    c = \frac{\langle \theta, g \rangle}{\langle \theta, \theta \rangle + \epsilon},
    \qquad g_\perp = g - c\,\theta,

and (``renormalize=True``, as in the released code) rescales it to keep the
original norm, :math:`g_\perp \leftarrow g_\perp \|g\| / (\|g_\perp\| + \epsilon)`.
With ``zero_if_parallel=True`` (``pytorch-optimizer==4.1.0``), a gradient
that is parallel to the weights up to rounding
(:math:`\|g_\perp\| \le 4\,\epsilon_\text{mach} \|g\|`) becomes 0 instead of
amplified rounding noise. ``scope="leaf"`` projects each tensor on its own
(the released code); ``scope="global"`` projects on the concatenated parameter
vector (the paper's Eq. 12). Dot products and norms are taken in float32
(float64 for float64 parameters) and the result is cast back to the gradient's
dtype.

.. warning::
    Decoupled weight decay of a following ``optax.adamw`` acts on the
    parameters and is not projected (as in torch's AdamW). Adam's
    per-coordinate preconditioning makes the final update only approximately
    orthogonal to the weights.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import optax

from optim_lab import _numerics
from optim_lab import _validation

_EPS = 1e-30
SCOPES = ("leaf", "global")


def _project(g, w, dot, w_sq, eps):
    """``g - <w,g>/(<w,w>+eps) * w`` in the statistics dtype."""
    c = dot / (w_sq + eps)
    return _numerics.upcast(g) - c * _numerics.upcast(w)


def _rescale_factor(g_sq, gp_sq, dtype, eps, zero_if_parallel):
    """Factor that gives ``g_perp`` the norm of ``g`` (0 when parallel)."""
    g_norm, gp_norm = jnp.sqrt(g_sq), jnp.sqrt(gp_sq)
    scale = g_norm / (gp_norm + eps)
    if zero_if_parallel:
        parallel = gp_norm <= 4.0 * jnp.finfo(dtype).eps * g_norm
        scale = jnp.where(parallel, jnp.zeros_like(scale), scale)
    return scale


def _orthogonalize_leaf(g, w, eps, renormalize, zero_if_parallel):
    gp = _project(g, w, _numerics.vdot(w, g), _numerics.sq_norm(w), eps)
    if renormalize:
        gp = gp * _rescale_factor(_numerics.sq_norm(g), _numerics.sq_norm(gp),
                                  gp.dtype, eps, zero_if_parallel)
    return gp.astype(g.dtype)


def _orthogonalize_global(grads, params, eps, renormalize, zero_if_parallel):
    dot = _numerics.tree_vdot(params, grads)
    w_sq = _numerics.tree_sq_norm(params)
    gp = jax.tree.map(lambda g, w: _project(g, w, dot, w_sq, eps), grads, params)
    if renormalize:
        scale = _rescale_factor(_numerics.tree_sq_norm(grads),
                                _numerics.tree_sq_norm(gp), dot.dtype, eps,
                                zero_if_parallel)
        gp = jax.tree.map(lambda x: x * scale, gp)
    return jax.tree.map(lambda x, g: x.astype(g.dtype), gp, grads)


def orthograd(
    scope: Literal["leaf", "global"] = "leaf",
    renormalize: bool = True,
    eps: float = _EPS,
    zero_if_parallel: bool = True,
) -> optax.GradientTransformation:
    """Projects gradients orthogonally to the parameters (⊥Grad).

    Chain it in front of any optimiser; it needs ``params`` in ``update``.

    Args:
        scope: ``"leaf"`` projects each tensor separately (released code and
            default); ``"global"`` projects the concatenated vector (paper).
        renormalize: Rescale the projected gradient to the original norm.
        eps: Added to ``<w, w>`` and to ``||g_perp||``; must be positive.
        zero_if_parallel: Zero a gradient parallel to ``w`` up to rounding
            instead of renormalising rounding noise (pytorch-optimizer 4.1.0).

    Returns:
        A stateless ``optax.GradientTransformation``.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> from optim_lab import orthograd
        >>> tx = optax.chain(orthograd(), optax.sgd(0.1))
        >>> params = jnp.array([1.0, 0.0])
        >>> updates, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
        >>> updates.tolist()
        [-0.0, -0.1414213627576828]

    References:
        Prieto, Barsbey, Mediano, Birdal, `Grokking at the Edge of Numerical
        Stability <https://arxiv.org/abs/2501.04697>`_, ICLR 2025.
    """
    _validation.check_choice("scope", scope, SCOPES)
    _validation.check_positive("eps", eps)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        _validation.require_params("orthograd", params)
        updates = _numerics.tree_asarray(updates)  # Python scalars as in optax
        params = _numerics.tree_asarray(params)
        if scope == "leaf":
            updates = jax.tree.map(
                lambda g, w: _orthogonalize_leaf(g, w, eps, renormalize,
                                                 zero_if_parallel),
                updates, params)
        else:
            updates = _orthogonalize_global(updates, params, eps, renormalize,
                                            zero_if_parallel)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)
