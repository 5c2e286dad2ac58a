"""Turns a flax NNX module into pure functions over plain-dict pytrees.

The training step works on ``(params, model_state)`` nested dicts of arrays:
optax transforms, orbax checkpoints and probes see ordinary pytrees, and the
module graph (the ``GraphDef``) is static, so nothing re-traces per step.
``model_state`` holds every non-``Param`` variable (BatchNorm statistics,
dropout RNG counters).

Randomness (dropout) is an explicit argument: a module whose ``__call__``
takes a keyword ``rng`` receives ``apply``'s ``rng`` (the training step passes
``jax.random.fold_in(state.rng, state.step)``, so the masks are a pure
function of ``(seed, step)`` and resume is exact); such a module raises if it
needs a key in training and gets none. Modules without an ``rng`` parameter
ignore it, so a training step may always pass one.
"""

from __future__ import annotations

import inspect
from typing import Any
from typing import NamedTuple

import jax
from flax import nnx


class Functional(NamedTuple):
    """Pure view of a module.

    ``apply(params, model_state, x, train, rng=None) -> (out, new_model_state)``;
    ``train`` is a Python bool (static); ``rng`` is a PRNG key for modules
    that take one (dropout), ignored by the others.
    """
    apply: Any
    params: Any
    model_state: Any


def functionalize(model: nnx.Module) -> Functional:
    """Splits ``model`` into pure ``apply`` plus params / model_state dicts."""
    graphdefs = {}
    for train in (True, False):
        model.train() if train else model.eval()
        graphdefs[train], p_tmpl, s_tmpl = nnx.split(model, nnx.Param, ...)
    params, model_state = nnx.to_pure_dict(p_tmpl), nnx.to_pure_dict(s_tmpl)
    takes_rng = "rng" in inspect.signature(model.__call__).parameters

    def _as_state(template, pure):
        state = jax.tree.map(lambda v: v, template)
        nnx.replace_by_pure_dict(state, pure)
        return state

    def apply(params, model_state, x, train: bool, rng: jax.Array | None = None):
        module = nnx.merge(graphdefs[train], _as_state(p_tmpl, params),
                           _as_state(s_tmpl, model_state), copy=True)
        out = module(x, rng=rng) if takes_rng else module(x)
        _, _, new_state = nnx.split(module, nnx.Param, ...)
        return out, nnx.to_pure_dict(new_state)

    return Functional(apply, params, model_state)
