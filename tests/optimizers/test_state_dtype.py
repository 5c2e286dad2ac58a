"""with_state_dtype: equals the inner optimizer run in float64, fixes the
flush-to-zero hazard, keeps parameter dtypes, composes with jit / chain /
value= / inject_hyperparams, and refuses float64 without x64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim_lab import alr_smag
from optim_lab import orthograd
from optim_lab import with_state_dtype

import problems

X64 = jax.enable_x64
F32_EPS = float(jnp.finfo(jnp.float32).eps)


def _grad_stream(steps, seed=0):
    """float32 gradients whose scales span 1e-22 .. 1 (tiny ones included)."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-22, 0, size=(steps, 1))
    return {"w": (rng.normal(size=(steps, 8)) * scale).astype(np.float32),
            "b": rng.normal(size=(steps, 3)).astype(np.float32)}


F64_EPS = float(np.finfo(np.float64).eps)


def _leaves_close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0)


def test_equals_inner_run_in_float64():
    """Adam's state depends only on the gradients, so with the same (float32)
    gradient stream the wrapped state equals an all-float64 run and every
    update is that run's update rounded to float32. The two are different XLA
    programs (the cast is fused into the update, so FMA contraction may differ),
    hence a few float64 ulp on the state rather than bit equality; the moving
    averages contract, so that gap does not grow with the step count."""
    steps = 300
    grads = _grad_stream(steps)
    inner = optax.adam(1e-2, b2=0.99, eps=1e-25)
    with X64(True):
        params32 = {"w": jnp.ones(8, jnp.float32), "b": jnp.zeros(3, jnp.float32)}
        params64 = jax.tree.map(lambda x: x.astype(jnp.float64), params32)
        tx = with_state_dtype(inner, jnp.float64)
        s, s_ref = tx.init(params32), inner.init(params64)
        _leaves_close(s, s_ref, 0)
        step, step_ref = jax.jit(tx.update), jax.jit(inner.update)
        for t in range(steps):
            g = {k: jnp.asarray(v[t]) for k, v in grads.items()}
            u, s = step(g, s, params32)
            u_ref, s_ref = step_ref(jax.tree.map(lambda x: x.astype(jnp.float64), g),
                                    s_ref, params64)
            _leaves_close(u, jax.tree.map(lambda x: x.astype(jnp.float32), u_ref),
                          4 * F32_EPS)
            _leaves_close(s, s_ref, 8 * F64_EPS)
        assert s[0].count.dtype == jnp.int32 and int(s[0].count) == steps


def test_end_to_end_tracks_float64_run():
    """AdamW (weight decay reads the params) on the quadratic: float32 params
    with float64 state follow the all-float64 run. The only difference is the
    float32 rounding of params (<= 0.5 ulp per step); Adam's per-coordinate
    normalisation keeps the propagated error of that order, so after 200 steps
    the gap must stay below 200 ulp of 1 (the solution's scale)."""
    loss, p0, sol = problems.quadratic()
    inner = optax.adamw(5e-2, b2=0.99, eps=1e-25, weight_decay=0.1)
    steps = 200
    with X64(True):
        def run(tx, params):
            state = tx.init(params)

            @jax.jit
            def step(params, state):
                g = jax.grad(loss)(params)
                u, state = tx.update(g, state, params)
                return optax.apply_updates(params, u), state
            for _ in range(steps):
                params, state = step(params, state)
            return params
        p32 = run(with_state_dtype(inner, jnp.float64), p0)
        p64 = run(inner, jax.tree.map(lambda x: x.astype(jnp.float64), p0))
    assert p32["x"].dtype == jnp.float32
    p32, p64 = np.asarray(p32["x"]), np.asarray(p64["x"])
    np.testing.assert_allclose(p32, p64, rtol=0, atol=steps * F32_EPS)
    # ... and both moved far from the start (the test can fail).
    assert np.max(np.abs(p64 - np.asarray(sol["x"]))) < 0.2


@pytest.mark.parametrize("g", [1e-20, 1e-21])
def test_subnormal_hazard_float32_vs_float64_state(g):
    """eps = 1e-25, |g| = 1e-20 / 1e-21: float32 state flushes (1-b2) g^2 to 0
    and the step is lr |g| / eps (1e5 / 1e4 lr); float64 state keeps v and the
    step is lr / (1 + eps / |g|) ~= lr, as exact arithmetic (and torch) give."""
    lr = 1e-3
    adam = optax.adam(lr, b1=0.9, b2=0.999, eps=1e-25)
    params, grads = jnp.ones(4, jnp.float32), jnp.full(4, g, jnp.float32)
    u32, s32 = jax.jit(adam.update)(grads, adam.init(params), params)
    assert float(jnp.max(s32[0].nu)) == 0.0  # flushed to zero
    np.testing.assert_allclose(u32, -lr * float(np.float32(g)) / 1e-25, rtol=1e-5)
    with X64(True):
        tx = with_state_dtype(adam, jnp.float64)
        s = tx.init(params)
        for _ in range(3):
            u64, s = jax.jit(tx.update)(grads, s, params)
        assert u64.dtype == jnp.float32 and s[0].nu.dtype == jnp.float64
        assert float(s[0].nu[0]) > 0.0
        np.testing.assert_allclose(u64, -lr / (1 + 1e-25 / float(np.float32(g))),
                                   rtol=8 * F32_EPS)


def _mixed_params():
    return {"f32": jnp.linspace(-1, 1, 6, dtype=jnp.float32),
            "bf16": jnp.linspace(-1, 1, 4).astype(jnp.bfloat16),
            "f16": jnp.linspace(-1, 1, 3).astype(jnp.float16),
            "step": jnp.zeros((), jnp.int32)}


@pytest.mark.parametrize("state_dtype", ["float32", "float64"])
def test_update_dtypes_follow_params(state_dtype):
    dtype = jnp.dtype(state_dtype)
    with X64(True):
        params = _mixed_params()
        floats = {k: v for k, v in params.items() if k != "step"}
        tx = with_state_dtype(optax.adam(1e-2), dtype)
        state = tx.init(floats)
        grads = jax.tree.map(lambda p: (0.5 * p + 0.1).astype(p.dtype), floats)
        u, state = jax.jit(tx.update)(grads, state, floats)
        assert {k: v.dtype for k, v in u.items()} == {k: v.dtype for k, v in floats.items()}
        assert all(x.dtype == dtype for x in jax.tree.leaves((state[0].mu, state[0].nu)))
        # Without params the updates follow the gradients' dtypes.
        u2, _ = tx.update(grads, state)
        assert {k: v.dtype for k, v in u2.items()} == {k: v.dtype for k, v in grads.items()}
        # Non-float leaves pass through the cast untouched.
        tx_sgd = with_state_dtype(optax.sgd(0.1, momentum=0.9), dtype)
        s_sgd = tx_sgd.init(params)
        assert s_sgd[0].trace["step"].dtype == jnp.int32


def test_bf16_params_float32_state_equals_float32_run():
    """No x64 needed for float32 state; the bf16 update is the float32 run's
    update rounded to bf16."""
    params = jnp.linspace(-1, 1, 5).astype(jnp.bfloat16)
    grads = jnp.array([1e-3, -2.0, 0.5, 0.0, 3.0], jnp.bfloat16)
    inner = optax.adam(1e-2)
    tx = with_state_dtype(inner, jnp.float32)
    u, s = tx.update(grads, tx.init(params), params)
    u_ref, _ = inner.update(grads.astype(jnp.float32),
                            inner.init(params.astype(jnp.float32)))
    assert u.dtype == jnp.bfloat16 and s[0].mu.dtype == jnp.float32
    np.testing.assert_array_equal(u, u_ref.astype(jnp.bfloat16))


def test_jit_compiles_once():
    traces = []
    with X64(True):
        tx = with_state_dtype(optax.adam(1e-2, eps=1e-25), jnp.float64)
        params = jnp.ones(3, jnp.float32)

        @jax.jit
        def step(params, state, g):
            traces.append(1)
            u, state = tx.update(g, state, params)
            return optax.apply_updates(params, u), state
        state = tx.init(params)
        for t in range(3):
            params, state = step(params, state, jnp.full(3, 0.1 * (t + 1), jnp.float32))
    assert len(traces) == 1 and params.dtype == jnp.float32


def test_in_chain_and_wrapping_chain():
    """Inside a chain (after orthograd) and around a whole chain, both equal
    the float64 run of the same chain, rounded to float32."""
    rng = np.random.default_rng(1)
    p32 = {"w": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)}
    g32 = {"w": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)}
    with X64(True):
        p64, g64 = (jax.tree.map(lambda x: x.astype(jnp.float64), t) for t in (p32, g32))
        ref = optax.chain(orthograd(), optax.adamw(1e-2, eps=1e-25))
        u_ref, _ = ref.update(g64, ref.init(p64), p64)
        want = u_ref["w"].astype(jnp.float32)
        outer = with_state_dtype(ref, jnp.float64)
        u, _ = outer.update(g32, outer.init(p32), p32)
        np.testing.assert_array_equal(u["w"], want)
        # orthograd itself in float32, then Adam in float64: the projected
        # gradient differs from the float64 one by float32 rounding only.
        inside = optax.chain(orthograd(), with_state_dtype(optax.adamw(1e-2, eps=1e-25),
                                                           jnp.float64))
        u2, s2 = inside.update(g32, inside.init(p32), p32)
        assert u2["w"].dtype == jnp.float32 and s2[1][0].mu["w"].dtype == jnp.float64
        # Adam's first step is lr * g / |g| per coordinate, insensitive to rounding.
        np.testing.assert_allclose(u2["w"], want, rtol=4 * F32_EPS)


def test_value_forwarded_to_polyak():
    """alr_smag needs value=; the wrapper forwards it (directly and in a chain)
    and equals alr_smag run on float64 inputs."""
    loss, p0, _ = problems.quadratic()
    with X64(True):
        inner = alr_smag(learning_rate=1.0, beta=0.9)
        tx = with_state_dtype(inner, jnp.float64)
        chained = optax.chain(with_state_dtype(inner, jnp.float64))
        p64 = jax.tree.map(lambda x: x.astype(jnp.float64), p0)
        s, s_c, s_ref = tx.init(p0), chained.init(p0), inner.init(p64)
        assert s.tau.dtype == jnp.float64
        params, params_ref = p0, p64
        for _ in range(5):
            v, g = jax.value_and_grad(loss)(params)
            u, s = jax.jit(tx.update)(g, s, params, value=v)
            u_c, s_c = chained.update(g, s_c, params, value=v)
            v_ref, g_ref = jax.value_and_grad(loss)(params_ref)
            u_ref, s_ref = inner.update(g_ref, s_ref, params_ref, value=v_ref)
            np.testing.assert_array_equal(u["x"], u_c["x"])
            np.testing.assert_allclose(u["x"], u_ref["x"], rtol=16 * F32_EPS)
            params = optax.apply_updates(params, u)
            params_ref = optax.apply_updates(params_ref, u_ref)
        assert params["x"].dtype == jnp.float32 and float(s.tau) > 0
        with pytest.raises(TypeError):
            tx.update(g, s, params)


def test_inject_hyperparams_stored_in_state_dtype():
    """Injected float hyperparameters follow the (cast) params: float64, so
    eps = 1e-25 is exact; changing them between steps takes effect and keeps
    their dtype (no recompile); the count stays int32."""
    inner = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2, eps=1e-25)
    params = jnp.ones(3, jnp.float32)
    grads = jnp.array([1e-20, 1.0, -2.0], jnp.float32)
    traces = []
    with X64(True):
        tx = with_state_dtype(inner, jnp.float64)
        state = tx.init(params)
        hp = state.hyperparams
        assert hp["learning_rate"].dtype == hp["eps"].dtype == jnp.float64
        assert float(hp["eps"]) == 1e-25 and state.count.dtype == jnp.int32

        @jax.jit
        def update(g, s, p):
            traces.append(1)
            return tx.update(g, s, p)
        u1, state = update(grads, state, params)
        ratio = np.array([1 / (1 + 1e-25 / float(np.float32(1e-20))), 1, -1])
        np.testing.assert_allclose(u1, -1e-2 * ratio, rtol=4 * F32_EPS)
        state.hyperparams["learning_rate"] = jnp.asarray(0.5, jnp.float64)
        u2, state = update(grads, state, params)
        assert len(traces) == 1
        assert state.hyperparams["learning_rate"].dtype == jnp.float64
        # Step 2 with the same gradient: m_hat / sqrt(v_hat) is still +-1.
        np.testing.assert_allclose(u2, -0.5 * ratio, rtol=4 * F32_EPS)
    # Without the wrapper (float32 params), the same hyperparameters are float32.
    assert inner.init(params).hyperparams["eps"].dtype == jnp.float32


def test_float64_without_x64_is_a_clear_error():
    assert not jax.config.jax_enable_x64
    with pytest.raises(ValueError, match=r"dtype=float64 needs 64-bit JAX"):
        with_state_dtype(optax.adam(1e-2), jnp.float64)
    with X64(True):
        tx = with_state_dtype(optax.adam(1e-2), jnp.float64)
    with pytest.raises(ValueError, match=r"dtype=float64"):
        tx.init(jnp.ones(2))  # x64 is off again: refuse before tracing


@pytest.mark.parametrize("bad", [jnp.int32, "bool", "not-a-dtype"])
def test_non_float_dtype_rejected(bad):
    with pytest.raises(ValueError, match="dtype must be a floating-point dtype"):
        with_state_dtype(optax.adam(1e-2), bad)
