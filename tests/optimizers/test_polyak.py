"""ALR-SMAG / ALR-HB: step-back goldens, float64 NumPy oracles, edge cases, API.

The oracles below transcribe the update rules of the Polyak-momentum spec
(ALR-SMAG: the moving-averaged-gradient form with Schaipp's decoupled decay;
ALR-HB: the heavy-ball form derived from the same bound) in float64 NumPy,
independent of the JAX code. All trajectories replay the minibatch
least-squares stream stored in ``tests/golden/polyak_alr_smag.npz`` (see
``tests/golden/gen_polyak.py``).
"""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim_lab import alr_hb
from optim_lab import alr_smag
from optim_lab.optimizers import polyak
from optim_lab.training.minimise import minimise

import gen_polyak
import goldens
from tolerances import F32
from tolerances import F64
from tolerances import assert_close

SPLIT = gen_polyak.SPLIT
CONVERGENT = ("lr1_b09_c1", "lr05_b09_c1_wd", "lr10_b05_c05", "lr10_b09_c05")


@pytest.fixture(scope="module")
def golden():
    arrays, meta = goldens.load("polyak_alr_smag")
    assert meta["reference"].startswith("fabian-sp/step-back@74b8843")
    assert meta["versions"]["torch"].startswith("2.13.0")
    assert meta["configs"] == gen_polyak.CONFIGS
    return arrays


# ----------------------------------------------------------------- oracles


def _ls_loss_grad(a, b, rows, x):
    """Minibatch ½·mean squared residual and its gradient (float64)."""
    r = a[rows] @ x - b[rows]
    return 0.5 * np.mean(r ** 2), a[rows].T @ r / len(rows)


def oracle_alr_smag(a, b, idx, *, lr, beta=0.9, c=1.0, lb=0.0, weight_decay=0.0,
                    variant="sps", steps=None):
    """ALR-SMAG in float64.

    d ← βd + g; τ = min(lr_k, (f−lb)/(c‖d‖²)); x ← (1−λτ)x − τd.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x, d = np.zeros(a.shape[1]), np.zeros(a.shape[1])
    xs, taus, t1s, losses = [], [], [], []
    for k in range(steps or len(idx)):
        loss, g = _ls_loss_grad(a, b, idx[k], x)
        losses.append(loss)
        d = beta * d + g
        gap = loss - lb
        if variant != "sps":
            gap = max(gap, 0.0)
        n2 = float(d @ d)
        cap = lr(k) if callable(lr) else lr
        t1 = gap / (c * n2) if n2 > 0 else 0.0
        tau = min(cap, t1) if n2 > 0 else 0.0
        x = (1 - weight_decay * tau) * x - tau * d
        xs.append(x.copy()), taus.append(tau), t1s.append(t1)
    return np.array(xs), np.array(taus), np.array(t1s), np.array(losses)


def oracle_alr_hb(a, b, idx, *, lr, beta=0.9, c=1.0, lb=0.0, steps=None):
    """ALR-HB in float64.

    α = min([f−lb+β⟨g,Δ⟩]₊/(c‖g‖²), lr); x ← x − αg + βΔ.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x, delta = np.zeros(a.shape[1]), np.zeros(a.shape[1])
    xs, alphas = [], []
    for k in range(steps or len(idx)):
        loss, g = _ls_loss_grad(a, b, idx[k], x)
        n2 = float(g @ g)
        alpha = min(max(loss - lb + beta * float(g @ delta), 0.0) / (c * n2), lr)
        delta = -alpha * g + beta * delta
        x = x + delta
        xs.append(x.copy()), alphas.append(alpha)
    return np.array(xs), np.array(alphas)


# ------------------------------------------------------------- JAX runner


def jax_run(tx, a, b, idx, dtype=jnp.float32, steps=None):
    """Replays the stream with params {"a": x[:6], "b": x[6:]} (two leaves)."""
    a, b = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    idx = jnp.asarray(idx[:steps] if steps else idx)

    def loss_fn(p, rows):
        x = jnp.concatenate([p["a"], p["b"]])
        return 0.5 * jnp.mean((a[rows] @ x - b[rows]) ** 2)

    def record(p, s):
        return jnp.concatenate([p["a"], p["b"]]), s.tau, getattr(s, "t1", s.tau)

    p0 = {"a": jnp.zeros(SPLIT, dtype), "b": jnp.zeros(a.shape[1] - SPLIT, dtype)}
    out = jax.jit(lambda p: minimise(tx, loss_fn, p, batches=idx, record=record))(p0)
    return tuple(np.asarray(r) for r in out.records)


def smag_from(config, **kw):
    cfg = dict(config)
    return alr_smag(cfg.pop("lr"), **cfg, **kw)


# ------------------------------------------------------------ golden parity


@pytest.mark.parametrize("name", CONVERGENT)
def test_alr_smag_matches_step_back_golden(golden, name):
    """200 float32 steps vs AlrSmag (74b8843): params within the trajectory
    budget (``f32_trajectory``: 84 eps ≈ 1e-5 of |x| + 0.1, plus 1 eps per step).

    τ and t1 are ratios of two float32 quantities that lose relative precision
    as the loss falls (the residual cancels: ~1e-5 relative at loss 1e-4), and
    torch and XLA sum the matmul in different orders. So τ and t1 are held to
    84 eps (1e-5) while the reference loss is above 1e-2, to 42 000 eps (5e-3)
    while it is above 1e-6, and not compared below (rounding noise over
    rounding noise); see ``F32_LEVELS``.
    """
    xs, taus, t1s = jax_run(smag_from(gen_polyak.CONFIGS[name]), golden["A"],
                            golden["b"], golden["idx"])
    assert_close(xs, golden[f"{name}/params"], **f32_trajectory(len(xs)))
    loss = golden[f"{name}/loss"]
    for got, key in ((taus, "tau"), (t1s, "t1")):
        _assert_steps_close(got, golden[f"{name}/{key}"], loss, F32_LEVELS)


def test_alr_smag_divergent_c02_matches_first_10_steps(golden):
    name = "lr10_b09_c02"
    xs, taus, _ = jax_run(smag_from(gen_polyak.CONFIGS[name]), golden["A"],
                          golden["b"], golden["idx"], steps=10)
    assert_close(xs, golden[f"{name}/params"][:10], **f32_trajectory(10))
    assert_close(taus, golden[f"{name}/tau"][:10], ulps=84, scale=0)
    assert not np.isfinite(golden[f"{name}/loss"][-1])  # it really diverges


def _assert_steps_close(got, ref, loss, levels, dtype=None):
    """``levels``: ((loss threshold, ulps), ...) applied where loss > threshold.

    Step sizes are positive ratios (no cancellation in the comparison), so the
    bound is element-wise relative.
    """
    for threshold, ulps in levels:
        live = loss > threshold
        assert live[:15].all()
        assert_close(got[live], ref[live], ulps=ulps, scale=0, dtype=dtype)


def f32_trajectory(steps: int) -> dict:
    """float32 trajectory budget: 84 eps (1e-5) of |x| + 0.1 (atol 1e-6), plus
    one eps per step (half an eps of rounding per step on each side).

    The growth matters for the cap-10, c = 0.5 run, whose large steps make
    transient spikes of ~70 eps late in the run (step 180), and for the
    diverging c = 0.2 run, which amplifies rounding step by step.
    """
    return dict(ulps=84 + np.arange(1, steps + 1)[:, None], scale=0.1, dtype=F32)


# float64 oracles: 4.5e6 float64 eps (1e-9) relative, absolute below 1e-3 (1e-12)
F64_TRAJECTORY = dict(ulps=4.5e6, scale=1e-3, dtype=F64)
F32_LEVELS = ((1e-2, 84), (1e-6, 42_000))  # 1e-5, 5e-3: see the golden test
# The residual r = Ax - b carries ~eps·|A||x| of rounding, so τ ∝ |r|² carries
# a relative error ≈ C·eps/sqrt(loss) (measured C <= 11 in float64 here): 1e-9
# (4.5e6 float64 eps) holds with a 10x margin while loss > 1e-10, and is
# reached by the noise itself at loss ≈ 1e-12, so smaller losses are not compared.
F64_LEVELS = ((1e-10, 4.5e6),)


def test_golden_matches_float64_oracle(golden):
    """The oracle agrees with the torch reference (float32) on a convergent config."""
    xs, taus, _, loss = oracle_alr_smag(golden["A"], golden["b"], golden["idx"],
                                        lr=1.0, beta=0.9, c=1.0)
    assert_close(golden["lr1_b09_c1/params"], xs, **f32_trajectory(len(xs)))
    _assert_steps_close(golden["lr1_b09_c1/tau"], taus, loss, F32_LEVELS, F32)


# ------------------------------------------------------------- float64 oracles

ORACLE_CONFIGS = [
    dict(lr=1.0, beta=0.9, c=1.0),
    dict(lr=0.5, beta=0.9, c=1.0, weight_decay=1e-3),
    dict(lr=0.5, beta=0.9, c=1.0, weight_decay=0.05),
    dict(lr=10.0, beta=0.5, c=0.5),
    dict(lr=10.0, beta=0.99, c=2.0),
    dict(lr=1.0, beta=0.9, c=1.0, lb=0.05, variant="sps"),
    dict(lr=1.0, beta=0.9, c=1.0, lb=0.05, variant="sps+"),
]


@pytest.mark.parametrize("cfg", ORACLE_CONFIGS, ids=str)
def test_alr_smag_matches_float64_oracle(golden, cfg):
    """200 steps under x64: params, τ and t1 at 4.5e6 float64 eps (1e-9);
    τ and t1 while loss > 1e-10."""
    cfg = dict(cfg)
    lb = cfg.pop("lb", 0.0)
    xs, taus, t1s, loss = oracle_alr_smag(golden["A"], golden["b"], golden["idx"],
                                          lb=lb, **cfg)
    with jax.enable_x64(True):
        got = jax_run(alr_smag(cfg.pop("lr"), lower_bound=lb, **cfg), golden["A"],
                      golden["b"], golden["idx"], dtype=jnp.float64)
    assert_close(got[0], xs, **F64_TRAJECTORY)
    _assert_steps_close(got[1], taus, loss, F64_LEVELS)
    _assert_steps_close(got[2], t1s, loss, F64_LEVELS)


def test_alr_smag_float32_tracks_float64_oracle(golden):
    xs, taus, _, loss = oracle_alr_smag(golden["A"], golden["b"], golden["idx"],
                                        lr=0.5, beta=0.9, c=1.0, weight_decay=1e-3)
    got, got_tau, _ = jax_run(alr_smag(0.5, weight_decay=1e-3), golden["A"],
                              golden["b"], golden["idx"])
    assert_close(got, xs, **f32_trajectory(len(xs)))
    _assert_steps_close(got_tau, taus, loss, F32_LEVELS)


def test_cap_schedule_matches_oracle(golden):
    """A scheduled cap (warm-up from 0.02 to 1 over 100 steps) is min'ed per step."""
    def sched(count):
        return jnp.minimum(0.02 + 0.0098 * count, 1.0)

    xs, taus, _, loss = oracle_alr_smag(
        golden["A"], golden["b"], golden["idx"], beta=0.9,
        lr=lambda k: min(0.02 + 0.0098 * k, 1.0))
    # exact: where the oracle's τ is capped it is this very float64 number
    capped = taus == [min(0.02 + 0.0098 * k, 1.0) for k in range(len(taus))]
    assert capped[:2].all() and not capped.all()
    with jax.enable_x64(True):
        got, got_tau, _ = jax_run(alr_smag(sched), golden["A"], golden["b"],
                                  golden["idx"], dtype=jnp.float64)
    assert_close(got, xs, **F64_TRAJECTORY)
    _assert_steps_close(got_tau, taus, loss, F64_LEVELS)


@pytest.mark.parametrize("cfg", [dict(lr=0.1, beta=0.5, c=0.5),
                                 dict(lr=0.1, beta=0.9, c=1.0),
                                 dict(lr=0.03, beta=0.99, c=1.0, lb=0.01)], ids=str)
def test_alr_hb_matches_float64_oracle(golden, cfg):
    """200 steps under x64 at 4.5e6 float64 eps = 1e-9, params and α.

    Configs that converge on this stream; with a cap ≥ 0.3 and β ≥ 0.9 the
    derived stochastic ALR-HB diverges here, and chaos amplifies rounding.
    """
    cfg = dict(cfg)
    lb = cfg.pop("lb", 0.0)
    xs, alphas = oracle_alr_hb(golden["A"], golden["b"], golden["idx"], lb=lb, **cfg)
    with jax.enable_x64(True):
        got, got_alpha, _ = jax_run(alr_hb(cfg.pop("lr"), lower_bound=lb, **cfg),
                                    golden["A"], golden["b"], golden["idx"],
                                    dtype=jnp.float64)
    assert_close(got, xs, **F64_TRAJECTORY)
    assert_close(got_alpha, alphas, **F64_TRAJECTORY)


# ------------------------------------------------------------- edge cases

PARAMS = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.3])}
GRADS = {"w": jnp.array([0.2, 0.1, -0.4]), "b": jnp.array([0.5])}
ZERO = jax.tree.map(jnp.zeros_like, PARAMS)


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def _sq(tree):
    return float(_flat(tree) @ _flat(tree))


@pytest.mark.parametrize("make", [lambda: alr_smag(1.0),
                                  lambda: alr_smag(1.0, weight_decay=0.1),
                                  lambda: alr_hb(1.0)], ids=["smag", "smag_wd", "hb"])
def test_zero_gradient_first_step_no_nan_no_movement(make):
    tx = make()
    step = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
    u, s = step(ZERO, tx.init(PARAMS), PARAMS, 0.7)
    assert (_flat(u) == 0).all()
    assert float(s.tau) == 0.0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(s))


@pytest.mark.parametrize("make", [lambda: alr_smag(1.0),
                                  lambda: alr_smag(1.0, weight_decay=0.1),
                                  lambda: alr_hb(1.0)], ids=["smag", "smag_wd", "hb"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_loss_gives_zero_step(make, value):
    tx = make()
    state = tx.init(PARAMS)
    u, state = tx.update(GRADS, state, PARAMS, value=1.0)  # build momentum first
    assert _sq(u) > 0
    u, state = tx.update(GRADS, state, PARAMS, value=jnp.float32(value))
    assert (_flat(u) == 0).all()
    assert float(state.tau) == 0.0 and np.isfinite(float(state.tau))


def test_tiny_nonzero_direction_takes_the_cap():
    """As in the reference, a huge quotient is capped (not zeroed)."""
    tiny = jax.tree.map(lambda g: g * 1e-15, GRADS)
    u, s = alr_smag(0.5).update(tiny, alr_smag(0.5).init(PARAMS), PARAMS, value=1.0)
    assert float(s.tau) == 0.5 and float(s.t1) > 1e20
    assert_close(_flat(u), -0.5 * _flat(tiny), ulps=8, scale=0, dtype=F32)


@pytest.mark.parametrize("variant", ["sps", "sps+", "plus"])
def test_loss_below_lower_bound(variant):
    """Negative gap: "sps" ascends (reference), "sps+"/"plus" does not move."""
    tx = alr_smag(1.0, lower_bound=0.5, variant=variant)
    u, s = tx.update(GRADS, tx.init(PARAMS), PARAMS, value=0.2)
    expected = (0.2 - 0.5) / _sq(GRADS)
    if variant == "sps":
        assert_close(s.tau, expected, ulps=8)
        assert_close(_flat(u), -expected * _flat(GRADS), ulps=8, scale=0, dtype=F32)
        assert _flat(u) @ _flat(GRADS) > 0  # ascent
    else:
        assert float(s.tau) == 0.0 and (_flat(u) == 0).all()
        assert float(s.t1) == 0.0  # the clipped gap is exactly 0


def test_alr_hb_loss_below_lower_bound_gives_momentum_only():
    tx = alr_hb(1.0, beta=0.9, lower_bound=0.5)
    state = tx.init(PARAMS)
    u1, state = tx.update(GRADS, state, PARAMS, value=1.0)
    u2, state = tx.update(GRADS, state, PARAMS, value=0.2)  # ⟨g, Δ⟩ < 0 here
    assert float(state.tau) == 0.0
    assert_close(_flat(u2), 0.9 * _flat(u1), ulps=8, scale=0, dtype=F32)


def test_weight_decay_update_is_minus_tau_d_plus_lambda_theta():
    tx = alr_smag(10.0, beta=0.9, c=1.0, weight_decay=0.1)
    state = tx.init(PARAMS)
    _, state = tx.update(GRADS, state, PARAMS, value=2.0)
    g2 = jax.tree.map(lambda g: -0.5 * g + 0.05, GRADS)
    u, state = tx.update(g2, state, PARAMS, value=0.3)
    d = 0.9 * _flat(GRADS) + _flat(g2)
    tau = 0.3 / float(d @ d)
    assert_close(state.tau, tau, ulps=8)
    # d + λθ and d = βd + g can cancel: normwise (84 eps ≈ 1e-5 as before)
    assert_close(_flat(u), -tau * (d + 0.1 * _flat(PARAMS)), ulps=84, dtype=F32)
    assert_close(_flat(state.momentum), d, ulps=8, dtype=F32)


def test_momentum_is_a_sum_and_norm_is_global():
    tx = alr_smag(100.0, beta=0.5)
    state = tx.init(PARAMS)
    for _ in range(3):
        u, state = tx.update(GRADS, state, PARAMS, value=1.0)
    d = (1 + 0.5 + 0.25) * _flat(GRADS)  # no (1 - beta) factor
    tol = dict(ulps=8, scale=0, dtype=F32)  # products and sums of like signs
    assert_close(_flat(state.momentum), d, **tol)
    assert_close(state.tau, 1.0 / float(d @ d), **tol)
    assert_close(_flat(u), -_flat(state.tau * d), **tol)


def test_masked_leaves_affect_neither_update_nor_norm():
    tx = optax.masked(alr_smag(100.0), {"w": True, "b": False})
    u, s = tx.update(GRADS, tx.init(PARAMS), PARAMS, value=1.0)
    inner = s.inner_state
    tau = 1.0 / float(np.asarray(GRADS["w"]) @ np.asarray(GRADS["w"]))
    assert_close(inner.tau, tau, ulps=8)
    assert_close(u["w"], -tau * GRADS["w"], ulps=8, scale=0)
    np.testing.assert_array_equal(u["b"], GRADS["b"])


# ------------------------------------------------------------- API


@pytest.mark.parametrize("make", [lambda: alr_smag(1.0), lambda: alr_hb(1.0)],
                         ids=["smag", "hb"])
def test_missing_value_is_a_friendly_type_error(make):
    tx = make()
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    for kwargs in ({}, {"value": None}):  # not Python's bare missing-argument error
        with pytest.raises(TypeError, match=r"needs the minibatch loss.*value=loss"):
            tx.update(GRADS, tx.init(PARAMS), PARAMS, **kwargs)
    with pytest.raises(TypeError):  # value stays keyword-only
        tx.update(GRADS, tx.init(PARAMS), PARAMS, 1.0)


@pytest.mark.parametrize("make", [lambda: alr_smag(1.0), lambda: alr_hb(1.0)],
                         ids=["smag", "hb"])
@pytest.mark.parametrize("value", [jnp.ones(2), np.ones((1,)), [0.5, 0.5]],
                         ids=["jax2", "numpy1", "list2"])
def test_non_scalar_value_is_rejected(make, value):
    """A per-example loss vector would broadcast τ into a per-example step."""
    tx = make()
    with pytest.raises(ValueError, match="value must be a scalar"):
        tx.update(GRADS, tx.init(PARAMS), PARAMS, value=value)
    step = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
    with pytest.raises(ValueError, match="value must be a scalar"):
        step(GRADS, tx.init(PARAMS), PARAMS, jnp.asarray(value))


# Non-default values of every float hyperparameter (weight decay > 0 included).
SMAG_FLOATS = dict(learning_rate=0.7, beta=0.8, c=1.5, lower_bound=0.05,
                   weight_decay=0.02)
HB_FLOATS = dict(learning_rate=0.7, beta=0.8, c=1.5, lower_bound=0.05)


@pytest.mark.parametrize("ctor,floats", [(alr_smag, SMAG_FLOATS), (alr_hb, HB_FLOATS)],
                         ids=["smag", "hb"])
@pytest.mark.parametrize("defaults", [True, False], ids=["defaults", "all_set"])
def test_inject_hyperparams_under_jit(ctor, floats, defaults):
    """Every float hyperparameter injected (traced inside jit) works and gives
    the plain transform's numbers; with only the cap passed, the injected
    defaults (weight_decay=0.0 included) are traced too."""
    kwargs = {"learning_rate": 1.0} if defaults else floats
    tx = optax.inject_hyperparams(ctor)(**kwargs)
    plain = ctor(**kwargs)
    state, ref_state = tx.init(PARAMS), plain.init(PARAMS)
    assert set(floats) <= set(state.hyperparams)
    step = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
    params = ref = PARAMS
    for value in (1.0, 0.6, 0.3):
        u, state = step(GRADS, state, params, jnp.float32(value))
        r, ref_state = plain.update(GRADS, ref_state, ref, value=value)
        params, ref = optax.apply_updates(params, u), optax.apply_updates(ref, r)
        assert_close(state.inner_state.tau, ref_state.tau, ulps=8)
        assert_close(u, r, ulps=8)
    # a changed injected value takes effect without retracing
    state.hyperparams["beta"] = jnp.asarray(0.0, jnp.float32)
    step(GRADS, state, params, jnp.float32(0.2))
    assert step._cache_size() == 1


def test_weight_decay_without_params_is_an_error():
    tx = alr_smag(1.0, weight_decay=0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update(GRADS, tx.init(PARAMS), None, value=1.0)
    u, _ = alr_smag(1.0).update(GRADS, alr_smag(1.0).init(PARAMS), None, value=1.0)
    assert _sq(u) > 0  # no weight decay: params not needed


@pytest.mark.parametrize("kwargs,field", [
    (dict(learning_rate=0.0), "learning_rate"), (dict(learning_rate=-1.0), "learning_rate"),
    (dict(beta=1.0), "beta"), (dict(beta=-0.1), "beta"), (dict(c=0.0), "c"),
    (dict(c=-1.0), "c"), (dict(weight_decay=-1e-3), "weight_decay"),
    (dict(variant="relu"), "variant"), (dict(lower_bound=float("nan")), "lower_bound")])
def test_invalid_hyperparameters(kwargs, field):
    kw = {"learning_rate": 1.0, **kwargs}
    with pytest.raises(ValueError, match=field):
        alr_smag(**kw)
    if field not in ("weight_decay", "variant"):
        with pytest.raises(ValueError, match=field):
            alr_hb(**kw)


def test_chain_with_clipping_forwards_value():
    tx = optax.chain(optax.clip_by_global_norm(0.1), alr_smag(100.0))
    u, s = tx.update(GRADS, tx.init(PARAMS), PARAMS, value=1.0)
    clipped = _flat(GRADS) * 0.1 / np.sqrt(_sq(GRADS))
    # 1/‖clip(g)‖² = 100 amplifies the clip's rounding: 84 eps (1e-5) as before
    assert_close(s[1].tau, 1.0 / float(clipped @ clipped), ulps=84)
    assert_close(_flat(u), -float(s[1].tau) * clipped, ulps=84, scale=0, dtype=F32)


def test_nnx_optimizer_forwards_value():
    model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, alr_smag(1.0), wrt=nnx.Param)
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))

    def loss_fn(m):
        return jnp.mean((m(x) - y) ** 2)

    losses = []
    for _ in range(5):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads, value=loss)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    taus = optax.tree_utils.tree_get(opt.opt_state, "tau")
    assert float(taus.value if hasattr(taus, "value") else taus) > 0


def test_quadratic_alr_hb_beats_constant_step_heavy_ball():
    """The Polyak spec's quadratic check: d=50, κ=1e3, f*=0, 500 steps; ALR-HB
    beats heavy ball with the constant step 1/L (L = 1)."""
    lam = jnp.logspace(-3, 0, 50)
    x0 = jnp.asarray(np.random.default_rng(0).standard_normal(50), jnp.float32)

    def f(x):
        return 0.5 * jnp.sum(lam * x ** 2)

    def run(tx):
        return float(f(minimise(tx, f, x0, 500).params))

    for beta in (0.5, 0.9, 0.99):
        hb = run(optax.sgd(1.0, momentum=beta))
        alr = run(alr_hb(1e3, beta=beta))
        if beta < 0.95:
            assert alr < hb, (beta, alr, hb)
        else:
            assert alr <= 1.01 * hb, (beta, alr, hb)


def test_state_dtype_follows_params():
    assert polyak.alr_smag(1.0).init(PARAMS).tau.dtype == jnp.float32
    bf = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)
    s = alr_hb(1.0).init(bf)
    assert s.tau.dtype == jnp.float32 and s.delta["w"].dtype == jnp.bfloat16


def test_training_core_logs_tau_each_step(tmp_path):
    """The lab's training loop logs ALR-SMAG's τ and t1 as opt/tau, opt/t1."""
    from experiments.configs import polyak_digits
    from optim_lab.training import metrics as metrics_lib
    from optim_lab.training import train

    c = polyak_digits.get_config()
    c.steps = c.eval_every = c.checkpoint_every = 3
    c.optimizer.learning_rate = 0.5
    train.train_and_evaluate(c, tmp_path / "run")
    records = [r for r in metrics_lib.read_metrics(tmp_path / "run") if r["step"] > 0]
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert 0 < r["opt/tau"] <= 0.5  # τ = min(cap, t1), both logged float32
        assert_close(r["opt/tau"], min(0.5, r["opt/t1"]), ulps=8, dtype=F32)
