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
than one dimension are eligible by default. How each leaf is viewed (its
output-channel axis, its stacked layer axes, whether it is eligible) is one
per-leaf spec, :class:`AdamPDims`, passed as ``dims``.

The transforms follow the reference code ``adamp==0.3.0`` (clovaai/AdamP)
exactly; see :func:`scale_by_adamp` and :func:`scale_by_sgdp` for the update
rules and the differences from the paper.

References:
    Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha, `AdamP: Slowing Down the Slowdown
    for Momentum Optimizers on Scale-invariant Weights
    <https://arxiv.org/abs/2006.08217>`_, ICLR 2021.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any
from typing import NamedTuple
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optim_lab import _numerics
from optim_lab import _validation

BRANCH_NONE, BRANCH_CHANNEL, BRANCH_LAYER = 0, 1, 2


class AdamPDims(NamedTuple):
    """How AdamP / SGDP test and project one leaf (its dimension numbers).

    Given for every leaf at once, as a pytree of them, or by a callable
    ``params -> pytree`` (see ``dims`` of :func:`scale_by_adamp`), as optax's
    Muon takes its ``MuonDimensionNumbers``.

    Attributes:
        channel_axis: Output-channel axis of the per-layer tensor: ``-1``
            (default) for flax ``Dense (in, out)`` / ``Conv (kh, kw, in, out)``
            kernels, ``0`` for torch layout.
        stack_axes: Number of leading layer axes of stacked / scanned layers;
            each slice is tested and projected on its own. Default 0.
        project: Whether the leaf may be projected: ``None`` (default) when
            its per-layer tensor has more than one dimension; ``True`` for
            any per-layer tensor with at least one dimension (a vector is
            then decided through the layer view); ``False`` never (its decay
            ratio is 1).

    ``dims`` replaces the three per-leaf keyword arguments of earlier versions:
    ``channel_axis=a, stack_axes=s`` is ``dims=AdamPDims(channel_axis=a,
    stack_axes=s)``, ``project_mask=True`` is ``dims=AdamPDims(project=True)``,
    and per-leaf pytrees / callables of those options become one pytree /
    callable of :class:`AdamPDims`.
    """
    channel_axis: int = -1
    stack_axes: int = 0
    project: bool | None = None


# One AdamPDims for every leaf, a pytree of them (a prefix of the params;
# None = AdamPDims()), or a callable params -> such a pytree.
DimsOrFn = Union[AdamPDims, optax.Params, Callable[[optax.Params], Any], None]


class Projection(NamedTuple):
    """Result of the scale-invariance test and projection of one tensor."""
    update: jax.Array  # projected update, statistics dtype
    ratio: jax.Array   # weight-decay ratio, broadcastable to the tensor
    branch: jax.Array  # BRANCH_NONE / BRANCH_CHANNEL / BRANCH_LAYER per layer


def _check_projection_args(eps, delta, wd_ratio, weight_decay) -> None:
    _validation.check_positive("eps", eps)
    _validation.check_positive("delta", delta)
    _validation.check_non_negative("wd_ratio", wd_ratio)
    _validation.check_non_negative("weight_decay", weight_decay)


def _is_dims(x: Any) -> bool:
    return x is None or isinstance(x, AdamPDims)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_dims(dims: Any) -> None:
    """Eager type checks of a ``dims`` pytree (a callable is checked when called)."""
    if callable(dims):
        return
    for d in jax.tree.leaves(dims, is_leaf=_is_dims):
        if not _is_dims(d):
            raise TypeError(
                "dims must be an AdamPDims, a pytree of AdamPDims (None = "
                f"AdamPDims()) or a callable params -> such a pytree; got a leaf {d!r}")
        if d is None:
            continue
        if not _is_int(d.channel_axis):
            raise TypeError(f"dims.channel_axis must be an int, got {d.channel_axis!r}")
        if not _is_int(d.stack_axes) or d.stack_axes < 0:
            raise ValueError(f"dims.stack_axes must be an int >= 0, got {d.stack_axes!r}")
        if d.project is not None and not isinstance(d.project, (bool, np.bool_)):
            raise TypeError(f"dims.project must be None, True or False, got {d.project!r}")


def resolve_dims(dims: DimsOrFn, params: optax.Params) -> Any:
    """``dims`` as one :class:`AdamPDims` at every leaf of ``params``.

    Args:
        dims: ``None`` (:class:`AdamPDims` defaults), one :class:`AdamPDims`
            for every leaf, a pytree of them that is a prefix of ``params``
            (``None`` entries mean the defaults), or a callable
            ``params -> pytree``.
        params: The parameters (only the tree structure is read).

    Returns:
        ``params``' tree with an :class:`AdamPDims` in place of every leaf.

    Examples:
        >>> import jax.numpy as jnp
        >>> dims = lambda p: {"w": AdamPDims(channel_axis=0), "b": None}
        >>> resolve_dims(dims, {"w": jnp.ones((2, 3)), "b": jnp.ones(3)})["w"]
        AdamPDims(channel_axis=0, stack_axes=0, project=None)
    """
    if callable(dims):
        dims = dims(params)
        _check_dims(dims)

    def fill(d, subtree):
        spec = AdamPDims() if d is None else d
        return jax.tree.map(lambda _: spec, subtree)

    if _is_dims(dims):
        return fill(dims, params)
    return jax.tree.map(fill, dims, params, is_leaf=_is_dims)


def _views(ndim: int, stack_axes: int, channel_axis: int
           ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(channel-view reduction axes, layer axes, channel axis) of a leaf."""
    inner = ndim - stack_axes
    if not -inner <= channel_axis < inner:
        raise ValueError(f"dims.channel_axis must be in [-{inner}, {inner}) for a "
                         f"{ndim}-d leaf with stack_axes={stack_axes}, got "
                         f"{channel_axis}")
    ch = stack_axes + channel_axis % inner
    layer = tuple(range(stack_axes, ndim))
    return tuple(a for a in layer if a != ch), layer, ch


def projection(param: jax.Array, grad: jax.Array, update: jax.Array,
               dims: AdamPDims = AdamPDims(), *, delta: Any = 0.1,
               wd_ratio: Any = 0.1, eps: Any = 1e-8) -> Projection:
    """The AdamP/SGDP scale-invariance test and projection of one tensor.

    Decided per tensor (per slice along the ``dims.stack_axes`` leading axes),
    per step: channel view first, then layer view; the first hit wins.
    Statistics are computed in float32 (float64 for float64 inputs). Four
    per-channel sums (``w·w``, ``g·g``, ``w·g``, ``w·u``) serve both views: the
    layer sums are their totals, and the projection is one fused ``u - w·k``
    pass. ``dims.project`` is not consulted: the tensor is always tested.

    Args:
        param: Current weights ``w`` (before decay and step).
        grad: The raw gradient ``g`` used by the test.
        update: The update ``u`` to project.
        dims: The tensor's :class:`AdamPDims` (channel axis, stacked axes).
        delta: Threshold factor; the test is ``max |cos| < delta / sqrt(dim)``.
        wd_ratio: Decay ratio returned for projected tensors.
        eps: Cosine clamp and additive eps of ``w / (||w|| + eps)``.

    Returns:
        A :class:`Projection` (update in the statistics dtype).
    """
    stack_axes = int(dims.stack_axes)
    ch_axes, layer_axes, ch = _views(param.ndim, stack_axes, int(dims.channel_axis))
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


def _eligible(param: jax.Array, dims: AdamPDims) -> bool:
    inner = param.ndim - int(dims.stack_axes)
    if dims.project is None:
        return inner > 1
    return bool(dims.project) and inner >= 1


def _project_leaf(p, g, u, dims, *, delta, wd_ratio, eps):
    """``(update, ratio)`` of one leaf; ratio ``None`` = not projected."""
    if not _eligible(p, dims):
        return _numerics.upcast(u), None
    proj = projection(p, g, u, dims, delta=delta, wd_ratio=wd_ratio, eps=eps)
    return proj.update, proj.ratio


def _with_decay(u, ratio, p, weight_decay, dtype):
    """``u + weight_decay * ratio * p`` cast to ``dtype``."""
    if not (_numerics.is_static_number(weight_decay) and weight_decay == 0):
        r = 1.0 if ratio is None else ratio
        u = u + weight_decay * r * _numerics.upcast(p)
    return u.astype(dtype)


def _adamp_leaf(g, m, v, p, dims, *, b1, b2, bc1, bc2, eps, nesterov,
                weight_decay, project):
    """One tensor's AdamP output and moments ``(u/bc1 + λ r p, m, v)``.

    All three in ``p``'s dtype; ``bc1`` / ``bc2`` are this step's bias
    corrections ``1 - b^t``; ``project`` is :func:`_project_leaf` with the
    shared hyperparameters bound.
    """
    g32 = _numerics.upcast(g)
    m = b1 * _numerics.upcast(m) + (1 - b1) * g32
    v = b2 * _numerics.upcast(v) + (1 - b2) * jnp.square(g32)
    den = jnp.sqrt(v) / jnp.sqrt(bc2) + eps
    num = b1 * m + (1 - b1) * g32 if nesterov else m
    u, ratio = project(p, g, num / den, dims)
    return (_with_decay(u / bc1, ratio, p, weight_decay, p.dtype),
            m.astype(p.dtype), v.astype(p.dtype))


def _sgdp_leaf(g, b, p, dims, *, momentum, dampening, nesterov, weight_decay,
               keep_projected, project):
    """One tensor's SGDP output and buffer ``(d + λ' r p, b)`` in ``p``'s dtype.

    ``weight_decay`` is λ' = λ / (1 - momentum); with ``keep_projected`` the
    stored buffer is the projected direction (the reference's in-place quirk).
    """
    g32 = _numerics.upcast(g)
    b = momentum * _numerics.upcast(b) + (1 - dampening) * g32
    d, ratio = project(p, g, g32 + momentum * b if nesterov else b, dims)
    return (_with_decay(d, ratio, p, weight_decay, p.dtype),
            (d if keep_projected else b).astype(p.dtype))


def scale_by_adamp(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    dims: DimsOrFn = None,
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
        dims: How each leaf is tested and projected (:class:`AdamPDims`:
            channel axis, stacked layer axes, eligibility): ``None`` (default)
            = ``AdamPDims()`` for every leaf (flax layout, no stacked axes,
            leaves with more than one dimension); one :class:`AdamPDims` for
            every leaf; a pytree of them that is a prefix of the params
            (``None`` entries = defaults); or a callable ``params -> pytree``.

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

        Torch-layout kernels, and a stack of three scanned layers:

        >>> from optim_lab.optimizers.adamp import AdamPDims
        >>> tx = adamp(1e-2, dims={"torch_kernel": AdamPDims(channel_axis=0),
        ...                        "blocks": AdamPDims(stack_axes=1)})

    References:
        Heo et al., `AdamP <https://arxiv.org/abs/2006.08217>`_, ICLR 2021;
        reference code ``adamp==0.3.0`` (clovaai/AdamP ``7f6f038``).

    .. warning::
        The test is decided **per tensor, per step** from the raw gradient
        (channel view, then layer view) and is discontinuous near the
        threshold. **flax layout:** the output channel of flax kernels is the
        last axis; a torch-style ``AdamPDims(channel_axis=0)`` groups by input
        feature / kernel row and silently degrades to layer-wise projection.
        **Stacked layers** (``nnx.scan``, vmapped blocks) need
        ``AdamPDims(stack_axes=...)``, or the layer view spans all layers.
        **Zero vs None gradient:** a zero gradient (a frozen / unused tensor
        in JAX) passes the test, so its decay ratio drops to ``wd_ratio`` and
        its moments decay, whereas torch skips a ``None`` grad entirely; mask
        such leaves with ``optax.masked`` / ``optax.set_to_zero``. **Paper vs
        code:** this is the code: ``|cos|`` (the paper's equation misses the
        absolute value; the authors confirmed the code in clovaai/AdamP#6),
        bias corrections, decoupled lr-scaled decay with ``wd_ratio`` and
        Nesterov are not in the paper's algorithm box. Under
        ``optax.inject_hyperparams`` an :class:`AdamPDims` or a pytree of
        them stays static; a callable ``dims`` must be listed in its
        ``static_args`` (it would be taken for a schedule).
    """
    _validation.check_unit_interval("b1", b1)
    _validation.check_unit_interval("b2", b2)
    _check_projection_args(eps, delta, wd_ratio, weight_decay)
    _check_dims(dims)
    project = functools.partial(_project_leaf, delta=delta, wd_ratio=wd_ratio, eps=eps)

    def init_fn(params):
        return optax.ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params), nu=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        _validation.require_params("scale_by_adamp", params)
        updates = _numerics.tree_asarray(updates)  # Python scalars as in optax
        params = _numerics.tree_asarray(params)
        count = optax.safe_increment(state.count)
        t = count.astype(_numerics.tree_stat_dtype(updates))
        leaf = functools.partial(
            _adamp_leaf, b1=b1, b2=b2, bc1=_numerics.one_minus_pow(b1, t),
            bc2=_numerics.one_minus_pow(b2, t), eps=eps, nesterov=nesterov,
            weight_decay=weight_decay, project=project)
        out = jax.tree.map(leaf, updates, state.mu, state.nu, params,
                           resolve_dims(dims, params))
        updates, mu, nu = _numerics.tree_unzip(out, updates, 3)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

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
    dims: DimsOrFn = None,
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
    _validation.check_learning_rate(learning_rate)
    return optax.chain(
        scale_by_adamp(b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                       delta=delta, wd_ratio=wd_ratio, nesterov=nesterov,
                       dims=dims),
        optax.scale_by_learning_rate(learning_rate))


def scale_by_sgdp(
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    project_momentum_buffer: bool = True,
    dims: DimsOrFn = None,
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
        project_momentum_buffer: ``True`` (default) reproduces the reference
            quirk: with ``nesterov=False`` the update *is* the buffer and is
            projected in place, so the stored buffer is the projected one
            (``b_t = μ Π(b_{t-1}) + g_t``). ``False`` keeps the buffer
            unprojected (paper Algorithm 1, ``pytorch-optimizer``). With
            ``nesterov=True`` both agree.
        dims: Per-leaf :class:`AdamPDims` (channel axis, stacked layer axes,
            eligibility), as in :func:`scale_by_adamp` (default ``None`` =
            ``AdamPDims()``: flax layout).

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
    _check_dims(dims)
    project = functools.partial(_project_leaf, delta=delta, wd_ratio=wd_ratio, eps=eps)
    no_decay = _numerics.is_static_number(weight_decay) and weight_decay == 0
    leaf = functools.partial(
        _sgdp_leaf, momentum=momentum, dampening=dampening, nesterov=nesterov,
        weight_decay=weight_decay if no_decay else weight_decay / (1 - momentum),
        keep_projected=project_momentum_buffer and not nesterov, project=project)

    def init_fn(params):
        return optax.TraceState(trace=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        _validation.require_params("scale_by_sgdp", params)
        updates = _numerics.tree_asarray(updates)  # Python scalars as in optax
        params = _numerics.tree_asarray(params)
        out = jax.tree.map(leaf, updates, state.trace, params,
                           resolve_dims(dims, params))
        updates, trace = _numerics.tree_unzip(out, updates, 2)
        return updates, optax.TraceState(trace=trace)

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
    project_momentum_buffer: bool = True,
    dims: DimsOrFn = None,
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
    _validation.check_learning_rate(learning_rate)
    return optax.chain(
        scale_by_sgdp(momentum=momentum, dampening=dampening, nesterov=nesterov,
                      weight_decay=weight_decay, eps=eps, delta=delta,
                      wd_ratio=wd_ratio,
                      project_momentum_buffer=project_momentum_buffer, dims=dims),
        optax.scale_by_learning_rate(learning_rate))
