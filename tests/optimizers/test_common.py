"""The shared optimizer test bar: every registered optimizer must pass it.

Parametrized over ``optim_lab.optimizers.registry.names()`` plus a couple of
``orthograd_`` variants, each built through the registry with its
``Entry.test_hparams``; a new optimizer joins by being registered. The loss is
always passed as ``value=`` (every registered transform accepts extra args;
those that do not need it ignore it). Checks: minimises a quadratic and a
Rosenbrock function; compiles once and does not recompile on step 2; state is
made of NamedTuples; works in ``optax.chain``, ``optax.masked``,
``optax.MultiSteps`` and ``optax.inject_hyperparams`` (a learning rate changed
mid-run takes effect); ignores unrelated extra args; keeps bf16 params bf16;
treats a Python-float parameter leaf as optax does; rejects invalid
hyperparameters, and ±inf / NaN for every float hyperparameter, with a
``ValueError`` naming them. The minimisation checks run the shared scan loop,
``optim_lab.training.minimise.minimise``.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim_lab.optimizers import registry
from optim_lab.training.minimise import minimise

import problems
from tolerances import assert_close

ORTHOGRAD_VARIANTS = ("orthograd_adamw", "orthograd_adamp")
NAMES = registry.names() + ORTHOGRAD_VARIANTS
# Invalid values for hyperparameters many optimizers share (argument -> value).
INVALID = {"learning_rate": -1.0, "b1": 1.5, "b2": -0.5, "momentum": 1.0,
           "eps": -1.0, "weight_decay": -1.0}


def hparams(name: str) -> dict:
    hp = dict(registry.get(name).test_hparams)
    hp.setdefault("learning_rate", 1e-2)
    return hp


def build(name: str, **overrides):
    return registry.build(name, **{**hparams(name), **overrides})


def _params_and_grads(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    params = {"kernel": jnp.asarray(rng.standard_normal((4, 3)), dtype),
              "bias": jnp.asarray(rng.standard_normal(3), dtype)}
    grads = {"kernel": jnp.asarray(rng.standard_normal((4, 3)), dtype),
             "bias": jnp.asarray(rng.standard_normal(3), dtype)}
    return params, grads


_VALUE = jnp.asarray(0.7, jnp.float32)


def _assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _minimise(tx, problem, steps):
    """Final loss and per-step losses of ``steps`` steps (the shared scan loop)."""
    loss_fn, params, _ = problem
    out = jax.jit(lambda p: minimise(tx, loss_fn, p, steps))(params)
    return loss_fn(out.params), out.values


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("problem,steps,factor", [
    (problems.quadratic, 1000, 1e-2), (problems.rosenbrock, 3000, 0.1)])
def test_minimises(name, problem, steps, factor):
    if name.startswith(registry.ORTHOGRAD_PREFIX):
        pytest.skip("⊥Grad cannot change the parameter norm to first order, so it "
                    "does not reach these minima; its own tests cover it")
    loss_fn, params0, _ = problem()
    final, values = _minimise(build(name), problem(), steps)
    assert np.isfinite(np.asarray(values)).all()
    assert float(final) < factor * float(loss_fn(params0)), (float(final), name)


@pytest.mark.parametrize("name", NAMES)
def test_compiles_once_and_state_is_namedtuples(name):
    tx = build(name)
    params, grads = _params_and_grads()
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params, value=_VALUE)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(3):
        new_params, state = step(params, state, grads)
        params = new_params
    assert len(traces) == 1, f"{name} retraced: {len(traces)} traces for 3 steps"
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))

    def check(s):
        if isinstance(s, tuple) and not hasattr(s, "_fields"):  # chain / list
            for x in s:
                check(x)
        else:
            assert hasattr(s, "_fields"), f"{name}: state {type(s)} is not a NamedTuple"

    check(state)


@pytest.mark.parametrize("name", NAMES)
def test_chain_and_extra_args(name):
    params, grads = _params_and_grads()
    tx = build(name)
    ref, _ = tx.update(grads, tx.init(params), params, value=_VALUE)
    chained = optax.chain(optax.clip_by_global_norm(1e6), build(name))
    out, _ = chained.update(grads, chained.init(params), params, value=_VALUE)
    assert_close(out, ref, ulps=8)  # the clip is inactive: one update, re-traced
    extra, _ = tx.update(grads, tx.init(params), params, value=_VALUE,
                         unrelated_arg=jnp.ones(3), another="x")
    _assert_trees_equal(extra, ref)  # the very same computation


@pytest.mark.parametrize("name", NAMES)
def test_masked(name):
    params, grads = _params_and_grads()
    tx = optax.masked(build(name), {"kernel": True, "bias": False})
    out, _ = tx.update(grads, tx.init(params), params, value=_VALUE)
    np.testing.assert_array_equal(out["bias"], grads["bias"])  # passed through
    only = build(name)
    sub = {"kernel": params["kernel"]}
    ref, _ = only.update({"kernel": grads["kernel"]}, only.init(sub), sub, value=_VALUE)
    assert_close(out["kernel"], ref["kernel"], ulps=8)


@pytest.mark.parametrize("name", NAMES)
def test_multi_steps_averages_micro_batches(name):
    params, g1 = _params_and_grads()
    g2 = jax.tree.map(lambda x: -0.5 * x + 0.1, g1)
    tx = optax.MultiSteps(build(name), every_k_schedule=2)
    state = tx.init(params)
    u1, state = tx.update(g1, state, params, value=_VALUE)
    assert all(not np.asarray(x).any() for x in jax.tree.leaves(u1))
    u2, state = tx.update(g2, state, params, value=_VALUE)
    inner = build(name)
    mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
    ref, _ = inner.update(mean, inner.init(params), params, value=_VALUE)
    # MultiSteps forms the mean by a running update (another rounding of the
    # gradient), which normalising rules amplify: 84 eps (rtol 1e-5)
    assert_close(u2, ref, ulps=84)


# Heavy-ball forms move by beta * (x_t - x_{t-1}) whatever the step size: with
# the cap at 0 only their gradient part vanishes.
_MOMENTUM_INDEPENDENT_OF_LR = frozenset({"alr_hb"})


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_learning_rate_takes_effect(name):
    hp = hparams(name)
    lr = hp.pop("learning_rate")

    def factory(learning_rate):  # only the learning rate is injected
        return registry.build(name, learning_rate=learning_rate, **hp)

    tx = optax.inject_hyperparams(factory)(learning_rate=lr)
    params, grads = _params_and_grads()
    state = tx.init(params)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, value=_VALUE))
    u1, state = step(grads, state, params)
    assert any(np.asarray(x).any() for x in jax.tree.leaves(u1))
    assert state.hyperparams["learning_rate"].dtype == jnp.float32
    u_same, _ = step(grads, state, params)
    state.hyperparams["learning_rate"] = jnp.zeros_like(state.hyperparams["learning_rate"])
    u_zero, state = step(grads, state, params)
    differs = any(not np.allclose(a, b) for a, b in
                  zip(jax.tree.leaves(u_same), jax.tree.leaves(u_zero)))
    assert differs, f"{name}: learning rate changed mid-run has no effect"
    if name not in _MOMENTUM_INDEPENDENT_OF_LR:
        assert all(not np.asarray(x).any() for x in jax.tree.leaves(u_zero)), \
            f"{name}: learning rate 0 injected mid-run still moves the params"


@pytest.mark.parametrize("name", NAMES)
def test_bf16_params_stay_bf16(name):
    tx = build(name)
    params, grads = _params_and_grads(jnp.bfloat16)
    state = tx.init(params)
    for _ in range(2):
        updates, state = tx.update(grads, state, params, value=_VALUE)
        params = optax.apply_updates(params, updates)
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == jnp.bfloat16, name
        assert np.isfinite(np.asarray(leaf, np.float32)).all(), name


@pytest.mark.parametrize("name", NAMES)
def test_python_float_leaf_behaves_as_in_optax(name):
    """A Python float is a valid pytree leaf; optax treats it as
    ``jnp.asarray(x)`` (a 0-d float32 array), and so must every optimizer."""
    params, grads = _params_and_grads()
    as_float = {**params, "s": 1.5}
    float_grads = {**grads, "s": -0.25}
    as_array = jax.tree.map(jnp.asarray, as_float)
    tx = build(name)
    state = tx.init(as_float)
    u, state = tx.update(float_grads, state, as_float, value=_VALUE)
    new = optax.apply_updates(as_float, u)
    ref_tx = build(name)
    ref_state = ref_tx.init(as_array)
    ref, ref_state = ref_tx.update(jax.tree.map(jnp.asarray, float_grads), ref_state,
                                   as_array, value=_VALUE)
    for got in (u["s"], new["s"]):
        assert isinstance(got, jax.Array) and got.shape == () and got.dtype == jnp.float32
    assert_close(u, ref, ulps=4)
    if name in ("adamw", "sgd"):  # and exactly what optax itself returns
        opt = optax.adamw(1e-2) if name == "adamw" else optax.sgd(1e-3, momentum=0.9)
        ou, _ = opt.update(float_grads, opt.init(as_float), as_float)
        assert_close(u["s"], ou["s"], ulps=4)
    # a second (jitted) step from the state built from the float leaf
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, value=_VALUE))
    u2, _ = step(float_grads, state, new)
    assert u2["s"].shape == () and np.isfinite(float(u2["s"]))


@pytest.mark.parametrize("name", NAMES)
def test_invalid_hyperparameters_raise_naming_the_argument(name):
    accepted = inspect.signature(registry.get(name).constructor).parameters
    checked = [k for k in INVALID if k in accepted]
    assert "learning_rate" in checked
    for key in checked:
        with pytest.raises(ValueError, match=key):
            build(name, **{key: INVALID[key]})


@pytest.mark.parametrize("name", registry.names())
@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan")],
                         ids=["inf", "-inf", "nan"])
def test_non_finite_float_hyperparameters_raise_naming_the_argument(name, value):
    """Every float hyperparameter (and the learning rate) refuses ±inf and NaN."""
    accepted = inspect.signature(registry.get(name).constructor).parameters
    floats = [k for k, p in accepted.items() if isinstance(p.default, float)]
    assert floats
    for key in ["learning_rate", *floats]:
        with pytest.raises(ValueError, match=rf"\b{key} must be"):
            build(name, **{key: value})
