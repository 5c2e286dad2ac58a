r"""FAdam: Adam read as a natural-gradient method with a diagonal empirical Fisher.

FAdam (Hwang, 2024) reads Adam's second moment as a diagonal empirical Fisher
:math:`f` and steps along the (power-:math:`p`) natural gradient
:math:`g / f^p`. Compared with Adam it bias-corrects :math:`\beta_2` through a
step-dependent :math:`\hat\beta_2`, averages momentum over the *natural*
gradient (precondition first, no :math:`1/(1-\beta_1^t)` correction), adds an
adaptive :math:`\epsilon`, clips the natural gradient by its RMS and replaces
decoupled weight decay by the clipped natural gradient of the L2 penalty,
:math:`\theta / f^p`. The loss should be a log-likelihood (cross-entropy).

The default semantics are those of ``pytorch-optimizer==4.1.0``
(``FAdam``), the maintained port; older ports' adaptive-ε forms are selectable
with ``eps_mode`` (see :func:`scale_by_fadam`). The paper has at least eleven
arXiv revisions and the ports follow different ones; this module implements
4.1.0 and names it, it does not claim to be "paper-exact".

References:
    Hwang, `FAdam: Adam is a natural gradient optimizer using diagonal
    empirical Fisher information <https://arxiv.org/abs/2405.12807>`_, 2024.
"""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim_lab import _numerics
from optim_lab import _validation

EPS_MODES = ("min_scaled", "scaled_by_min1", "scaled_by_max1")


class ScaleByFAdamState(NamedTuple):
    """State of :func:`scale_by_fadam`."""
    count: jax.Array  # shape=(), dtype=int32; steps taken
    mu: optax.Updates  # momentum of the clipped natural gradient
    fim: optax.Updates  # diagonal empirical Fisher f (= Adam's bias-corrected v)


def debiased_b2(b2: Any, count: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""``(β̂₂, 1 - β̂₂)`` at step ``count`` (>= 1), in float32 (float64 under x64).

    :math:`\hat\beta_2 = \beta_2 (1-\beta_2^{t-1}) / (1-\beta_2^t)`, so
    :math:`1-\hat\beta_2 = (1-\beta_2)/(1-\beta_2^t)`; :math:`\hat\beta_2 = 0`
    exactly at :math:`t = 1`. Both are formed from ``expm1(t log β₂)`` with
    ``log β₂`` and ``1 - β₂`` taken in float64 for a Python ``b2``: the naive
    float32 ``1 - 0.999`` is off by 1.3e-5 relative, while torch forms these
    scalars in double.
    """
    dt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    t = count.astype(dt)
    if _numerics.is_static_number(b2):
        if b2 == 0:  # f = g^2 every step
            return jnp.zeros((), dt), jnp.ones((), dt)
        one_minus_b2 = 1.0 - b2
    else:
        b2 = jnp.asarray(b2, dt)
        one_minus_b2 = 1.0 - b2
    bc_t = _numerics.one_minus_pow(b2, t)  # 1 - b2^t  (> 0 for t >= 1)
    bc_prev = _numerics.one_minus_pow(b2, jnp.where(t > 1, t - 1.0, 1.0))
    bc_prev = jnp.where(t > 1, bc_prev, 0.0)  # 1 - b2^(t-1), exactly 0 at t = 1
    # At t = 1 the ratio (1 - b2) / (1 - b2^1) is 1 only up to rounding.
    return b2 * bc_prev / bc_t, jnp.where(t > 1, one_minus_b2 / bc_t, 1.0)


def _power(x: jax.Array, p: Any) -> jax.Array:
    """``x ** p`` with torch's exact special case ``p = 0.5 -> sqrt``."""
    if _numerics.is_static_number(p) and p == 0.5:
        return jnp.sqrt(x)
    if _numerics.is_static_number(p) and p == 1:
        return x
    return jnp.power(x, jnp.asarray(p, x.dtype))


def adaptive_eps(rms_g: jax.Array, eps: Any, eps_2: Any, p: Any, mode: str,
                 fim: jax.Array | None = None) -> jax.Array:
    r"""The adaptive ε term added to :math:`f^p` for one tensor.

    * ``"min_scaled"`` (4.1.0): :math:`\min(\epsilon, \epsilon_2 \mathrm{RMS}(g))^{2p}`,
      falling back to :math:`\epsilon^{2p}` when :math:`\mathrm{RMS}(g) = 0`.
    * ``"scaled_by_min1"``: :math:`\epsilon \min(1, \mathrm{RMS}(g))`.
    * ``"scaled_by_max1"``: :math:`\epsilon \max(1, \mathrm{RMS}(g))`.

    Args:
        rms_g: The tensor's gradient RMS (float scalar).
        eps, eps_2, p: Hyperparameters of :func:`scale_by_fadam`.
        mode: One of ``EPS_MODES``.
        fim: The updated Fisher of the tensor; ``"scaled_by_min1"`` uses it to
            fall back to ε where the port divides 0 by 0.

    Returns:
        A scalar in ``rms_g``'s dtype.
    """
    dt = rms_g.dtype
    if mode == "min_scaled":
        scaled = eps_2 * rms_g
        if _numerics.is_static_number(eps) and _numerics.is_static_number(p):
            eps_pow = eps ** (2.0 * p)
        else:
            eps_pow = jnp.power(jnp.asarray(eps, dt), 2.0 * p)
        small = (rms_g > 0) & (scaled < eps)
        return jnp.where(small, _power(scaled, 2.0 * p),
                         jnp.asarray(eps_pow, dt))
    if mode == "scaled_by_max1":
        return eps * jnp.maximum(rms_g, 1.0)
    e = eps * jnp.minimum(rms_g, 1.0)
    # The port gives 0/0 = NaN when a whole tensor's gradient is 0 while some
    # f_i = 0 (step 1, unused tensors); fall back to ε only there.
    nan_case = (rms_g == 0) & jnp.any(fim == 0)
    return jnp.where(nan_case, jnp.asarray(eps, dt), e)


def rms_clip(x: jax.Array, clip: Any) -> jax.Array:
    """``x / max(RMS(x) / clip, 1)``: rescales ``x`` to RMS <= ``clip``."""
    return x / jnp.maximum(_numerics.rms(x) / clip, 1.0)


def _fadam_leaf(g, mu, fim, theta, *, lerp_w, b2h, one_minus_b2h, eps, eps_2, p,
                clip, weight_decay, eps_mode):
    """One tensor's step: ``(output, new mu, new fim)`` in the dtypes of
    ``g``, ``mu`` and ``fim``; computed in float32 (float64 for float64)."""
    g32 = _numerics.upcast(g)
    b2h, one_minus_b2h = b2h.astype(g32.dtype), one_minus_b2h.astype(g32.dtype)
    f = b2h * _numerics.upcast(fim) + one_minus_b2h * g32 * g32
    e = adaptive_eps(_numerics.rms(g32), eps, eps_2, p, eps_mode, f)
    den = _power(f, p) + e
    m = _numerics.upcast(mu)
    m = m + lerp_w * (rms_clip(g32 / den, clip) - m)  # torch.lerp, weight < 0.5
    out = m
    if not (_numerics.is_static_number(weight_decay) and weight_decay == 0):
        out = weight_decay * rms_clip(_numerics.upcast(theta) / den, clip) + m
    return out.astype(g.dtype), m.astype(mu.dtype), f.astype(fim.dtype)


def scale_by_fadam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_2: float = 0.01,
    p: float = 0.5,
    clip: float = 1.0,
    weight_decay: float = 0.1,
    eps_mode: str = "min_scaled",
    mu_dtype: Any = None,
    fim_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""Scales updates by the FAdam rule (``pytorch-optimizer==4.1.0``), without the lr.

    Per tensor (leaf), with :math:`t` the step count and
    :math:`\mathrm{RMS}(x) = \sqrt{\mathrm{mean}(x^2)}` over that tensor:

    .. math::
        \hat\beta_2 = \beta_2 \frac{1-\beta_2^{t-1}}{1-\beta_2^{t}}, \qquad
        f_t = \hat\beta_2 f_{t-1} + (1-\hat\beta_2)\, g_t^2,

        e = \begin{cases}\min(\epsilon, \epsilon_2 \mathrm{RMS}(g_t))^{2p}
            & \mathrm{RMS}(g_t) > 0\\ \epsilon^{2p} & \text{otherwise}\end{cases},
        \qquad D = f_t^{\,p} + e,

        \mathrm{clip}_c(x) = x / \max(\mathrm{RMS}(x)/c,\ 1), \qquad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,\mathrm{clip}_c(g_t / D),

        \text{output} = m_t + \lambda\, \mathrm{clip}_c(\theta_{t-1} / D).

    Chained with ``optax.scale_by_learning_rate(lr)`` this is the reference
    step :math:`\theta \leftarrow \theta - \mathrm{lr}\,(m_t + \lambda w_n)`.
    Because :math:`\hat\beta_2 = 0` at :math:`t = 1`, :math:`f_t` equals Adam's
    bias-corrected :math:`\hat v_t = v_t / (1-\beta_2^t)` exactly; with
    :math:`p = 1/2` and :math:`e = \epsilon` the denominator is Adam's
    :math:`\sqrt{\hat v_t} + \epsilon`. What differs from Adam(W): momentum on
    the preconditioned gradient with no :math:`\beta_1` bias correction (the
    first steps are ~10x smaller), the RMS clips, the adaptive ε, and the
    weight-decay form. ``chain(optax.scale(-1.0), fadam(...))`` is the
    reference's ``maximize=True``.

    Args:
        b1: Momentum decay β₁, in [0, 1). Default 0.9.
        b2: Fisher decay β₂, in [0, 1). Default 0.999.
        eps: Upper bound ε of the adaptive epsilon (before the power 2p),
            >= 0. Default 1e-8.
        eps_2: Gradient-RMS multiplier ε₂ of the adaptive epsilon, >= 0.
            Default 0.01.
        p: Fisher power, > 0 (``p = 0.5`` is Adam's square root). Default 0.5.
        clip: RMS cap c of the natural gradient and of the natural weight
            decay, > 0. Default 1.
        weight_decay: λ of the natural weight decay, >= 0. Default 0.1 (see
            the warning: not comparable with AdamW's λ).
        eps_mode: Adaptive-ε form. ``"min_scaled"`` (default) is
            pytorch-optimizer 3.11+/4.x, :math:`\min(\epsilon,
            \epsilon_2\mathrm{RMS}(g))^{2p}` with the 4.0.0 fallback
            :math:`\epsilon^{2p}` at :math:`\mathrm{RMS}(g) = 0`;
            ``"scaled_by_min1"`` is :math:`\epsilon\min(1, \mathrm{RMS}(g))`
            (lessw2020 "v3 paper algo", pytorch-optimizer <= 3.10; ``eps_2``
            unused; where that port divides 0 by 0 on an all-zero gradient
            this falls back to ε instead of NaN); ``"scaled_by_max1"`` is
            :math:`\epsilon\max(1, \mathrm{RMS}(g))` (lessw2020 HEAD). The
            older ports used the clip divisor :math:`\max(1, \mathrm{RMS})/c`,
            so they are reproduced only at ``clip = 1``.
        mu_dtype: dtype of the momentum; ``None`` = float32 (float64 for
            float64 parameters), also for bf16 parameters.
        fim_dtype: dtype of the Fisher; ``None`` as for ``mu_dtype``.

    Returns:
        An ``optax.GradientTransformation`` with a :class:`ScaleByFAdamState`.
        All statistics are computed in float32 (float64 for float64 inputs);
        the output has the gradient's dtype.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab import scale_by_fadam
        >>> tx = scale_by_fadam(weight_decay=0.0)
        >>> params = jnp.array([1.0, -2.0])
        >>> state = tx.init(params)
        >>> out, state = tx.update(jnp.array([0.5, -0.5]), state, params)
        >>> out.tolist()  # (1 - b1) * g / (|g| + eps): the first step is 0.1
        [0.10000000149011612, -0.10000000149011612]
        >>> state.fim.tolist()  # f_1 = g^2 exactly
        [0.25, 0.25]

    References:
        Hwang, `FAdam <https://arxiv.org/abs/2405.12807>`_, 2024; semantics of
        ``pytorch-optimizer==4.1.0`` (``optimizer/fadam.py``).

    .. warning::
        **Weight decay is not AdamW's.** Typically :math:`D \approx |g| \ll
        |\theta|`, so :math:`\theta/D` has RMS far above ``clip`` and is clipped
        to RMS = c: the decay step has RMS :math:`\approx \mathrm{lr}\,\lambda\,c`
        *independent of the weight scale*, distributed :math:`\propto
        \theta_i / D_i` (strongest where gradients are tiny). At the defaults
        it is ~10 % of a full update step, far stronger than AdamW's
        :math:`\lambda\theta` on small weights; a one-element tensor decays by
        a constant sign step of :math:`\mathrm{lr}\,\lambda\,c`. Do not reuse
        AdamW λ values. Decay applies to **every** leaf (biases, norm gains,
        scalars) unless masked with ``optax.masked``.
        **Statistics are per leaf:** the adaptive ε and both clips use one RMS
        per tensor, so leaf granularity is part of the semantics; stacked or
        scanned layers share one RMS across the stack (vmap the transform over
        the stack axes to get per-layer statistics).
        **Zero vs None gradient:** torch skips a ``None`` gradient; a JAX zero
        gradient still advances the moments and applies the natural decay.
        Mask frozen leaves (``optax.masked`` / ``optax.set_to_zero``).
    """
    _validation.check_unit_interval("b1", b1)
    _validation.check_unit_interval("b2", b2)
    _validation.check_non_negative("eps", eps)
    _validation.check_non_negative("eps_2", eps_2)
    _validation.check_positive("p", p)
    _validation.check_positive("clip", clip)
    _validation.check_non_negative("weight_decay", weight_decay)
    _validation.check_choice("eps_mode", eps_mode, EPS_MODES)

    def zeros_leaf(x, dtype):
        dtype = jnp.dtype(dtype) if dtype is not None else _numerics.stat_dtype(x)
        return jnp.zeros(x.shape, dtype)

    def init_fn(params):
        params = _numerics.tree_asarray(params)  # Python scalars as in optax
        return ScaleByFAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(lambda x: zeros_leaf(x, mu_dtype), params),
            fim=jax.tree.map(lambda x: zeros_leaf(x, fim_dtype), params))

    def update_fn(updates, state, params=None):
        _validation.require_params("scale_by_fadam", params,
                                   "the natural weight decay is theta / D")
        updates = _numerics.tree_asarray(updates)  # Python scalars as in optax
        params = _numerics.tree_asarray(params)
        count = optax.safe_increment(state.count)
        b2h, one_minus_b2h = debiased_b2(b2, count)
        leaf = functools.partial(
            _fadam_leaf, lerp_w=1.0 - b1, b2h=b2h, one_minus_b2h=one_minus_b2h,
            eps=eps, eps_2=eps_2, p=p, clip=clip, weight_decay=weight_decay,
            eps_mode=eps_mode)
        out = jax.tree.map(leaf, updates, state.mu, state.fim, params)
        updates, mu, fim = _numerics.tree_unzip(out, updates, 3)
        return updates, ScaleByFAdamState(count=count, mu=mu, fim=fim)

    return optax.GradientTransformation(init_fn, update_fn)


def fadam(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_2: float = 0.01,
    p: float = 0.5,
    clip: float = 1.0,
    weight_decay: float = 0.1,
    eps_mode: str = "min_scaled",
    mu_dtype: Any = None,
    fim_dtype: Any = None,
) -> optax.GradientTransformation:
    """FAdam: ``chain(scale_by_fadam(...), scale_by_learning_rate(lr))``.

    See :func:`scale_by_fadam` for the rule, the arguments and the
    weight-decay warning. The learning rate (default 1e-3, as the reference)
    may be an optax schedule; it scales both the step and the natural decay,
    as in torch.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> from optim_lab import fadam
        >>> tx = fadam(0.1, weight_decay=0.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> state = tx.init(params)
        >>> for _ in range(5):
        ...     updates, state = tx.update(2 * params, state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(float(x), 4) for x in params]  # torch FAdam: [0.8704, -0.8704]
        [0.8704, -0.8704]
    """
    _validation.check_learning_rate(learning_rate)
    return optax.chain(
        scale_by_fadam(b1=b1, b2=b2, eps=eps, eps_2=eps_2, p=p, clip=clip,
                       weight_decay=weight_decay, eps_mode=eps_mode,
                       mu_dtype=mu_dtype, fim_dtype=fim_dtype),
        optax.scale_by_learning_rate(learning_rate))
