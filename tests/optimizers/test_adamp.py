"""AdamP / SGDP: golden parity with ``adamp==0.3.0`` and the edge cases of the
AdamP spec (zero weights, zero gradients, vectors, flax layout, stacked layers).

Goldens come from ``tests/golden/gen_adamp.py`` (torch layout); here every
kernel is transposed to flax layout and the transforms run with their default
``AdamPDims()`` (``channel_axis=-1``). The gradient streams are recomputed from
the JAX weights with the generator's own (numpy-only) functions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim_lab.optimizers import adamp as adamp_lib
from optim_lab.optimizers.adamp import AdamPDims

import gen_adamp
import goldens
from tolerances import F32
from tolerances import assert_close
from tolerances import ulp

# torch layout -> flax layout: Linear (out, in) -> (in, out);
# Conv2d (out, in, kh, kw) -> (kh, kw, in, out).
_PERM = {2: (1, 0), 4: (2, 3, 1, 0)}


def to_flax(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, _PERM[x.ndim]) if x.ndim in _PERM else x


def to_torch(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, np.argsort(_PERM[x.ndim])) if x.ndim in _PERM else x


def _factory(file: str):
    return adamp_lib.adamp if file == "adamp" else adamp_lib.sgdp


@functools.lru_cache(maxsize=None)
def _stepper(file: str, config_items: tuple):
    config = dict(config_items)
    lr = config.pop("lr")
    tx = _factory(file)(lr, **config)

    @jax.jit
    def step(params, state, grads):
        branches = jnp.stack([
            adamp_lib.projection(params[k], grads[k], grads[k]).branch
            for k in gen_adamp.KERNELS])
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, branches

    return tx, step


def run_jax(file: str, config: dict, kind: str, steps: int = gen_adamp.STEPS,
            dtype=np.float32, recorded=tuple(gen_adamp.RECORDED)):
    """Params (torch layout) after ``recorded`` steps and per-step branches."""
    tx, step = _stepper(file, tuple(sorted(config.items())))
    params = {k: jnp.asarray(to_flax(v))
              for k, v in gen_adamp.initial_params(dtype).items()}
    state = tx.init(params)
    rng = np.random.default_rng(gen_adamp.GRAD_SEED)
    snaps, branches = {}, []
    for t in range(steps):
        current = {k: to_torch(v) for k, v in jax.device_get(params).items()}
        grads = jax.device_put({k: to_flax(g) for k, g in
                                gen_adamp.gradients(kind, current, rng, dtype).items()})
        params, state, b = step(params, state, grads)
        branches.append(b)
        if t + 1 in recorded:
            snaps[t + 1] = {k: to_torch(v) for k, v in jax.device_get(params).items()}
    return snaps, np.stack(jax.device_get(branches))


def assert_close_to_reference(actual, desired, step: int, msg: str) -> None:
    """The AdamP spec's parity tolerances (one step ``rtol=1e-6, atol=1e-7``;
    200 steps ``rtol=1e-5, atol=1e-6``) plus a float32 rounding budget for long
    runs, in eps.

    One step: 8 float32 eps (``rtol=1e-6``) element-wise, absolute below
    |p| = 0.1 (``atol=1e-7``). After ``step`` steps: ``92 + step / 2``
    eps of the tensor's scale (max |desired|, i.e. normwise): 84 eps (1e-5) +
    8 (one step), and half an eps per step for each side. Why: decay is a tiny
    multiplicative step (``lr·wd·r`` = 1e-5 in the ``zero`` stream) that
    float32 quantises to whole ulps every step, differently in torch
    (``p *= float32(1 - lr·wd·r)``) and here (``p - lr·wd·r·p``); the
    reference itself is 2.5e-5 (|p| ≈ 3.9) from a float64 run after 200
    steps, this port 1.8e-5.
    """
    if step == 1:
        assert_close(actual, desired, ulps=8, scale=0.1, dtype=F32, err_msg=msg)
    else:
        assert_close(actual, desired, ulps=92 + step / 2, dtype=F32, err_msg=msg)


_CASES = [(file, cname, kind)
          for file, (_, configs) in gen_adamp.FILES.items()
          for cname in configs for kind in gen_adamp.STREAMS]


@functools.lru_cache(maxsize=None)
def _golden(file):
    return goldens.load(file)


@pytest.mark.parametrize("file,cname,kind", _CASES)
def test_matches_reference_goldens(file, cname, kind):
    arrays, meta = _golden(file)
    assert meta["versions"]["adamp"] == "0.3.0"
    snaps, branches = run_jax(file, meta["configs"][cname], kind)
    np.testing.assert_array_equal(branches, arrays[f"branch/{cname}/{kind}"],
                                  err_msg="per-step branch decisions differ")
    for i, s in enumerate(arrays["recorded_steps"]):
        for k in gen_adamp.SHAPES:
            assert_close_to_reference(snaps[int(s)][k],
                                      arrays[f"params/{cname}/{kind}/{k}"][i],
                                      int(s), f"{k} after step {s}")


_CASES64 = [(file, cname, kind)
            for file, (_, configs) in gen_adamp.FILES.items()
            for cname in configs if cname in gen_adamp.FLOAT64_CONFIGS
            for kind in gen_adamp.STREAMS]


@pytest.mark.parametrize("file,cname,kind", _CASES64)
def test_matches_reference_goldens_float64(file, cname, kind):
    """Exact algorithm parity: float64 on both sides over 200 steps."""
    arrays, meta = _golden(file)
    with jax.enable_x64(True):
        snaps, branches = run_jax(file, meta["configs"][cname], kind,
                                  dtype=np.float64, recorded=(gen_adamp.STEPS,))
    np.testing.assert_array_equal(branches, arrays[f"branch64/{cname}/{kind}"])
    for k in gen_adamp.SHAPES:
        got = snaps[gen_adamp.STEPS][k]
        assert got.dtype == np.float64
        # 4.5e5 float64 eps (1e-10) relative, absolute below |p| = 0.01
        assert_close(got, arrays[f"params64/{cname}/{kind}/{k}"], ulps=4.5e5,
                     scale=0.01, err_msg=k)


def test_goldens_hit_every_branch():
    """The streams exercise none / channel / layer as the parity recipe needs:
    Gaussian gradients never project the kernels, channel-orthogonal and zero
    gradients take the channel branch, the layer-only stream the layer branch."""
    arrays, _ = _golden("adamp")
    b = {kind: arrays[f"branch/nesterov0_wd0/{kind}"] for kind in gen_adamp.STREAMS}
    conv, lin, lin_si, zero_k = range(4)
    assert (b["none"][:, [conv, lin]] == 0).all()
    assert (b["channel"] == 1).all() and (b["zero"] == 1).all()
    assert (b["layer"][:, [conv, lin]] == 2).all()
    assert (b["none"][:, lin_si] == 1).all()
    assert b["none"][0, zero_k] == 1 and (b["none"][1:, zero_k] == 0).all()


# --- the projection itself ---------------------------------------------------

def _layer_only_grad(p_torch, seed=0):
    rng = np.random.default_rng(seed)
    g = gen_adamp._layer_only(p_torch, rng.standard_normal(p_torch.shape[0]),
                              rng.standard_normal(p_torch.shape))
    return g.reshape(p_torch.shape).astype(np.float32)


def test_layer_only_gradient_returns_wd_ratio_through_layer_branch():
    p = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    g = _layer_only_grad(p)
    u = np.random.default_rng(1).standard_normal(p.shape).astype(np.float32)
    out = adamp_lib.projection(jnp.asarray(p), jnp.asarray(g), jnp.asarray(u),
                               AdamPDims(channel_axis=0), wd_ratio=0.1)
    assert int(out.branch) == adamp_lib.BRANCH_LAYER
    np.testing.assert_array_equal(np.asarray(out.ratio).ravel(), np.float32([0.1]))
    # the whole-tensor radial component is gone, per-row ones are not: a
    # float32 dot of 512 terms is exact to 512 eps |u||p| (Higham's γ_n)
    assert abs(float(jnp.vdot(out.update, p))) < (
        ulp(F32, 840) * np.linalg.norm(u) * np.linalg.norm(p))
    assert np.abs(np.sum(np.asarray(out.update) * p, axis=1)).max() > 1e-2


def test_radial_gradient_never_projects_and_pure_gaussian_sometimes_does():
    rng = np.random.default_rng(0)
    p = rng.standard_normal((16, 32)).astype(np.float32)
    proj = jax.jit(jax.vmap(lambda g: adamp_lib.projection(
        jnp.asarray(p), g, g, AdamPDims(channel_axis=0)).branch))
    noise = rng.standard_normal((2000, 16, 32)).astype(np.float32)
    radial = np.stack([gen_adamp._radial(p, n).reshape(p.shape) for n in noise[:200]])
    assert (np.asarray(proj(jnp.asarray(radial, jnp.float32))) == 0).all()
    # Gaussian: never the channel branch, but the layer view fires with
    # probability P(|N(0,1)| < 0.1) = 0.080 (the threshold argument, |cos| ≈
    # 1/sqrt(dim) >> delta/sqrt(dim) for random directions, holds per row only).
    b = np.asarray(proj(jnp.asarray(noise)))
    assert not (b == 1).any()
    assert 0.06 < (b == 2).mean() < 0.10


def test_flax_layout_matches_torch_layout_with_channel_axis_0():
    rng = np.random.default_rng(3)
    for shape in [(16, 32), (8, 4, 3, 3)]:
        p = rng.standard_normal(shape).astype(np.float32)
        g = gen_adamp._channel_orthogonal(p, rng.standard_normal(shape)).reshape(shape)
        g = g.astype(np.float32)
        u = rng.standard_normal(shape).astype(np.float32)
        torch_out = adamp_lib.projection(*map(jnp.asarray, (p, g, u)),
                                         AdamPDims(channel_axis=0))
        flax_out = adamp_lib.projection(*map(jnp.asarray, map(to_flax, (p, g, u))))
        assert int(torch_out.branch) == int(flax_out.branch) == adamp_lib.BRANCH_CHANNEL
        # same math, another reduction order: 8 eps of the tensor's scale
        assert_close(to_torch(np.asarray(flax_out.update)),
                     np.asarray(torch_out.update), ulps=8)
        # the wrong axis (torch-style 0 on a flax kernel) degrades to the layer branch
        wrong = adamp_lib.projection(*map(jnp.asarray, map(to_flax, (p, g, u))),
                                     AdamPDims(channel_axis=0))
        assert int(wrong.branch) == adamp_lib.BRANCH_LAYER


def _one_step(tx, params, grads):
    return tx.update(grads, tx.init(params), params)[0]


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_vectors_never_projected_and_mask_override():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((6, 5)), jnp.float32),
              "b": jnp.asarray(rng.standard_normal(5), jnp.float32)}
    grads = {"w": jnp.zeros((6, 5)), "b": jnp.zeros(5)}  # zero grad: test fires
    sgd_like = dict(weight_decay=1.0)
    out = _one_step(adamp_lib.scale_by_sgdp(**sgd_like), params, grads)
    tol = dict(ulps=8, scale=0)  # products, no cancellation: element-wise
    assert_close(out["b"], params["b"], **tol)        # r = 1
    assert_close(out["w"], 0.1 * params["w"], **tol)  # r = 0.1
    off = AdamPDims(project=False)
    for dims in (off, {"w": off, "b": None}, lambda p: jax.tree.map(lambda _: off, p)):
        out = _one_step(adamp_lib.scale_by_sgdp(dims=dims, **sgd_like), params, grads)
        assert_close(out["w"], params["w"], **tol)
    out = _one_step(adamp_lib.scale_by_sgdp(dims=AdamPDims(project=True), **sgd_like),
                    params, grads)
    assert_close(out["b"], 0.1 * params["b"], **tol)


def test_zero_weights_no_nan_projection_noop_and_wd_ratio():
    params = {"w": jnp.zeros((4, 3))}
    g = {"w": jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)), jnp.float32)}
    proj = adamp_lib.projection(params["w"], g["w"], g["w"])
    assert int(proj.branch) == adamp_lib.BRANCH_CHANNEL
    np.testing.assert_array_equal(proj.update, g["w"])
    np.testing.assert_array_equal(np.asarray(proj.ratio), np.float32(0.1))
    for fn, kw in ((adamp_lib.adamp, dict(learning_rate=1e-2, weight_decay=1e-2)),
                   (adamp_lib.sgdp, dict(learning_rate=0.1, momentum=0.9))):
        out = _one_step(fn(**kw), params, g)["w"]
        plain = _one_step(fn(dims=AdamPDims(project=False), **kw), params, g)["w"]
        assert np.isfinite(np.asarray(out)).all()
        np.testing.assert_array_equal(out, plain)
    # the Adam update of a zero tensor equals unprojected Adam (optax's
    # float32 ``1 - 0.999**t`` is 1.3e-5 off at t = 1, hence 84 eps = 1e-5)
    assert_close(_one_step(adamp_lib.adamp(1e-2), params, g)["w"],
                 _one_step(optax.adam(1e-2), params, g)["w"], ulps=84, scale=0)


def test_zero_gradient_projects_with_wd_ratio():
    w = jnp.asarray(np.random.default_rng(0).standard_normal((5, 4)), jnp.float32)
    out = _one_step(adamp_lib.scale_by_adamp(weight_decay=1.0), w, jnp.zeros_like(w))
    assert_close(out, 0.1 * w, ulps=8, scale=0)


def _channel_stream_buffers(project_momentum_buffer, nesterov):
    tx = adamp_lib.scale_by_sgdp(momentum=0.9, nesterov=nesterov,
                                 project_momentum_buffer=project_momentum_buffer)
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
    state = tx.init(w)
    for _ in range(3):
        g = gen_adamp._channel_orthogonal(to_torch(np.asarray(w)),
                                          rng.standard_normal((5, 6)))
        g = jnp.asarray(to_flax(g), jnp.float32)
        u, state = tx.update(g, state, w)
        w = w - 0.5 * u
    return w, state.trace


def test_sgdp_momentum_buffer_quirk():
    w_q, buf_q = _channel_stream_buffers(True, False)
    w_p, buf_p = _channel_stream_buffers(False, False)
    assert float(jnp.max(jnp.abs(w_q - w_p))) > 1e-3
    assert float(jnp.max(jnp.abs(buf_q - buf_p))) > 1e-3
    for a, b in zip(_channel_stream_buffers(True, True), _channel_stream_buffers(False, True)):
        np.testing.assert_array_equal(a, b)


def test_sgdp_quirk_stores_projected_buffer():
    w = jnp.asarray([[1.0, 0.0], [0.0, 2.0]])
    g = jnp.asarray([[0.0, 1.0], [1.0, 0.0]])  # per-channel orthogonal
    tx = adamp_lib.scale_by_sgdp(momentum=0.9, project_momentum_buffer=True)
    state = tx.init(w)
    _, state = tx.update(g, state, w)
    w2 = jnp.asarray([[0.6, 0.8], [0.8, 0.6]])
    u, state = tx.update(jnp.asarray([[0.8, -0.6], [-0.6, 0.8]]), state, w2)
    # per-channel orthogonal up to rounding of O(1) terms
    assert_close(jnp.sum(state.trace * w2, axis=0), 0.0, ulps=8, scale=1.0)
    np.testing.assert_array_equal(u, state.trace)  # the same array by construction


def test_bf16_params_keep_dtype_and_match_f32():
    rng = np.random.default_rng(0)
    w32 = jnp.asarray(rng.standard_normal((8, 16)), jnp.float32)
    g32 = jnp.asarray(gen_adamp._channel_orthogonal(to_torch(np.asarray(w32)),
                                                    rng.standard_normal((16, 8))).T,
                      jnp.float32)
    for tx in (adamp_lib.adamp(1e-2, weight_decay=1e-2), adamp_lib.sgdp(0.1, momentum=0.9)):
        u16 = _one_step(tx, w32.astype(jnp.bfloat16), g32.astype(jnp.bfloat16))
        u32 = _one_step(tx, w32, g32)
        assert u16.dtype == jnp.bfloat16
        # bf16 inputs and output: 6 bf16 eps (0.05) relative, absolute below
        # |u| = 0.04 (2e-3)
        assert_close(u16, u32, ulps=6, dtype=jnp.bfloat16, scale=0.04)


def test_stack_axes_equals_per_layer_runs():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((3, 6, 5)), jnp.float32)
    g = np.asarray(rng.standard_normal((3, 6, 5)), np.float32)
    g[1] = to_flax(gen_adamp._channel_orthogonal(to_torch(np.asarray(w[1])),
                                                 g[1].T).astype(np.float32))
    g = jnp.asarray(g)
    tx = adamp_lib.adamp(1e-2, weight_decay=1e-2, dims=AdamPDims(stack_axes=1))
    stacked = _one_step(tx, w, g)
    single = adamp_lib.adamp(1e-2, weight_decay=1e-2)
    for i in range(3):
        assert_close(stacked[i], _one_step(single, w[i], g[i]), ulps=8)
    branches = adamp_lib.projection(w, g, g, AdamPDims(stack_axes=1)).branch
    np.testing.assert_array_equal(branches, [0, 1, 0])


def test_output_is_rule_plus_decay_and_alias_is_chain():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
    rule = _one_step(adamp_lib.scale_by_adamp(weight_decay=0.5), w, g)
    no_wd = _one_step(adamp_lib.scale_by_adamp(), w, g)
    tol = dict(ulps=8)  # sums can cancel: normwise
    assert_close(rule, no_wd + 0.5 * w, **tol)
    assert_close(_one_step(adamp_lib.adamp(0.3, weight_decay=0.5), w, g), -0.3 * rule,
                 **tol)
    g = g + w  # |cos| ≈ 0.7: not projected, r = 1
    srule = _one_step(adamp_lib.scale_by_sgdp(momentum=0.5, weight_decay=0.5), w, g)
    assert_close(srule, g + 0.5 / (1 - 0.5) * w, **tol)
    sgdp_alias = _one_step(adamp_lib.sgdp(0.3, momentum=0.5, weight_decay=0.5), w, g)
    assert_close(sgdp_alias, -0.3 * srule, **tol)


def test_params_none_raises():
    for tx in (adamp_lib.adamp(1e-3), adamp_lib.sgdp(0.1)):
        with pytest.raises(ValueError, match="parameters"):
            tx.update(jnp.ones((2, 2)), tx.init(jnp.ones((2, 2))))


@pytest.mark.parametrize("fn,kwargs,name", [
    (adamp_lib.adamp, dict(learning_rate=-1.0), "learning_rate"),
    (adamp_lib.adamp, dict(learning_rate=1e-3, b1=1.0), "b1"),
    (adamp_lib.adamp, dict(learning_rate=1e-3, b2=-0.1), "b2"),
    (adamp_lib.adamp, dict(learning_rate=1e-3, eps=0.0), "eps"),
    (adamp_lib.adamp, dict(learning_rate=1e-3, weight_decay=-1e-2), "weight_decay"),
    (adamp_lib.adamp, dict(learning_rate=1e-3, delta=0.0), "delta"),
    (adamp_lib.adamp, dict(learning_rate=1e-3, wd_ratio=-0.1), "wd_ratio"),
    (adamp_lib.sgdp, dict(learning_rate=0.1, momentum=1.0), "momentum"),
    (adamp_lib.sgdp, dict(learning_rate=0.1, dampening=1.5), "dampening"),
    (adamp_lib.sgdp, dict(learning_rate=0.0), "learning_rate"),
])
def test_invalid_hyperparameters(fn, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fn(**kwargs)


def test_bad_channel_axis_raises():
    tx = adamp_lib.adamp(1e-3, dims=AdamPDims(channel_axis=2))
    with pytest.raises(ValueError, match=r"dims.channel_axis must be in \[-2, 2\)"):
        tx.update(jnp.ones((2, 2)), tx.init(jnp.ones((2, 2))), jnp.ones((2, 2)))


@pytest.mark.parametrize("dims,error,match", [
    (0, TypeError, "dims must be an AdamPDims"),
    ({"w": -1}, TypeError, "got a leaf -1"),
    (AdamPDims(channel_axis=0.0), TypeError, "dims.channel_axis must be an int"),
    (AdamPDims(stack_axes=-1), ValueError, "dims.stack_axes must be an int >= 0"),
    (AdamPDims(project=1), TypeError, "dims.project must be None, True or False"),
])
def test_invalid_dims_raise_at_construction(dims, error, match):
    for fn in (adamp_lib.adamp, adamp_lib.sgdp):
        with pytest.raises(error, match=match):
            fn(1e-3, dims=dims)


def test_invalid_dims_from_a_callable_raise_at_update():
    tx = adamp_lib.adamp(1e-3, dims=lambda p: {"w": 0})
    params = {"w": jnp.ones((2, 2))}
    with pytest.raises(TypeError, match="dims must be an AdamPDims"):
        tx.update(params, tx.init(params), params)


def test_dims_forms_agree():
    """One spec, a prefix pytree with None = default, and a callable: the same
    per-leaf decisions (torch-layout ``w``, default ``b``)."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((6, 5)), jnp.float32),
              "b": {"v": jnp.asarray(rng.standard_normal(5), jnp.float32)}}
    grads = jax.tree.map(lambda x: 0.1 * x[::-1], params)
    torch = AdamPDims(channel_axis=0)
    forms = [{"w": torch, "b": None}, {"w": torch, "b": {"v": AdamPDims()}},
             lambda p: {"w": torch, "b": None}]
    outs = [_one_step(adamp_lib.scale_by_adamp(weight_decay=0.5, dims=d), params, grads)
            for d in forms]
    for out in outs[1:]:
        _assert_trees_equal(out, outs[0])
    resolved = adamp_lib.resolve_dims(forms[0], params)
    assert resolved == {"w": torch, "b": {"v": AdamPDims()}}
    # a spec for every leaf is the same as the default where it is the default
    _assert_trees_equal(
        _one_step(adamp_lib.scale_by_adamp(dims=AdamPDims()), params, grads),
        _one_step(adamp_lib.scale_by_adamp(), params, grads))


def test_dims_stay_static_under_inject_hyperparams():
    """An AdamPDims (or a pytree of them) is not a number: inject_hyperparams
    keeps it static, so no ``static_args`` are needed; a callable ``dims`` must
    be listed in ``static_args``."""
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((3, 6, 5)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((3, 6, 5)), jnp.float32)
    for dims, static in ((AdamPDims(stack_axes=1), ()),
                         (lambda p: AdamPDims(stack_axes=1), ("dims",))):
        tx = optax.inject_hyperparams(adamp_lib.adamp, static_args=static)(
            learning_rate=1e-2, weight_decay=1e-2, dims=dims)
        plain = adamp_lib.adamp(1e-2, weight_decay=1e-2, dims=AdamPDims(stack_axes=1))
        got = jax.jit(tx.update)(g, tx.init(w), w)[0]
        # traced b1, b2 form 1 - b in float32 (Python floats: in float64)
        assert_close(got, _one_step(plain, w, g), ulps=84)


# --- live comparison against the installed reference ------------------------

@pytest.mark.parity
@pytest.mark.parametrize("file", list(gen_adamp.FILES))
def test_live_reference(file):
    pytest.importorskip("torch")
    pytest.importorskip("adamp")
    cls_name, configs = gen_adamp.FILES[file]
    for cname, config in configs.items():
        for kind in gen_adamp.STREAMS:
            ref, ref_branches = gen_adamp.run_reference(cls_name, config, kind)
            snaps, branches = run_jax(file, config, kind)
            np.testing.assert_array_equal(branches, ref_branches)
            for k in gen_adamp.SHAPES:
                assert_close_to_reference(snaps[gen_adamp.STEPS][k], ref[k][-1],
                                          gen_adamp.STEPS, f"{cname}/{kind}/{k}")
