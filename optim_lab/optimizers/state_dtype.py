r"""Run any optax transform with its state in a chosen dtype (e.g. float64).

XLA:CPU flushes float32 subnormal *results* to zero:
``jax.jit(lambda a: a * a)(jnp.float32(1e-20))`` is ``0.0``, while NumPy and
torch on CPU give ``1e-40``. Adam's second moment is a sum of squared
gradients, so in float32 it underflows to exactly 0 once
:math:`|g| \lesssim 10^{-19}` (:math:`(1-\beta_2) g^2` below the smallest
normal float32, :math:`1.2 \cdot 10^{-38}`). With the tiny :math:`\epsilon` of
the grokking runs (:math:`10^{-25}`) the step then becomes

.. math::
    \frac{\hat m}{\sqrt{\hat v} + \epsilon} = \frac{\hat m}{\epsilon}
    \approx \frac{|g|}{10^{-25}},

e.g. :math:`10^5` times the learning rate for :math:`|g| = 10^{-20}`, where
torch (which keeps subnormals) and exact arithmetic take a step of about the
learning rate. :func:`with_state_dtype` avoids this by running the inner
transform in a wider dtype:

.. math::
    (u', s_{t+1}) = \text{inner.update}(\text{cast}_d(g),\ s_t,\
    \text{cast}_d(\theta)), \qquad u = \text{cast}_{\theta}(u'),

where :math:`\text{cast}_d` converts every floating-point leaf to ``dtype``
and :math:`\text{cast}_\theta` converts each update back to its parameter's
own dtype. ``init`` casts the parameters before ``inner.init``, so every
floating-point state leaf the inner transform derives from them (moments,
momentum buffers, injected hyperparameters) lives in ``dtype``; integer
counters are untouched.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def _cast_floats(tree: Any, dtype: jnp.dtype) -> Any:
    """Casts the floating-point leaves of ``tree`` to ``dtype``."""
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
    return jax.tree.map(cast, tree)


def _check_dtype(dtype: Any) -> jnp.dtype:
    """Returns ``dtype`` as a floating ``jnp.dtype``; raises ``ValueError``."""
    try:
        out = jnp.dtype(dtype)
    except TypeError as e:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype!r}") from e
    if not jnp.issubdtype(out, jnp.floating):
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype!r}")
    return out


def _check_x64(dtype: jnp.dtype) -> None:
    """float64 state needs 64-bit JAX, else JAX silently keeps float32."""
    if dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"dtype={dtype.name} needs 64-bit JAX, which is off: call "
            "jax.config.update('jax_enable_x64', True) first, or construct, "
            "init and update inside `with jax.enable_x64(True):`. Without it "
            "JAX truncates the state to float32 and subnormals still flush "
            "to zero.")


def with_state_dtype(
    inner: optax.GradientTransformation,
    dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    r"""Runs ``inner`` in ``dtype``: its inputs, its state and its arithmetic.

    Gradients and parameters are cast to ``dtype`` before ``inner.update``;
    ``init`` casts the parameters before ``inner.init``, so floating-point
    state is created in ``dtype`` (integer counters keep their dtype); the
    returned updates are cast to each parameter's own dtype (to the
    gradient's dtype when ``params`` is not passed), so a float32 or bfloat16
    model keeps its dtype. Extra keyword arguments (``value=`` for Polyak-type
    transforms, ...) are forwarded to ``inner`` unchanged; a transform that
    takes none is wrapped with ``optax.with_extra_args_support``.

    With ``optax.inject_hyperparams(...)`` as ``inner``, the injected float
    hyperparameters follow the (cast) parameters' dtype, so they are stored in
    ``dtype`` too: ``eps=1e-25`` stays exactly representable and setting
    ``state.hyperparams["learning_rate"] = 0.5`` between steps works as usual.

    Typical use: ``with_state_dtype(optax.adamw(1e-2, eps=1e-25), jnp.float64)``
    under ``jax.enable_x64`` for float32 models whose gradients become tiny
    (the grokking runs), which makes the optimizer step match exact
    arithmetic (and torch, which keeps float32 subnormals) instead of
    XLA:CPU's flush-to-zero float32.

    Args:
        inner: Any ``optax.GradientTransformation`` (a chain,
            ``inject_hyperparams``, a transform taking extra args...).
        dtype: A floating-point dtype for the state and the arithmetic.
            ``jnp.float64`` requires ``jax_enable_x64`` (or a
            ``jax.enable_x64(True)`` context) at construction, ``init`` and
            ``update``; otherwise a ``ValueError`` naming ``dtype`` is raised
            before anything is traced.

    Returns:
        An ``optax.GradientTransformationExtraArgs``; its state is ``inner``'s
        state (no extra fields).

    Examples:
        With float32 state, XLA flushes :math:`(1-\beta_2) g^2` to 0 for
        :math:`g = 10^{-20}` and Adam's step is :math:`10^5` times too large;
        float64 state gives a step of about the learning rate:

        >>> import jax, jax.numpy as jnp, optax
        >>> from optim_lab import with_state_dtype
        >>> params, grads = jnp.ones(2), jnp.full(2, 1e-20)
        >>> adam = optax.adam(1e-3, eps=1e-25)
        >>> u32, _ = jax.jit(adam.update)(grads, adam.init(params), params)
        >>> print(f"{float(u32[0]):.3g}")
        -100
        >>> with jax.enable_x64(True):
        ...     tx = with_state_dtype(adam, jnp.float64)
        ...     state = tx.init(params)
        ...     u64, state = jax.jit(tx.update)(grads, state, params)
        >>> print(f"{float(u64[0]):.3g}", u64.dtype, state[0].nu.dtype)
        -0.001 float32 float64

    .. warning::
        XLA:CPU flushes float32 subnormals to zero (GPUs and TPUs do the
        same), in ``jit`` and in eager mode alike, so float32 optimizer state
        with a tiny :math:`\epsilon` can take huge steps where torch on CPU
        does not. float64 state fixes the optimizer's arithmetic only: the
        model's own forward and backward passes still run in the parameters'
        dtype, and updates are rounded to it.
    """
    dtype = _check_dtype(dtype)
    _check_x64(dtype)
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        _check_x64(dtype)
        return inner.init(_cast_floats(params, dtype))

    def update_fn(updates, state, params=None, **extra_args):
        _check_x64(dtype)
        like = updates if params is None else params
        cast_params = None if params is None else _cast_floats(params, dtype)
        new, state = inner.update(_cast_floats(updates, dtype), state,
                                  cast_params, **extra_args)
        new = jax.tree.map(lambda u, p: u.astype(jnp.asarray(p).dtype), new, like)
        return new, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
