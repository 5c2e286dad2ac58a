r"""AdamP and SGDP: remove the radial part of the update on scale-invariant weights.

A weight followed by a normalisation layer is *scale-invariant*,
:math:`f(c\,w) = f(w)`, so its gradient is orthogonal to :math:`w`. Momentum
then adds a radial (norm-increasing) component, :math:`\|w\|` grows and the
effective step size :math:`\propto \eta / \|w\|^2` collapses. AdamP and SGDP
detect such tensors from the current raw gradient :math:`g` and project the
update :math:`u` onto the tangent plane of :math:`w`, and cut the weight decay
of those tensors by ``wd_ratio``.

Per tensor and per step, for the *channel view* (one row per output channel)
and then the *layer view* (the whole tensor as one row), the first view with

.. math::
    \max_i \frac{|\langle g_i, w_i \rangle|}{\max(\|g_i\|, \epsilon)\,
    \max(\|w_i\|, \epsilon)} < \frac{\delta}{\sqrt{\dim}}

(``dim`` = row length) projects row-wise,
:math:`u_i \leftarrow u_i - \hat w_i \langle \hat w_i, u_i \rangle` with
:math:`\hat w_i = w_i / (\|w_i\| + \epsilon)`, and sets the decay ratio
:math:`r = ` ``wd_ratio`` (otherwise :math:`r = 1`). Only tensors with more
than one dimension are eligible by default.

The transforms follow the reference code ``adamp==0.3.0`` (clovaai/AdamP)
exactly; see :func:`scale_by_adamp` and :func:`scale_by_sgdp` for the update
rules and the differences from the paper.

References:
    Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha, `AdamP: Slowing Down the Slowdown
    for Momentum Optimizers on Scale-invariant Weights
    <https://arxiv.org/abs/2006.08217>`_, ICLR 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

from optim_lab import _numerics
from optim_lab import _validation

# Per-leaf options: one value for every leaf, a pytree matching the params, or
# a callable ``params -> pytree``.
LeafOption = Union[Any, Callable[[optax.Params], Any]]

NO_PARAMS_MSG = ("{} needs the current parameters: call "
                 "update(updates, state, params).")

BRANCH_NONE, BRANCH_CHANNEL, BRANCH_LAYER = 0, 1, 2


class Projection(NamedTuple):
    """Result of the scale-invariance test and projection of one tensor."""
    update: jax.Array  # projected update, statistics dtype
    ratio: jax.Array   # weight-decay ratio, broadcastable to the tensor
    branch: jax.Array  # BRANCH_NONE / BRANCH_CHANNEL / BRANCH_LAYER per layer


def _check_projection_args(eps, delta, wd_ratio, weight_decay) -> None:
    _validation.check_positive("eps", eps)
    _validation.check_positive("delta", delta)
    _validation.check_non_negative("wd_ratio", wd_ratio)
    _validation.check_non_negative("weight_decay", weight_decay,
           allow_schedule=False)


def _check_axis_option(name: str, value: LeafOption) -> None:
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} is traced: pass static_args=('channel_axis', 'stack_axes', "
            f"'project_mask') to optax.inject_hyperparams")
    if isinstance(value, (bool, float, str)):
        raise TypeError(f"{name} must be None, an int, a pytree of ints or a "
                        f"callable params -> pytree, got {value!r}")


def _per_leaf(option: LeafOption, params: optax.Params, default: Any
              ) -> list[Any]:
    """``option`` resolved to one value per leaf (``None`` -> ``default``)."""
    treedef = jax.tree.structure(params)
    if callable(option):
        option = option(params)
    if option is None or isinstance(option, (bool, int)) or (
            hasattr(option, "ndim") and option.ndim == 0):
        option = default if option is None else option
        return [option] * treedef.num_leaves
    return [default if o is None else o for o in treedef.flatten_up_to(option)]


def _views(ndim: int, stack_axes: int, channel_axis: int
           ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(channel-view reduction axes, layer axes, channel axis) of a leaf."""
    inner = ndim - stack_axes
    if not -inner <= channel_axis < inner:
        raise ValueError(f"channel_axis must be in [-{inner}, {inner}) for a "
                         f"{ndim}-d leaf with stack_axes={stack_axes}, got "
                         f"{channel_axis}")
    ch = stack_axes + channel_axis % inner
    layer = tuple(range(stack_axes, ndim))
    return tuple(a for a in layer if a != ch), layer, ch


def projection(param: jax.Array, grad: jax.Array, update: jax.Array, *,
               delta: Any = 0.1, wd_ratio: Any = 0.1, eps: Any = 1e-8,
               channel_axis: int = -1, stack_axes: int = 0) -> Projection:
    """The AdamP/SGDP scale-invariance test and projection of one tensor.

    Decided per tensor (per slice along the ``stack_axes`` leading axes), per
    step: channel view first, then layer view; the first hit wins. Statistics
    are computed in float32 (float64 for float64 inputs). Four per-channel
    sums (``w·w``, ``g·g``, ``w·g``, ``w·u``) serve both views: the layer sums
    are their totals, and the projection is one fused ``u - w·k`` pass.

    Args:
        param: Current weights ``w`` (before decay and step).
        grad: The raw gradient ``g`` used by the test.
        update: The update ``u`` to project.
        delta: Threshold factor; the test is ``max |cos| < delta / sqrt(dim)``.
        wd_ratio: Decay ratio returned for projected tensors.
        eps: Cosine clamp and additive eps of ``w / (||w|| + eps)``.
        channel_axis: Output-channel axis of the per-layer tensor (``-1`` for
            flax kernels, ``0`` for torch layout).
        stack_axes: Number of leading layer axes (scanned / stacked layers).

    Returns:
        A :class:`Projection` (update in the statistics dtype).
    """
    ch_axes, layer_axes, ch = _views(param.ndim, stack_axes, channel_axis)
    p, g, u = (_numerics.upcast(x) for x in (param, grad, update))

    def rsum(x, axes):
        return jnp.sum(x, axis=axes, keepdims=True)

    pp_c, gg_c, pg_c, pu_c = (rsum(x, ch_axes) for x in (p * p, g * g, p * g, p * u))
    pp_l, gg_l, pg_l, pu_l = (rsum(x, (ch,)) for x in (pp_c, gg_c, pg_c, pu_c))

    def test(pp, gg, pg, axes):
        dim = math.prod(param.shape[a] for a in axes)
        cos = jnp.abs(_numerics.clamped_cosine(pg, jnp.sqrt(pp), jnp.sqrt(gg), eps))
        return jnp.max(cos, axis=layer_axes, keepdims=True) < delta / math.sqrt(dim)

    def coef(pp, pu):  # w * coef = w_hat <w_hat, u>
        return pu / jnp.square(jnp.sqrt(pp) + eps)

    cond_c = test(pp_c, gg_c, pg_c, ch_axes)
    cond_l = test(pp_l, gg_l, pg_l, layer_axes)
    k = jnp.where(cond_c, coef(pp_c, pu_c), jnp.where(cond_l, coef(pp_l, pu_l), 0))
    hit = cond_c | cond_l
    ratio = jnp.where(hit, jnp.asarray(wd_ratio, p.dtype), jnp.ones((), p.dtype))
    branch = jnp.where(cond_c, BRANCH_CHANNEL, jnp.where(cond_l, BRANCH_LAYER,
                                                        BRANCH_NONE))
    return Projection(u - p * k, ratio, jnp.reshape(branch, param.shape[:stack_axes]))


def _eligible(leaf: jax.Array, mask: bool | None, stack_axes: int) -> bool:
    inner = leaf.ndim - stack_axes
    if mask is None:
        return inner > 1
    return bool(mask) and inner >= 1


def _project_leaves(params, grads, updates, *, delta, wd_ratio, eps,
                    channel_axis, stack_axes, project_mask):
    """Per-leaf ``(update, ratio)`` pairs (ratio None = not projected).

    ``params`` is the pytree; ``grads`` and ``updates`` are its leaf lists.
    """
    opts = zip(_per_leaf(project_mask, params, None),
               _per_leaf(channel_axis, params, -1), _per_leaf(stack_axes, params, 0))
    out = []
    for p, g, u, (mask, ax, st) in zip(jax.tree.leaves(params), grads, updates, opts):
        if _eligible(p, mask, int(st)):
            proj = projection(p, g, u, delta=delta, wd_ratio=wd_ratio, eps=eps,
                              channel_axis=int(ax), stack_axes=int(st))
            out.append((proj.update, proj.ratio))
        else:
            out.append((_numerics.upcast(u), None))
    return out


def _with_decay(u, ratio, p, weight_decay, dtype):
    """``u + weight_decay * ratio * p`` cast to ``dtype``."""
    if not (_numerics.is_static_number(weight_decay) and weight_decay == 0):
        r = 1.0 if ratio is None else ratio
        u = u + weight_decay * r * _numerics.upcast(p)
    return u.astype(dtype)


def scale_by_adamp(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    channel_axis: LeafOption = None,
    stack_axes: LeafOption = None,
    project_mask: LeafOption = None,
) -> optax.GradientTransformation:
    r"""Scales updates by the AdamP rule (``adamp==0.3.0``), without the lr.

    With :math:`t` the step count, :math:`b_{c1} = 1-\beta_1^t`,
    :math:`b_{c2} = 1-\beta_2^t`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        D = \sqrt{v_t}/\sqrt{b_{c2}} + \epsilon,

        u = m_t / D \quad (\text{Nesterov: } (\beta_1 m_t + (1-\beta_1) g_t)/D),
        \qquad (u, r) \leftarrow \mathrm{PROJECT}(w, g_t, u),

        \text{output} = u / b_{c1} + \lambda\, r\, w.

    Chained with ``optax.scale_by_learning_rate(lr)`` this is exactly the
    reference step ``w <- w (1 - lr λ r) - (lr / b_{c1}) u``: decoupled,
    lr-scaled decay (not divided by :math:`b_{c1}`), ``eps`` outside the
    square root after bias correction.

    Args:
        b1: Decay of the first moment, in [0, 1). Default 0.9.
        b2: Decay of the second moment, in [0, 1). Default 0.999.
        eps: Adam denominator eps, cosine clamp and additive eps of
            ``w / (||w|| + eps)``; must be positive. Default 1e-8.
        weight_decay: Decoupled decay λ (lr-scaled), >= 0. Default 0; the
            reference README uses 1e-2.
        delta: Scale-invariance threshold factor, > 0. Default 0.1.
        wd_ratio: Decay ratio r on projected tensors, >= 0. Default 0.1.
        nesterov: Nesterov momentum (reference v0.2.0+). Default False.
        channel_axis: Output-channel axis of each (per-layer) tensor:
            ``None`` (default) = ``-1``, right for flax ``Dense (in, out)`` /
            ``Conv (kh, kw, in, out)`` kernels; ``0`` for torch layout; or a
            pytree / callable ``params -> pytree`` of ints.
        stack_axes: Number of leading layer axes of stacked / scanned layers
            (each slice is tested and projected separately): ``None``
            (default) = 0, an int for every leaf, or a pytree / callable of
            ints.
        project_mask: Which leaves may be projected: ``None`` (default) = every
            leaf with more than one (per-layer) dimension; or a pytree /
            callable ``params -> pytree`` of bools (True forces eligibility).

    Returns:
        An ``optax.GradientTransformation`` with an ``optax.ScaleByAdamState``
        (``count`` int32, ``mu``, ``nu``).

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> from optim_lab import adamp
        >>> params = {"kernel": jnp.array([[1.0, 0.0], [0.0, 1.0]])}
        >>> tx = adamp(1e-2)
        >>> state = tx.init(params)
        >>> grads = {"kernel": jnp.array([[0.0, 1.0], [-1.0, 0.0]])}  # ⊥ kernel
        >>> updates, state = tx.update(grads, state, params)
        >>> params = optax.apply_updates(params, updates)
        >>> print(jnp.round(params["kernel"], 4))
        [[ 1.   -0.01]
         [ 0.01  1.  ]]

    References:
        Heo et al., `AdamP <https://arxiv.org/abs/2006.08217>`_, ICLR 2021;
        reference code ``adamp==0.3.0`` (clovaai/AdamP ``7f6f038``).

    .. warning::
        The test is decided **per tensor, per step** from the raw gradient
        (channel view, then layer view) and is discontinuous near the
        threshold. **flax layout:** the output channel of flax kernels is the
        last axis; a torch-style ``channel_axis=0`` groups by input feature /
        kernel row and silently degrades to layer-wise projection.
        **Stacked layers** (``nnx.scan``, vmapped blocks) need ``stack_axes``,
        or the layer view spans all layers. **Zero vs None gradient:** a zero
        gradient (a frozen / unused tensor in JAX) passes the test, so its
        decay ratio drops to ``wd_ratio`` and its moments decay, whereas
        torch skips a ``None`` grad entirely; mask such leaves with
        ``optax.masked`` / ``optax.set_to_zero``. **Paper vs code:** this is
        the code: ``|cos|`` (clovaai/AdamP#6), bias corrections, decoupled
        lr-scaled decay with ``wd_ratio`` and Nesterov are not in the
        paper's algorithm box. ``channel_axis`` / ``stack_axes`` default to
        ``None`` (= -1 / 0) so ``optax.inject_hyperparams`` works out of the
        box; when you set them, or a callable ``project_mask``, list them in
        its ``static_args``.
    """
    _validation.check_unit_interval("b1", b1)
    _validation.check_unit_interval("b2", b2)
    _check_projection_args(eps, delta, wd_ratio, weight_decay)
    _check_axis_option("channel_axis", channel_axis)
    _check_axis_option("stack_axes", stack_axes)

    def init_fn(params):
        return optax.ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params), nu=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(NO_PARAMS_MSG.format("scale_by_adamp"))
        updates = _numerics.tree_asarray(updates)  # Python scalars as in optax
        params = _numerics.tree_asarray(params)
        count = optax.safe_increment(state.count)
        t = count.astype(_numerics.tree_stat_dtype(updates))
        bc1, bc2 = _numerics.one_minus_pow(b1, t), _numerics.one_minus_pow(b2, t)

        def moments(g, m, v):
            g32 = _numerics.upcast(g)
            m = b1 * _numerics.upcast(m) + (1 - b1) * g32
            v = b2 * _numerics.upcast(v) + (1 - b2) * jnp.square(g32)
            den = jnp.sqrt(v) / jnp.sqrt(bc2) + eps
            num = b1 * m + (1 - b1) * g32 if nesterov else m
            return m, v, num / den

        grads, treedef = jax.tree.flatten(updates)
        p_leaves = treedef.flatten_up_to(params)
        mu, nu, raw = zip(*map(moments, grads, treedef.flatten_up_to(state.mu),
                               treedef.flatten_up_to(state.nu))) if grads else ((),) * 3
        proj = _project_leaves(
            params, grads, raw, delta=delta, wd_ratio=wd_ratio, eps=eps,
            channel_axis=channel_axis, stack_axes=stack_axes,
            project_mask=project_mask)
        out = [_with_decay(u / bc1, r, p, weight_decay, p.dtype)
               for (u, r), p in zip(proj, p_leaves)]
        mu = [m.astype(p.dtype) for m, p in zip(mu, p_leaves)]
        nu = [v.astype(p.dtype) for v, p in zip(nu, p_leaves)]
        unflat = lambda xs: jax.tree.unflatten(treedef, xs)  # noqa: E731
        return (unflat(out),
                optax.ScaleByAdamState(count=count, mu=unflat(mu), nu=unflat(nu)))

    return optax.GradientTransformation(init_fn, update_fn)


def adamp(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    channel_axis: LeafOption = None,
    stack_axes: LeafOption = None,
    project_mask: LeafOption = None,
) -> optax.GradientTransformation:
    """AdamP: ``chain(scale_by_adamp(...), scale_by_learning_rate(lr))``.

    See :func:`scale_by_adamp` for the rule and the arguments; the learning
    rate (the reference default is 1e-3) may be an optax schedule and scales
    both the step and the decoupled decay, exactly as in torch.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab import adamp
        >>> tx = adamp(1e-3, weight_decay=1e-2)
        >>> state = tx.init({"w": jnp.ones((3, 2)), "b": jnp.zeros(2)})
        >>> int(state[0].count)
        0
    """
    _validation.check_positive("learning_rate", learning_rate,
           allow_schedule=True)
    return optax.chain(
        scale_by_adamp(b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                       delta=delta, wd_ratio=wd_ratio, nesterov=nesterov,
                       channel_axis=channel_axis, stack_axes=stack_axes,
                       project_mask=project_mask),
        optax.scale_by_learning_rate(learning_rate))


def scale_by_sgdp(
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    channel_axis: LeafOption = None,
    project_momentum_buffer: bool = True,
    stack_axes: LeafOption = None,
    project_mask: LeafOption = None,
) -> optax.GradientTransformation:
    r"""Scales updates by the SGDP rule (``adamp==0.3.0``), without the lr.

    .. math::
        b_t = \mu\, b_{t-1} + (1 - \text{dampening})\, g_t, \qquad
        d = g_t + \mu b_t \ (\text{Nesterov}) \ \text{or}\ b_t,

        (d, r) \leftarrow \mathrm{PROJECT}(w, g_t, d), \qquad
        \text{output} = d + \frac{\lambda\, r}{1 - \mu} w.

    Unlike ``torch.optim.SGD`` the first step is not special-cased: the
    buffer starts at 0 and dampening applies from step 1. The decay is
    divided by :math:`1 - \mu` (reference code).

    **The default momentum is 0** (reference default); the reference README
    uses ``momentum=0.9, nesterov=True, weight_decay=1e-5``.

    Args:
        momentum: :math:`\mu`, in [0, 1). Default 0.
        dampening: In [0, 1]. Default 0.
        nesterov: Nesterov momentum. Default False.
        weight_decay: Decoupled decay λ (lr-scaled, divided by 1 − μ), >= 0.
        eps: Cosine clamp and additive eps of ``w / (||w|| + eps)``, > 0.
        delta: Scale-invariance threshold factor, > 0. Default 0.1.
        wd_ratio: Decay ratio r on projected tensors, >= 0. Default 0.1.
        channel_axis: As in :func:`scale_by_adamp` (default ``None`` = ``-1``,
            flax layout).
        project_momentum_buffer: ``True`` (default) reproduces the reference
            quirk: with ``nesterov=False`` the update *is* the buffer and is
            projected in place, so the stored buffer is the projected one
            (``b_t = μ Π(b_{t-1}) + g_t``). ``False`` keeps the buffer
            unprojected (paper Algorithm 1, ``pytorch-optimizer``). With
            ``nesterov=True`` both agree.
        stack_axes: As in :func:`scale_by_adamp`.
        project_mask: As in :func:`scale_by_adamp`.

    Returns:
        An ``optax.GradientTransformation`` with an ``optax.TraceState``
        (the momentum buffer, always allocated as in the reference).

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> from optim_lab import sgdp
        >>> params = jnp.array([[3.0, 4.0]])
        >>> tx = sgdp(0.1, momentum=0.9)
        >>> updates, _ = tx.update(jnp.array([[4.0, -3.0]]), tx.init(params), params)
        >>> print(updates)
        [[-0.4  0.3]]

    References:
        Heo et al., `AdamP <https://arxiv.org/abs/2006.08217>`_, ICLR 2021;
        reference code ``adamp==0.3.0`` (clovaai/AdamP ``7f6f038``).

    .. warning::
        Decided per tensor, per step; see :func:`scale_by_adamp` for the flax
        layout pitfall, stacked layers and the zero-vs-``None`` gradient
        difference. Weight decay and ``wd_ratio`` are not in the paper's
        algorithm box; the division of the decay by ``1 - momentum`` is the
        reference code's.
    """
    _validation.check_unit_interval("momentum", momentum)
    _validation.check_range("dampening", dampening, low=0.0, high=1.0)
    _check_projection_args(eps, delta, wd_ratio, weight_decay)
    _check_axis_option("channel_axis", channel_axis)
    _check_axis_option("stack_axes", stack_axes)
    keep_projected = project_momentum_buffer and not nesterov

    def init_fn(params):
        return optax.TraceState(trace=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(NO_PARAMS_MSG.format("scale_by_sgdp"))
        updates = _numerics.tree_asarray(updates)  # Python scalars as in optax
        params = _numerics.tree_asarray(params)

        def buffer(g, b):
            g32 = _numerics.upcast(g)
            b = momentum * _numerics.upcast(b) + (1 - dampening) * g32
            return b, (g32 + momentum * b if nesterov else b)

        grads, treedef = jax.tree.flatten(updates)
        p_leaves = treedef.flatten_up_to(params)
        bufs, steps = zip(*map(buffer, grads, treedef.flatten_up_to(state.trace))
                          ) if grads else ((), ())
        proj = _project_leaves(
            params, grads, steps, delta=delta, wd_ratio=wd_ratio, eps=eps,
            channel_axis=channel_axis, stack_axes=stack_axes,
            project_mask=project_mask)
        wd = weight_decay if (_numerics.is_static_number(weight_decay) and weight_decay == 0) else (
            weight_decay / (1 - momentum))
        out = [_with_decay(d, r, p, wd, p.dtype) for (d, r), p in zip(proj, p_leaves)]
        if keep_projected:
            bufs = [d for d, _ in proj]
        trace = jax.tree.unflatten(
            treedef, [b.astype(p.dtype) for b, p in zip(bufs, p_leaves)])
        return jax.tree.unflatten(treedef, out), optax.TraceState(trace=trace)

    return optax.GradientTransformation(init_fn, update_fn)


def sgdp(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    channel_axis: LeafOption = None,
    project_momentum_buffer: bool = True,
    stack_axes: LeafOption = None,
    project_mask: LeafOption = None,
) -> optax.GradientTransformation:
    """SGDP: ``chain(scale_by_sgdp(...), scale_by_learning_rate(lr))``.

    See :func:`scale_by_sgdp`; the learning rate is required (no default, as
    in the reference) and may be an optax schedule. **momentum defaults to
    0**, not 0.9.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab import sgdp
        >>> tx = sgdp(0.1, momentum=0.9, nesterov=True, weight_decay=1e-5)
        >>> tx.init(jnp.ones((2, 2)))[0].trace.shape
        (2, 2)
    """
    _validation.check_positive("learning_rate", learning_rate,
           allow_schedule=True)
    return optax.chain(
        scale_by_sgdp(momentum=momentum, dampening=dampening, nesterov=nesterov,
                      weight_decay=weight_decay, eps=eps, delta=delta,
                      wd_ratio=wd_ratio, channel_axis=channel_axis,
                      project_momentum_buffer=project_momentum_buffer,
                      stack_axes=stack_axes, project_mask=project_mask),
        optax.scale_by_learning_rate(learning_rate))
