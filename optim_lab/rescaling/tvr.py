r"""Target-Variance Rescaling (TVR): a pure post-step params transform.

Every ``interval`` optimizer steps, each eligible weight matrix :math:`W` in
block :math:`l` is standardised and rescaled to a target standard deviation,
keeping its own mean:

.. math::
    \mu = \operatorname{mean}(W), \quad
    \sigma = \operatorname{std}_{\text{ddof}=1}(W), \quad
    \sigma_t(l) = \begin{cases} \sigma_\text{target}/\sqrt{l} &
        \text{scale\_with\_depth} \\ \sigma_\text{target} & \text{otherwise}
        \end{cases}

.. math::
    W \leftarrow \frac{W - \mu}{\sigma}\,\sigma_t(l) + \mu
    \quad\text{if}\quad \sigma / \sigma_t(l) > \tau
    \quad (\text{``two\_sided'': also if } 0 < \sigma < \sigma_t(l)/\tau),

with threshold :math:`\tau` (the reference's ``ratio_threshold``). The sibling
``bias`` of a rescaled ``kernel`` is set to 0. Statistics are taken over the
whole matrix (per block slice for stacked leaves) in float32 (float64 for
float64 parameters), so bf16 parameters get exact-enough means and stds.
Optimizer state is not an input: Adam's moments keep their scale, as in the
reference. It runs after ``optax.apply_updates`` (so after AdamW's decoupled
decay), as a ``(params, step) -> params`` function inside the jitted step.

Firing: with ``anchor="absolute"`` (default) TVR fires when ``step > 0`` and
``step % interval == 0``, where ``step`` counts completed optimizer steps: the
first check is at ``step = interval``, and a run resumed from a checkpoint at
any step is bit-identical to an uninterrupted one. ``anchor="resume"``
reproduces the reference callback, whose ``last_check`` is reset to the resume
step :math:`R`: it fires at :math:`R + \text{interval}, R + 2\,\text{interval},
\dots` (``resume_step`` = :math:`R`, 0 for a fresh run).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_lab import _numerics
from optim_lab import _validation
from optim_lab.rescaling import _paths

MODES = ("one_sided", "two_sided")
ANCHORS = ("absolute", "resume")


class _Config(NamedTuple):
    target: Any
    interval: int
    threshold: Any
    scale_with_depth: bool
    mode: str
    anchor: str
    resume_step: Any
    block_pattern: str
    block_re: Any
    stacked_re: Any
    mask: Any


def _check(target=0.01, interval=50, threshold=1.2, scale_with_depth=False,
           mode="one_sided", anchor="absolute", resume_step=None,
           block_pattern=_paths.DEFAULT_BLOCK_PATTERN, stacked_pattern=None,
           mask=None) -> _Config:
    """Validates every TVR setting eagerly (before anything is traced)."""
    _validation.check_positive("target", target)
    _validation.check_int("interval", interval, 1)
    _validation.check_positive("threshold", threshold)
    _validation.check_choice("scale_with_depth", scale_with_depth, (False, True))
    _validation.check_choice("mode", mode, MODES)
    _validation.check_choice("anchor", anchor, ANCHORS)
    if resume_step is not None and not isinstance(resume_step, jax.Array):
        _validation.check_int("resume_step", resume_step, 0)
    return _Config(target, int(interval), threshold, bool(scale_with_depth), mode,
                   anchor, resume_step, block_pattern,
                   _paths.compile_pattern("block_pattern", block_pattern),
                   _paths.compile_pattern("stacked_pattern", stacked_pattern,
                                          optional=True, group=False), mask)


def _is_static_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _fires(step, cfg: _Config):
    """``rel > 0 and rel % interval == 0``, ``rel = step - anchor``.

    A Python bool for a static ``step`` (and anchor), else a traced bool.
    """
    anchor = cfg.resume_step if cfg.anchor == "resume" else None
    rel = step if anchor is None else step - anchor
    if _is_static_int(step) and (anchor is None or _is_static_int(anchor)):
        return bool(rel > 0 and rel % cfg.interval == 0)
    rel = jnp.asarray(rel)
    return (rel > 0) & (rel % cfg.interval == 0)


def _size(shape) -> int:
    return math.prod(shape) if shape else 1


def _eligible(cfg: _Config, info: _paths.Leaf) -> bool:
    if not (info.floating and info.selected and info.slice_shape
            and _size(info.slice_shape) >= 2):  # 1x1: ddof=1 std is NaN
        return False
    if cfg.mask is not None:
        return True
    return info.in_block and len(info.slice_shape) == 2


class _Plan(NamedTuple):
    eligible: list[int]      # leaf indices TVR may rescale
    logged: list[int]        # other float leaves with >= 2 entries (std/mean only)
    bias_of: dict[int, int]  # eligible kernel index -> sibling bias index


def _plan(cfg: _Config, infos: list[_paths.Leaf], leaves: list) -> _Plan:
    eligible = [k for k, i in enumerate(infos) if _eligible(cfg, i)]
    if cfg.mask is None and not eligible:
        raise _paths.no_block_error(infos, cfg.block_pattern)
    if cfg.scale_with_depth:
        for k in eligible:
            if not infos[k].in_block:
                raise ValueError(
                    f"scale_with_depth=True needs a block index for "
                    f"{infos[k].path!r}; block_pattern {cfg.block_pattern!r} and "
                    "stacked_pattern do not match it")
    index = {i.path: k for k, i in enumerate(infos)}
    bias_of = {}
    for k in eligible:
        info = infos[k]
        b = index.get(info.path[:-len("kernel")] + "bias") \
            if info.name == "kernel" else None
        if b is not None and infos[b].floating:
            if info.stacked and np.shape(leaves[b])[:1] != np.shape(leaves[k])[:1]:
                raise ValueError(f"stacked kernel {info.path!r} and its bias need "
                                 "the same leading (block) axis")
            bias_of[k] = b
    chosen = set(eligible)
    logged = [k for k, i in enumerate(infos) if k not in chosen
              and i.floating and i.slice_shape and _size(i.slice_shape) >= 2]
    return _Plan(eligible, logged, bias_of)


def _per_slice(v: jax.Array, x: jax.Array, stacked: bool) -> jax.Array:
    """Broadcasts a per-leaf (or per-slice, shape ``(L,)``) value against ``x``."""
    return v.reshape((-1,) + (1,) * (x.ndim - 1)) if stacked else v


def _moments(x: jax.Array, stacked: bool):
    """Mean and Bessel-corrected std in the statistics dtype."""
    x32 = _numerics.upcast(x)
    axes = tuple(range(1, x.ndim)) if stacked else None
    return jnp.mean(x32, axis=axes), jnp.std(x32, axis=axes, ddof=1)


def _target_l(cfg: _Config, info: _paths.Leaf, x: jax.Array) -> jax.Array:
    dtype = _numerics.stat_dtype(x)
    target = jnp.asarray(cfg.target, dtype)
    if not cfg.scale_with_depth:
        return target
    depths = info.depths(x.shape[0] if info.stacked else None)
    depths = depths if info.stacked else depths[0]
    return target / jnp.sqrt(jnp.asarray(depths, dtype))


class _LeafStats(NamedTuple):
    mean: jax.Array
    std: jax.Array
    ratio: jax.Array
    rescale: jax.Array  # bool: the threshold rule selects this matrix
    target: jax.Array


def _leaf_stats(cfg: _Config, info: _paths.Leaf, x: jax.Array) -> _LeafStats:
    mean, std = _moments(x, info.stacked)
    target = _target_l(cfg, info, x)
    ratio = std / target
    rescale = ratio > cfg.threshold
    if cfg.mode == "two_sided":
        rescale = rescale | ((std > 0) & (std < target / cfg.threshold))
    return _LeafStats(mean, std, ratio, rescale, target)


def _rescale_leaf(info, x, s: _LeafStats) -> jax.Array:
    x32 = _numerics.upcast(x)
    mean = _per_slice(s.mean, x, info.stacked)
    scale = _per_slice(_numerics.safe_div(s.target, s.std), x, info.stacked)
    new = ((x32 - mean) * scale + mean).astype(x.dtype)
    return jnp.where(_per_slice(s.rescale, x, info.stacked), new, x)


def _rescale(infos, plan: _Plan, touched: dict[int, jax.Array],
             stats: dict[int, _LeafStats]) -> dict[int, jax.Array]:
    out = dict(touched)
    for k in plan.eligible:
        out[k] = _rescale_leaf(infos[k], touched[k], stats[k])
    for k, b in plan.bias_of.items():
        fired = _per_slice(stats[k].rescale, out[b], infos[k].stacked)
        out[b] = jnp.where(fired, jnp.zeros_like(out[b]), out[b])
    return out


def _apply(params, step, cfg: _Config, with_stats: bool):
    infos, leaves, treedef = _paths.describe(params, cfg.block_re, cfg.stacked_re,
                                             cfg.mask)
    plan = _plan(cfg, infos, leaves)
    fire = _fires(step, cfg)
    keys = sorted(set(plan.eligible) | set(plan.bias_of.values()))
    touched = {k: leaves[k] for k in keys}

    def compute_stats(ops):
        return {k: _leaf_stats(cfg, infos[k], ops[k]) for k in plan.eligible}

    stats = compute_stats(touched) if with_stats else None

    def rescale(ops):
        return _rescale(infos, plan, ops,
                        stats if stats is not None else compute_stats(ops))

    if isinstance(fire, bool):  # static step: branch in Python
        new = rescale(touched) if fire else None
    else:
        new = jax.lax.cond(fire, rescale, lambda ops: ops, touched)
    if new is None:
        params_out = params  # bit-identical: nothing was touched
    else:
        out = list(leaves)
        for k, v in new.items():
            out[k] = v
        params_out = jax.tree_util.tree_unflatten(treedef, out)
    if not with_stats:
        return params_out, None
    return params_out, _metrics(infos, leaves, plan, stats, fire)


def _emit(out: dict, info: _paths.Leaf, name: str, value: jax.Array) -> None:
    value = jnp.asarray(value).astype(jnp.float32)
    if info.stacked:
        for i in range(value.shape[0]):
            out[f"tvr/{info.path}/{i}/{name}"] = value[i]
    else:
        out[f"tvr/{info.path}/{name}"] = value


def _metrics(infos, leaves, plan: _Plan, stats, fire) -> dict[str, jax.Array]:
    fire = jnp.asarray(fire)
    out = {"tvr/check": fire.astype(jnp.float32)}
    n_fired = jnp.zeros((), jnp.float32)
    for k in plan.eligible:
        s, info = stats[k], infos[k]
        fired = fire & s.rescale
        n_fired = n_fired + jnp.sum(fired.astype(jnp.float32))
        for name, v in (("std", s.std), ("mean", s.mean), ("ratio", s.ratio),
                        ("fired", fired)):
            _emit(out, info, name, v)
    for k in plan.logged:
        mean, std = _moments(leaves[k], infos[k].stacked)
        _emit(out, infos[k], "std", std)
        _emit(out, infos[k], "mean", mean)
    out["tvr/num_fired"] = n_fired
    return out


_ARGS_DOC = r"""
    Args:
        params: A params pytree (e.g. a pure dict of a flax NNX model).
        step: Completed optimizer steps, a Python int or an integer array
            (traced inside ``jit``: one compilation serves every step).
        target: σ_target, positive. Default 0.01 as in the paper and README
            (the reference code's default is 0.02).
        interval: Check every ``interval`` steps, an integer >= 1 (reference
            ``step_interval``, default 50).
        threshold: τ > 0, the reference's ``ratio_threshold`` (default 1.2, the
            code's value; the paper's plots suggest ≈ 1.0 was used).
        scale_with_depth: Use σ_target/√l in block l (hurts in the paper's
            ablation: HellaSwag 0.506 vs 0.554).
        mode: ``"one_sided"`` (reference: only shrink) or ``"two_sided"``
            (lab extension: also lift 0 < σ < σ_t/τ).
        anchor: ``"absolute"`` (fire at multiples of ``interval``; exact
            resume) or ``"resume"`` (reference: fire ``interval`` steps after
            ``resume_step``).
        resume_step: The step the current run (re)started from, used only with
            ``anchor="resume"`` (None means 0); an int >= 0 or an integer
            array. Ignored with ``anchor="absolute"``.
        block_pattern: Regex searched in each "/"-joined leaf path; its first
            group is the 0-based block index (l = index + 1). The default
            matches ``layers_3`` (linen) and ``layers/3`` (NNX lists).
        stacked_pattern: Regex for scanned layers: a matching leaf holds all
            blocks on its leading axis (slice i is block l = i + 1) and gets
            statistics and a rescale decision per slice.
        mask: Overrides which leaves are eligible: a pytree of Python bools
            with the structure of ``params`` (or a prefix), or a callable
            ``params -> such pytree``. Default: the 2-D floating leaves inside
            blocks. Leaves with fewer than 2 entries (per slice) never are.
"""


def tvr(params: Any, step: Any, *, target: float = 0.01, interval: int = 50,
        threshold: float = 1.2, scale_with_depth: bool = False,
        mode: str = "one_sided", anchor: str = "absolute",
        resume_step: Any = None,
        block_pattern: str = _paths.DEFAULT_BLOCK_PATTERN,
        stacked_pattern: str | None = None, mask: Any = None) -> Any:
    cfg = _check(target, interval, threshold, scale_with_depth, mode, anchor,
                 resume_step, block_pattern, stacked_pattern, mask)
    return _apply(params, step, cfg, with_stats=False)[0]


tvr.__doc__ = r"""Applies Target-Variance Rescaling at check steps.

    Pure and jittable: on a check step (see ``anchor``) every eligible matrix
    with :math:`\sigma/\sigma_t(l) > \tau` becomes
    :math:`(W - \mu)\,\sigma_t(l)/\sigma + \mu` (its sibling ``bias`` 0);
    otherwise the parameters are returned bit-identical. A traced ``step``
    goes through ``lax.cond``; the statistics are computed only inside the
    firing branch.
""" + _ARGS_DOC + r"""
    Returns:
        The params pytree, same structure and dtypes.

    Raises:
        ValueError: an argument out of range (named in the message), or no
            eligible leaf (without a ``mask``), checked before compiling.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from optim_lab import tvr
        >>> w = 0.05 * jax.random.normal(jax.random.key(0), (64, 64))
        >>> params = {"layers_0": {"attn": {"kernel": w}}}
        >>> out = tvr(params, 50)            # check step, std 0.05 > 1.2 * 0.01
        >>> round(float(jnp.std(out["layers_0"]["attn"]["kernel"], ddof=1)), 6)
        0.01
        >>> bool(jnp.all(tvr(params, 49)["layers_0"]["attn"]["kernel"] == w))
        True
        >>> step_fn = jax.jit(lambda p, s: tvr(p, s, interval=10))
        >>> [float(jnp.std(step_fn(params, s)["layers_0"]["attn"]["kernel"],
        ...                ddof=1)) < 0.011 for s in (0, 5, 10)]
        [False, False, True]

    References:
        Owen, Kumar, Roy Chowdhury, Güra, `Variance Control via Weight
        Rescaling in LLM Pre-training <https://arxiv.org/abs/2503.17500>`_,
        2025; reference code ``bluorion-com/weight_rescaling``
        (``callbacks/tvr.py``, ``TVRCallback``).

    .. warning::
        One-sided TVR **never scales a matrix up** when ``threshold >= 1``:
        with init 0.006 and target 0.01 it does nothing until the std passes
        ``threshold * target``. A ``threshold < 1`` does scale up matrices
        with σ in (τ·σ_target, σ_target). With ``threshold = 1.0`` a just
        rescaled matrix can sit one rounding above the target, so a second
        call may rescale it again (a change of a few ulp).

    .. warning::
        A fused q/k/v kernel gets one std for three matrices (as in the
        reference); split it or use a ``mask`` to change that. Only the
        sibling named ``bias`` of a leaf named ``kernel`` is zeroed. Optimizer
        moments keep their pre-rescale scale (as in the reference).
"""


def tvr_with_stats(params: Any, step: Any, *, target: float = 0.01,
                   interval: int = 50, threshold: float = 1.2,
                   scale_with_depth: bool = False, mode: str = "one_sided",
                   anchor: str = "absolute", resume_step: Any = None,
                   block_pattern: str = _paths.DEFAULT_BLOCK_PATTERN,
                   stacked_pattern: str | None = None, mask: Any = None
                   ) -> tuple[Any, dict[str, jax.Array]]:
    cfg = _check(target, interval, threshold, scale_with_depth, mode, anchor,
                 resume_step, block_pattern, stacked_pattern, mask)
    return _apply(params, step, cfg, with_stats=True)


tvr_with_stats.__doc__ = r"""TVR plus its per-leaf diagnostics, for logging.

    Same arguments and result as :func:`tvr`, plus a flat dict of float32
    scalars computed on every call from the **pre-rescale** parameters (the
    reference logs ``ori_std``):

    * per eligible leaf: ``tvr/<path>/std`` (ddof = 1), ``tvr/<path>/mean``,
      ``tvr/<path>/ratio`` (std / σ_t(l)) and ``tvr/<path>/fired`` (1 when
      rescaled by this call);
    * per other floating leaf with >= 2 entries (embedding, head, norms,
      biases: logged, never rescaled): ``tvr/<path>/std``, ``tvr/<path>/mean``;
    * ``tvr/check`` (1 on a check step) and ``tvr/num_fired``.

    Stacked leaves emit one entry per block slice: ``tvr/<path>/<i>/std``.
""" + _ARGS_DOC + r"""
    Returns:
        ``(params, stats)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from optim_lab import tvr_with_stats
        >>> params = {"layers_0": {"mlp": {"kernel": jnp.full((2, 2), 1.0).at[0, 0].set(0.0)}},
        ...           "norm": {"scale": jnp.ones(4)}}
        >>> _, stats = tvr_with_stats(params, 50)
        >>> sorted(stats)  # doctest: +NORMALIZE_WHITESPACE
        ['tvr/check', 'tvr/layers_0/mlp/kernel/fired', 'tvr/layers_0/mlp/kernel/mean',
         'tvr/layers_0/mlp/kernel/ratio', 'tvr/layers_0/mlp/kernel/std',
         'tvr/norm/scale/mean', 'tvr/norm/scale/std', 'tvr/num_fired']
        >>> float(stats["tvr/layers_0/mlp/kernel/std"]), float(stats["tvr/num_fired"])
        (0.5, 1.0)

    .. warning::
        The statistics cost one pass over every floating leaf on **every**
        call; use :func:`tvr` in steps whose metrics are not logged.
"""


def make_tvr_post_step(*, with_stats: bool = False, **kwargs
                       ) -> Callable[[Any, Any], Any]:
    """A validated ``fn(params, step) -> params`` running :func:`tvr`.

    The keyword arguments are those of :func:`tvr`; they are checked here,
    eagerly, so a bad setting fails before any step is compiled. The result is
    what the training step's ``post_step`` list expects; it is traced once
    (``step`` is an array inside the jitted step). With ``with_stats=True`` it
    returns ``(params, stats)`` as :func:`tvr_with_stats` does.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from optim_lab import make_tvr_post_step
        >>> post = make_tvr_post_step(target=0.02, interval=5)
        >>> params = {"layers_0": {"kernel": 0.1 * jnp.eye(8)}}
        >>> out = jax.jit(post)(params, jnp.int32(5))
        >>> round(float(jnp.std(out["layers_0"]["kernel"], ddof=1)), 6)
        0.02
        >>> make_tvr_post_step(interval=0)
        Traceback (most recent call last):
        ...
        ValueError: interval must be an integer >= 1, got 0
    """
    _validation.check_choice("with_stats", with_stats, (False, True))
    cfg = _check(**kwargs)

    def post_step(params, step):
        new, stats = _apply(params, step, cfg, with_stats)
        return (new, stats) if with_stats else new

    return post_step
