"""FAdam: golden parity with pytorch-optimizer 4.1.0, the Adam identity, edge cases, API."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim_lab import fadam
from optim_lab import scale_by_fadam
from optim_lab.optimizers import fadam as fadam_lib

import gen_fadam
import goldens
from tolerances import F32
from tolerances import assert_close

KEYS = tuple(gen_fadam.SHAPES)


def make_tx(config):
    return fadam(config["lr"], b1=0.9, b2=0.999, eps=1e-8, eps_2=0.01,
                 p=config["p"], clip=config["clip"],
                 weight_decay=config["weight_decay"])


def _step_fn(tx):
    @jax.jit
    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state
    return step


def jax_trajectory(tx, dtype=np.float32, steps=gen_fadam.STEPS,
                   zero_steps=gen_fadam.ZERO_STEPS):
    """Parameters after every step (dicts of numpy arrays, torch layout)."""
    params0, grads = gen_fadam.streams(zero_steps=zero_steps)
    params = {k: jnp.asarray(v, dtype) for k, v in params0.items()}
    state, step = tx.init(params), _step_fn(tx)
    out = []
    for t in range(steps):
        params, state = step(params, state, {k: jnp.asarray(grads[k][t], dtype)
                                             for k in KEYS})
        out.append(jax.device_get(params))
    return out


@pytest.fixture(scope="module", params=list(gen_fadam.CONFIGS))
def golden(request):
    arrays, meta = goldens.load(f"fadam_{request.param}")
    assert meta["versions"]["pytorch-optimizer"] == "4.1.0"
    assert meta["config"] == gen_fadam.CONFIGS[request.param]
    return request.param, arrays, meta


def test_trajectory_matches_pytorch_optimizer_410_float32(golden):
    """Step 1 within 4 eps of |θ_1| + |θ_0| (one float32 step: rounding of
    θ plus a few eps of the small update); steps 2..300 within the multi-step
    budget of 84 eps (≈ 1e-5) of |θ| + 0.1 (rtol 1e-5, atol 1e-6)."""
    name, arrays, _ = golden
    traj = jax_trajectory(make_tx(gen_fadam.CONFIGS[name]))
    params0, _ = gen_fadam.streams()
    for i, step in enumerate(arrays["recorded_steps"]):
        for k in KEYS:
            got = traj[step - 1][k]
            assert np.all(np.isfinite(got)), (name, k, step)
            tol = (dict(ulps=4, scale=np.abs(params0[k])) if step == 1
                   else dict(ulps=84, scale=0.1))
            assert_close(got, arrays[f"traj/{k}"][i], **tol,
                         err_msg=f"{name} {k} step {step}")


def test_trajectory_matches_pytorch_optimizer_410_float64(golden):
    """Algorithmic exactness: float64 on both sides agrees to 4500 float64 eps
    (1e-12) relative, compared absolutely below |θ| = 1."""
    name, arrays, _ = golden
    with jax.enable_x64(True):
        traj = jax_trajectory(make_tx(gen_fadam.CONFIGS[name]), dtype=np.float64)
    for i, step in enumerate(arrays["recorded64_steps"]):
        for k in KEYS:
            assert_close(traj[step - 1][k], arrays[f"traj64/{k}"][i], ulps=4500,
                         scale=1.0, err_msg=f"{name} {k} step {step}")


def test_single_steps_from_reference_state(golden):
    """One float32 step from the reference (param, momentum, fim).

    θ within 4 eps of |θ_t| + |θ_{t-1}| (the 1-ulp rounding of θ + Δ may
    differ between CPUs); momentum within 8 eps of |m| + its tensor's max
    (a lerp: entries can cancel); the Fisher (a sum of non-negative terms)
    within 8 eps element-wise.
    """
    name, arrays, _ = golden
    tx = make_tx(gen_fadam.CONFIGS[name])
    step_fn = _step_fn(tx)
    _, grads = gen_fadam.streams()
    steps = list(arrays["state_steps"])
    checked = 0
    for j, t in enumerate(steps):
        if t - 1 not in steps:
            continue
        i = steps.index(t - 1)
        get = lambda f, idx: {k: jnp.asarray(arrays[f"state/{f}/{k}"][idx])  # noqa: E731
                              for k in KEYS}
        inner = fadam_lib.ScaleByFAdamState(
            count=jnp.asarray(t - 1, jnp.int32), mu=get("momentum", i),
            fim=get("fim", i))
        state = (inner, tx.init(get("param", i))[1])
        params, state = step_fn(get("param", i), state,
                                {k: jnp.asarray(grads[k][t - 1]) for k in KEYS})
        for k in KEYS:
            msg = f"{name} {k} step {t}"
            assert_close(params[k], arrays[f"state/param/{k}"][j], ulps=4,
                         scale=np.abs(arrays[f"state/param/{k}"][i]), err_msg=msg)
            assert_close(state[0].mu[k], arrays[f"state/momentum/{k}"][j], ulps=8,
                         err_msg=msg)
            assert_close(state[0].fim[k], arrays[f"state/fim/{k}"][j], ulps=8,
                         scale=0, err_msg=msg)
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("form", ["max1", "min1"])
def test_older_eps_modes_match_lessw2020_ports(form):
    """``scaled_by_max1`` / ``scaled_by_min1`` vs lessw2020 HEAD / v3-era, clip = 1.

    The port's float32 step tensor perturbs its beta2_hat by ~1e-5 relative,
    hence a looser bound than against pytorch-optimizer 4.1.0: 9 float32 eps
    (1.1e-6) absolute at |θ| <= 1, relative above.
    """
    arrays, meta = goldens.load("fadam_lessw2020")
    assert meta["nan_on_zero_gradient_at_step_1"] == {"max1": False, "min1": True}
    tx = fadam(1e-3, weight_decay=0.1, clip=1.0, p=0.5, eps=1e-8,
               eps_mode={"max1": "scaled_by_max1", "min1": "scaled_by_min1"}[form])
    traj = jax_trajectory(tx, zero_steps=tuple(meta["zero_gradient_steps"][form]))
    for i, step in enumerate(arrays["recorded_steps"]):
        for k in KEYS:
            assert_close(traj[step - 1][k], arrays[f"traj_{form}/{k}"][i], ulps=9,
                         scale=1.0, err_msg=f"{form} {k} {step}")


def test_stream_exercises_both_eps_branches():
    arrays, _ = goldens.load("fadam_default")
    branch = arrays["scaled_branch"].astype(bool)
    _, grads = gen_fadam.streams()
    ours = np.array([[bool(fadam_lib._numerics.rms(jnp.asarray(grads[k][t])) * 0.01 < 1e-8)
                      and np.any(grads[k][t] != 0) for k in KEYS]
                     for t in range(gen_fadam.STEPS)])
    np.testing.assert_array_equal(ours, branch)
    assert 0.25 < branch.mean() < 0.75  # both branches fire on many steps
    assert not branch[[t - 1 for t in gen_fadam.ZERO_STEPS]].any()  # RMS = 0 fallback


def _adam_v_hat(grads, b2, steps):
    """Adam's bias-corrected second moment in float64 numpy."""
    v, out = 0.0, []
    for t in range(1, steps + 1):
        v = b2 * v + (1 - b2) * grads[t - 1].astype(np.float64) ** 2
        out.append(v / (1 - b2 ** t))
    return out


@pytest.mark.parametrize("x64", [True, False])
def test_fim_equals_adam_bias_corrected_second_moment(x64):
    _, grads = gen_fadam.streams(steps=120)
    g = grads["linear"] + 1e-3 * np.sign(grads["linear"])  # no zero steps
    dtype = np.float64 if x64 else np.float32
    want = _adam_v_hat(g, 0.999, 120)
    with jax.enable_x64(x64):
        tx = scale_by_fadam()
        params = jnp.ones(g.shape[1:], dtype)
        state = tx.init(params)
        update = jax.jit(tx.update)
        for t in range(120):
            _, state = update(jnp.asarray(g[t], dtype), state, params)
            if t == 0:  # beta2_hat = 0 at t = 1: f_1 = g^2 exactly
                np.testing.assert_array_equal(state.fim, jnp.square(jnp.asarray(g[0], dtype)))
            # f >= 0 (no cancellation): element-wise; 450 float64 eps (1e-13),
            # or in float32 8 eps plus 1/8 eps per step of accumulated
            # rounding of the recursion (measured: ~t/10)
            assert_close(state.fim, want[t], ulps=450 if x64 else 8 + t / 8, scale=0)
    b2h, omb2h = fadam_lib.debiased_b2(0.999, jnp.asarray(1))
    assert float(b2h) == 0.0 and float(omb2h) == 1.0


@pytest.mark.parametrize("eps_mode", fadam_lib.EPS_MODES)
@pytest.mark.parametrize("p", [0.5, 0.25])
def test_zero_gradient_at_step_1_is_finite(eps_mode, p):
    """f = 0 and g = 0: D = eps^(2p) (or eps), gn = 0, decay = wd*c*theta/RMS(theta)."""
    theta = jnp.array([[1.0, -2.0], [3.0, 0.5]])
    tx = scale_by_fadam(p=p, clip=0.7, weight_decay=0.1, eps_mode=eps_mode)
    out, state = tx.update(jnp.zeros_like(theta), tx.init(theta), theta)
    assert np.all(np.isfinite(out)) and np.all(state.mu == 0)
    rms = np.sqrt(np.mean(np.square(theta)))
    assert_close(out, 0.1 * 0.7 * theta / rms, ulps=8, scale=0)


def test_zero_gradient_at_step_50_and_zero_weights():
    theta = {"w": jnp.linspace(-1.0, 1.0, 6), "z": jnp.zeros(3)}
    tx = fadam(1e-2)
    state = tx.init(theta)
    for t in range(1, 51):
        g = jax.tree.map(lambda x: jnp.zeros_like(x) if t == 50 else jnp.ones_like(x) * 0.1,
                         theta)
        updates, state = tx.update(g, state, theta)
        assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
    # theta = 0: wn = 0, so the update is the momentum alone
    assert_close(updates["z"], -1e-2 * state[0].mu["z"], ulps=4, scale=0)


def test_clip_uses_max_rms_over_c_and_1():
    """c = 0.5: a natural gradient with RMS < c is not rescaled (4.1.0 form)."""
    g = jnp.zeros(8).at[0].set(1.0)  # gn = [1, 0, ...], RMS = 0.354 < 0.5
    tx = scale_by_fadam(clip=0.5, weight_decay=0.0)
    out, _ = tx.update(g, tx.init(g), jnp.zeros(8))
    assert_close(out[0], 0.1, ulps=8)  # (1 - b1) * 1, not 0.2
    g = jnp.ones(8)  # gn RMS = 1 > c: clipped to RMS 0.5
    out, _ = tx.update(g, tx.init(g), jnp.zeros(8))
    assert_close(fadam_lib._numerics.rms(out), 0.1 * 0.5, ulps=8)


def test_adaptive_eps_forms():
    rms = jnp.asarray(2e-7)  # eps_2 * rms = 2e-9 < eps
    eps = fadam_lib.adaptive_eps
    tol = dict(ulps=8)  # a few float32 roundings (and a power) of one scalar
    assert_close(eps(rms, 1e-8, 0.01, 0.5, "min_scaled"), 2e-9, **tol)
    assert_close(eps(rms, 1e-8, 0.01, 0.25, "min_scaled"), np.sqrt(2e-9), **tol)
    assert_close(eps(jnp.asarray(1.0), 1e-8, 0.01, 0.25, "min_scaled"),
                 1e-4, **tol)  # eps^(2p)
    assert_close(eps(jnp.asarray(0.0), 1e-8, 0.01, 0.25, "min_scaled"),
                 1e-4, **tol)  # RMS = 0 fallback
    assert_close(eps(rms, 1e-8, 0.01, 0.5, "scaled_by_min1"), 2e-15, **tol)
    assert_close(eps(jnp.asarray(3.0), 1e-8, 0.01, 0.5, "scaled_by_min1"), 1e-8, **tol)
    assert_close(eps(rms, 1e-8, 0.01, 0.5, "scaled_by_max1"), 1e-8, **tol)
    assert_close(eps(jnp.asarray(3.0), 1e-8, 0.01, 0.5, "scaled_by_max1"), 3e-8, **tol)
    # scaled_by_min1 keeps the port's e = 0 at RMS(g) = 0 when f > 0 everywhere
    zero = jnp.asarray(0.0)
    assert float(eps(zero, 1e-8, 0.01, 0.5, "scaled_by_min1", jnp.ones(3))) == 0.0
    assert float(eps(zero, 1e-8, 0.01, 0.5, "scaled_by_min1", jnp.zeros(3))) == np.float32(1e-8)


def test_statistics_are_per_leaf():
    a, b = jnp.linspace(-1.0, 1.0, 6), 1e-3 * jnp.linspace(0.5, 2.0, 4)
    theta = {"a": a + 1.0, "b": b * 100}
    tx = scale_by_fadam(clip=0.3)
    both, _ = tx.update({"a": a, "b": b}, tx.init(theta), theta)
    for k, g in (("a", a), ("b", b)):
        alone, _ = tx.update(g, tx.init(theta[k]), theta[k])
        np.testing.assert_array_equal(both[k], alone)


def test_bf16_params_keep_float32_statistics():
    theta = jnp.linspace(-1.0, 1.0, 8, dtype=jnp.bfloat16)
    g = (theta * 0.01).astype(jnp.bfloat16)
    tx = fadam(1e-2)
    state = tx.init(theta)
    updates, state = tx.update(g, state, theta)
    assert updates.dtype == jnp.bfloat16
    assert state[0].mu.dtype == jnp.float32 and state[0].fim.dtype == jnp.float32
    ref = scale_by_fadam()
    out32, _ = ref.update(g.astype(jnp.float32), ref.init(theta.astype(jnp.float32)),
                          theta.astype(jnp.float32))
    # the only difference is the final rounding to bf16: half a bf16 eps
    assert_close(updates, -1e-2 * out32, ulps=2, dtype=jnp.bfloat16, scale=0)


def test_state_dtypes_are_honoured():
    tx = scale_by_fadam(mu_dtype=jnp.bfloat16, fim_dtype=jnp.float16)
    theta = jnp.ones(4)
    state = tx.init(theta)
    _, state = tx.update(jnp.full(4, 0.5), state, theta)
    assert state.mu.dtype == jnp.bfloat16 and state.fim.dtype == jnp.float16
    assert state.count.dtype == jnp.int32


def test_jit_does_not_recompile_and_wrappers_work():
    theta = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    g = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), theta)
    tx = fadam(1e-2)
    update = jax.jit(tx.update)
    state = tx.init(theta)
    _, state = update(g, state, theta)
    _, state = update(g, state, theta)
    assert update._cache_size() == 1
    # inject_hyperparams with traced hyperparameters reproduces the plain transform
    inj = optax.inject_hyperparams(fadam)(learning_rate=1e-2, b1=0.9, b2=0.999,
                                          clip=0.5, weight_decay=0.05)
    plain = fadam(1e-2, clip=0.5, weight_decay=0.05)
    si, sp = inj.init(theta), plain.init(theta)
    for _ in range(3):
        ui, si = jax.jit(inj.update)(g, si, theta)
        up, sp = plain.update(g, sp, theta)
    for k in theta:  # traced b2 forms 1 - b2 in float32: ~1e-5 relative
        assert_close(ui[k], up[k], ulps=84, err_msg=k)
    # masked: unmasked leaves pass through, masked leaves get FAdam
    masked = optax.masked(fadam(1e-2), {"w": True, "b": False})
    out, _ = masked.update(g, masked.init(theta), theta)
    np.testing.assert_array_equal(out["b"], g["b"])
    # MultiSteps: no update until k micro-steps accumulated
    ms = optax.MultiSteps(fadam(1e-2), every_k_schedule=2)
    sms = ms.init(theta)
    out, sms = ms.update(g, sms, theta)
    assert all(np.all(x == 0) for x in jax.tree.leaves(out))
    out, sms = ms.update(g, sms, theta)
    assert any(np.any(x != 0) for x in jax.tree.leaves(out))


def test_smoke_recipe_loss_decreases():
    """pytorch-optimizer's smoke recipe: lr 1.0, wd 1e-3, 5 iterations."""
    def loss(w):
        return jnp.sum((w - jnp.array([0.5, -1.5])) ** 2)
    w = jnp.array([3.0, 2.0])
    tx = fadam(1.0, weight_decay=1e-3)
    state = tx.init(w)
    start = loss(w)
    for _ in range(5):
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        w = optax.apply_updates(w, updates)
    assert loss(w) < start


def test_validation_errors():
    with pytest.raises(ValueError, match="params"):
        scale_by_fadam().update(jnp.ones(2), scale_by_fadam().init(jnp.ones(2)))
    for kw, name in [({"b1": 1.0}, "b1"), ({"b2": -0.1}, "b2"), ({"clip": 0.0}, "clip"),
                     ({"p": 0.0}, "p"), ({"eps": -1.0}, "eps"), ({"eps_2": -1.0}, "eps_2"),
                     ({"weight_decay": -0.1}, "weight_decay")]:
        with pytest.raises(ValueError, match=name):
            fadam(1e-3, **kw)
    with pytest.raises(ValueError, match="learning_rate"):
        fadam(-1.0)
    with pytest.raises(ValueError, match="min_scaled.*scaled_by_min1.*scaled_by_max1"):
        scale_by_fadam(eps_mode="paper")


# --------------------------------------------------------------------------- live


def _live_compare(config, *, foreach, maximize, steps=60):
    ref = gen_fadam.run_reference(config, foreach=foreach, maximize=maximize, steps=steps)
    tx = make_tx(config)
    if maximize:
        tx = optax.chain(optax.scale(-1.0), tx)
    traj = jax_trajectory(tx, steps=steps)
    for t in range(steps):
        for k in KEYS:  # the trajectory budget of the float32 golden test
            assert_close(traj[t][k], ref["param"][k][t], ulps=84, scale=0.1,
                         dtype=F32, err_msg=f"{k} step {t + 1}")


@pytest.mark.parity
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", ["default", "clip05_p025"])
def test_live_parity_pytorch_optimizer(name, foreach):
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_optimizer")
    _live_compare(gen_fadam.CONFIGS[name], foreach=foreach, maximize=False)


@pytest.mark.parity
def test_live_parity_maximize_is_negated_chain():
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_optimizer")
    _live_compare(gen_fadam.CONFIGS["clip05"], foreach=False, maximize=True)
