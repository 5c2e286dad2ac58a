r"""Norm probes: per-leaf and global L2 norms, effective step size.

The effective step size :math:`\|\Delta w\| / \|w\|` is the quantity AdamP and
weight-norm analyses reason about: for scale-invariant weights it, not the
learning rate, sets how fast the function changes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optim_lab import _numerics


def leaf_name(path) -> str:
    """``(DictKey('layers'), DictKey(0), ...)`` -> ``'layers/0/...'``."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _per_leaf(fn, *trees):
    flat, _ = jax.tree_util.tree_flatten_with_path(trees[0])
    others = [jax.tree.leaves(t) for t in trees[1:]]
    return {leaf_name(p): fn(x, *(o[i] for o in others))
            for i, (p, x) in enumerate(flat)}


def tree_norms(tree, prefix: str) -> dict[str, jax.Array]:
    """``{prefix/<leaf>/norm: ..., prefix/global/norm: ...}`` (float32 L2 norms)."""
    out = {f"{prefix}/{k}/norm": jnp.sqrt(v)
           for k, v in _per_leaf(_numerics.sq_norm, tree).items()}
    out[f"{prefix}/global/norm"] = jnp.sqrt(_numerics.tree_sq_norm(tree))
    return out


def effective_step(updates, params, prefix: str = "effective_step"
                   ) -> dict[str, jax.Array]:
    r"""Per-leaf and global :math:`\|\Delta w\| / \|w\|` (0 for zero weights)."""
    def ratio(u, w):
        return jnp.sqrt(_numerics.safe_div(_numerics.sq_norm(u),
                                           _numerics.sq_norm(w)))
    out = {f"{prefix}/{k}": v for k, v in _per_leaf(ratio, updates, params).items()}
    out[f"{prefix}/global"] = jnp.sqrt(_numerics.safe_div(
        _numerics.tree_sq_norm(updates), _numerics.tree_sq_norm(params)))
    return out
