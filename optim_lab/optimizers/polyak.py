r"""Generalized Polyak step size with momentum: ALR-SMAG and ALR-HB.

Polyak's step for gradient descent minimises the convexity bound on
:math:`\|x_{k+1} - x^*\|^2`, which gives :math:`\eta = (f(x_k) - f^*)/\|g_k\|^2`.
Wang, Johansson and Zhang apply the same recipe to momentum methods. With the
*moving-averaged gradient* (MAG, torch-SGD style, no :math:`1-\beta` factor)

.. math::
    d_k = \beta d_{k-1} + g_k, \qquad
    t_k = \frac{f_S(x_k) - \ell^*_S}{c\,\|d_k\|^2}, \qquad
    \tau_k = \min(\eta_\text{max}, t_k), \qquad
    x_{k+1} = (1 - \lambda\tau_k)\,x_k - \tau_k d_k

(ALR-SMAG, :func:`alr_smag`; the decoupled weight decay :math:`\lambda` is
Schaipp's addition in ``fabian-sp/step-back``, not the paper's). For the heavy
ball form :math:`x_{k+1} = x_k - \alpha_k g_k + \beta \Delta_k`,
:math:`\Delta_k = x_k - x_{k-1}`, minimising the same bound gives

.. math::
    \alpha_k = \min\Big\{\frac{[f_S(x_k) - \ell^*_S
        + \beta\langle g_k, \Delta_k\rangle]_+}{c\,\|g_k\|^2},\ \alpha_\text{max}\Big\}

(ALR-HB, :func:`alr_hb`; *derived* from the paper's principle, not checked
against its text).

Both are one monolithic transform: the learning rate is a **cap** on a step
that depends on global state, so it cannot be factored out into
``optax.scale_by_learning_rate``. Norms and inner products are single global
reductions over every leaf the transform sees (leaves excluded by
``optax.masked`` are not seen), accumulated in float32 (float64 for float64
parameters). The step is guarded: a zero direction or a non-finite loss gives
a zero step, never NaN.

References:
    Wang, Johansson, Zhang, `Generalized Polyak Step Size for First Order
    Optimization with Momentum <https://arxiv.org/abs/2305.12939>`_, ICML 2023.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim_lab import _numerics
from optim_lab import _validation

VARIANTS = ("sps", "sps+", "plus")  # "plus" is an alias of "sps+"


class AlrSmagState(NamedTuple):
    """State of :func:`alr_smag`."""
    count: jax.Array  # shape=(), int32: steps taken
    momentum: optax.Updates  # d_k = beta d_{k-1} + g_k, one buffer per leaf
    tau: jax.Array  # shape=(): last effective step min(cap, t1) (0 if guarded)
    t1: jax.Array  # shape=(): last uncapped step gap / (c ||d||^2) (0 if guarded)


class AlrHbState(NamedTuple):
    """State of :func:`alr_hb`."""
    count: jax.Array  # shape=(), int32: steps taken
    delta: optax.Updates  # Delta_k = x_k - x_{k-1} (the last update)
    tau: jax.Array  # shape=(): last gradient step alpha_k (0 if guarded)


def _cap(learning_rate: optax.ScalarOrSchedule, count: jax.Array) -> jax.Array:
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _check_value(name: str, value) -> None:
    """The loss must be passed, as one scalar (shapes are static under jit)."""
    if value is None:
        raise TypeError(f"{name} needs the minibatch loss whose gradient is "
                        f"passed: call update(grads, state, params, value=loss)")
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name}: value must be a scalar (the minibatch loss, "
                         f"e.g. the mean of the per-example losses), got shape "
                         f"{jnp.shape(value)}")


def _may_be_nonzero(x) -> bool:
    """False only for a known zero; a traced value (``inject_hyperparams``
    inside ``jit``) cannot be branched on, so it counts as non-zero."""
    if _validation.is_traced(x):
        return True
    return bool(x != 0)


def _polyak_step(gap, sq_norm, c, cap, value, dtype):
    """``(where(ok, min(cap, t1), 0), where(ok, t1, 0))``, ``t1 = gap/(c n2)``.

    ``ok`` means ``c n2 > tiny`` and a finite loss, so the unselected branch of
    the division is finite too and nothing can produce NaN.
    """
    den = jnp.asarray(c, dtype) * sq_norm.astype(dtype)
    ok = (den > jnp.finfo(dtype).tiny) & jnp.isfinite(value)
    t1 = jnp.where(ok, gap.astype(dtype) / jnp.where(ok, den, 1), 0)
    tau = jnp.where(ok, jnp.minimum(jnp.asarray(cap, dtype), t1), 0)
    return tau.astype(dtype), t1.astype(dtype)


def _check_common(learning_rate, beta, c, lower_bound) -> None:
    _validation.check_learning_rate(learning_rate)
    _validation.check_unit_interval("beta", beta)
    _validation.check_positive("c", c)
    _validation.check_range("lower_bound", lower_bound)


def alr_smag(
    learning_rate: optax.ScalarOrSchedule,
    beta: float = 0.9,
    c: float = 1.0,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    variant: str = "sps",
) -> optax.GradientTransformationExtraArgs:
    r"""ALR-SMAG: SGD with heavy momentum and a capped generalized Polyak step.

    .. math::
        d_k = \beta d_{k-1} + g_k, \quad
        t_k = \frac{f_S(x_k) - \ell^*}{c\,\|d_k\|^2}, \quad
        \tau_k = \min(\eta_\text{max}, t_k), \quad
        u_k = -\tau_k\,(d_k + \lambda x_k).

    :math:`\|d_k\|^2` is one global reduction over all leaves (not per
    tensor). Semantics follow ``AlrSmag`` of ``fabian-sp/step-back`` (commit
    ``74b8843``), except for the guards: when :math:`c\|d_k\|^2` is zero (or
    subnormal) or the loss is not finite, :math:`\tau_k = 0` (no movement).
    The state holds the last :math:`\tau_k` (``tau``) and the uncapped
    :math:`t_k` (``t1``) for logging.

    Args:
        learning_rate: The **cap** :math:`\eta_\text{max}` on the step (not a
            multiplier); a float or an optax schedule; must be positive.
        beta: Momentum :math:`\beta \in [0, 1)`; the buffer is a sum, not an
            average (no :math:`1-\beta` factor).
        c: Scale :math:`c > 0` of the denominator. The step-decrease guarantee
            needs :math:`c > 1/2`; smaller values rely on the cap.
        lower_bound: :math:`\ell^*`, a lower bound of the minibatch loss.
            The default 0 is exact for non-negative interpolating losses; with
            regularised or non-interpolating losses the gap is overestimated
            and the cap controls the late phase.
        weight_decay: :math:`\lambda \ge 0`, decoupled and scaled by the
            adaptive step, :math:`x \leftarrow (1 - \lambda\tau)x - \tau d`
            (Schaipp's form, not from the paper).
        variant: ``"sps"`` (reference: a loss below ``lower_bound`` gives a
            negative step, i.e. an ascent step) or ``"sps+"`` (alias
            ``"plus"``: the gap is clipped at 0, so such a step is 0).

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes the
        minibatch loss as keyword-only ``value=``, a scalar (``TypeError``
        without it, ``ValueError`` for a non-scalar such as per-example
        losses), and ``params`` (required when ``weight_decay > 0``, and when
        ``weight_decay`` is traced by ``optax.inject_hyperparams`` under
        ``jit``). Every float hyperparameter may be injected.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab import alr_smag
        >>> tx = alr_smag(learning_rate=1.0, beta=0.9)
        >>> params = jnp.array([1.0, 2.0])
        >>> loss = lambda p: 0.5 * jnp.sum(p ** 2)
        >>> state = tx.init(params)
        >>> updates, state = tx.update(params, state, params, value=loss(params))
        >>> float(state.tau), updates.tolist()
        (0.5, [-0.5, -1.0])

    References:
        Wang, Johansson, Zhang, `Generalized Polyak Step Size for First Order
        Optimization with Momentum <https://arxiv.org/abs/2305.12939>`_, ICML
        2023. Reference code: F. Schaipp, ``fabian-sp/step-back``,
        ``stepback/optim/alr_smag.py``.

    .. warning::
        ``learning_rate`` is a cap, so ``optax.scale_by_learning_rate`` style
        factoring does not apply; with a flax linen ``TrainState``,
        ``apply_gradients(grads=..., value=...)`` does **not** forward
        ``value`` (its kwargs replace dataclass fields): call
        ``tx.update(grads, opt_state, params, value=loss)`` directly (NNX
        ``nnx.Optimizer.update(model, grads, value=loss)`` forwards it).
        ``value`` must be the same minibatch loss whose gradient is passed.
    """
    _check_common(learning_rate, beta, c, lower_bound)
    _validation.check_non_negative("weight_decay", weight_decay)
    _validation.check_choice("variant", variant, VARIANTS)
    clip_gap = variant != "sps"

    def init_fn(params):
        params = _numerics.tree_asarray(params)
        dtype = _numerics.tree_stat_dtype(params)
        return AlrSmagState(count=jnp.zeros((), jnp.int32),
                            momentum=jax.tree.map(jnp.zeros_like, params),
                            tau=jnp.zeros((), dtype), t1=jnp.zeros((), dtype))

    decay = _may_be_nonzero(weight_decay)

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        _check_value("alr_smag", value)
        if decay:
            _validation.require_params(
                "alr_smag", params,
                "weight_decay > 0, or injected by optax.inject_hyperparams")
        updates = _numerics.tree_asarray(updates)
        params = _numerics.tree_asarray(params)
        dtype = state.tau.dtype
        momentum = jax.tree.map(lambda d, g: (beta * d + g).astype(d.dtype),
                                state.momentum, updates)
        value = jnp.asarray(value).astype(dtype)
        gap = value - lower_bound
        if clip_gap:
            gap = jnp.maximum(gap, 0)
        tau, t1 = _polyak_step(gap, _numerics.tree_sq_norm(momentum), c,
                               _cap(learning_rate, state.count), value, dtype)

        def direction(d, p):
            u = _numerics.upcast(d).astype(dtype)
            if decay:
                u = u + weight_decay * _numerics.upcast(p).astype(dtype)
            return u

        ps = params if decay else momentum
        new_updates = jax.tree.map(
            lambda d, p, g: (-tau * direction(d, p)).astype(g.dtype),
            momentum, ps, updates)
        return new_updates, AlrSmagState(
            count=optax.safe_increment(state.count), momentum=momentum,
            tau=tau, t1=t1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def alr_hb(
    learning_rate: optax.ScalarOrSchedule,
    beta: float = 0.9,
    c: float = 1.0,
    lower_bound: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    r"""ALR-HB: heavy ball with a capped generalized Polyak gradient step.

    .. math::
        \alpha_k = \min\Big\{\frac{[f_S(x_k) - \ell^*
            + \beta\langle g_k, \Delta_k\rangle]_+}{c\,\|g_k\|^2},
            \ \alpha_\text{max}\Big\}, \quad
        u_k = -\alpha_k g_k + \beta\Delta_k, \quad \Delta_{k+1} = u_k.

    When the last move overshoots, :math:`\langle g, \Delta\rangle > 0` and
    the gradient step grows (damping oscillation); when momentum already
    descends it shrinks. :math:`\|g_k\|^2` and :math:`\langle g_k,
    \Delta_k\rangle` are global reductions over all leaves. Guards: a zero
    (or subnormal) :math:`c\|g_k\|^2` gives :math:`\alpha_k = 0` (the
    momentum part still moves); a non-finite loss gives a zero update and
    resets :math:`\Delta` to 0 (so it stays :math:`x_{k+1} - x_k`).

    Args:
        learning_rate: The **cap** :math:`\alpha_\text{max}` (float or
            schedule, positive), not a multiplier.
        beta: Heavy-ball momentum :math:`\beta \in [0, 1)`.
        c: Scale :math:`c > 0` of the denominator.
        lower_bound: :math:`\ell^*`, a lower bound of the minibatch loss
            (default 0; overestimates the gap for non-interpolating losses).

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes
        the minibatch loss as keyword-only ``value=``, a scalar (``TypeError``
        without it, ``ValueError`` for a non-scalar); ``params`` is not
        needed (:math:`\Delta` lives in the state). Every float
        hyperparameter may be injected with ``optax.inject_hyperparams``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab import alr_hb
        >>> tx = alr_hb(learning_rate=10.0, beta=0.9)
        >>> params = jnp.array([1.0, 2.0])
        >>> state = tx.init(params)
        >>> updates, state = tx.update(params, state, params, value=2.5)
        >>> float(state.tau), updates.tolist()
        (0.5, [-0.5, -1.0])

    References:
        Wang, Johansson, Zhang, `Generalized Polyak Step Size for First Order
        Optimization with Momentum <https://arxiv.org/abs/2305.12939>`_, ICML
        2023.

    .. warning::
        **Derived from the paper's principle; not verified against the
        paper's text.** The paper's ALR-HB may differ (e.g. by
        :math:`1-\beta` factors, an iterate-moving-average form or the
        placement of :math:`c`). ``learning_rate`` is a cap. With a flax linen
        ``TrainState``, ``apply_gradients`` does not forward ``value``: call
        ``tx.update(grads, opt_state, params, value=loss)`` directly.
    """
    _check_common(learning_rate, beta, c, lower_bound)

    def init_fn(params):
        params = _numerics.tree_asarray(params)
        return AlrHbState(count=jnp.zeros((), jnp.int32),
                          delta=jax.tree.map(jnp.zeros_like, params),
                          tau=jnp.zeros((), _numerics.tree_stat_dtype(params)))

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        _check_value("alr_hb", value)
        updates = _numerics.tree_asarray(updates)
        dtype = state.tau.dtype
        value = jnp.asarray(value).astype(dtype)
        inner = _numerics.tree_vdot(updates, state.delta).astype(dtype)
        gap = jnp.maximum(value - lower_bound + beta * inner, 0)
        alpha, _ = _polyak_step(gap, _numerics.tree_sq_norm(updates), c,
                                _cap(learning_rate, state.count), value, dtype)
        keep = jnp.isfinite(value)

        def step(g, delta):
            u = (-alpha * _numerics.upcast(g).astype(dtype)
                 + beta * _numerics.upcast(delta).astype(dtype))
            return jnp.where(keep, u, 0).astype(g.dtype)

        new_updates = jax.tree.map(step, updates, state.delta)
        new_delta = jax.tree.map(lambda u, d: u.astype(d.dtype), new_updates,
                                 state.delta)
        return new_updates, AlrHbState(count=optax.safe_increment(state.count),
                                       delta=new_delta, tau=alpha)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
