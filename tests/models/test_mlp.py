"""MLP: torch-default init statistics, bias option, functional view."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from optim_lab.models.functional import functionalize
from optim_lab.models.mlp import MLP

from tolerances import F32
from tolerances import assert_close
from tolerances import ulp


def test_torch_default_init_and_no_bias():
    m = MLP(226, (200, 200), 113, use_bias=False, init="torch", rngs=nnx.Rngs(0))
    fn = functionalize(m)
    kernels = [fn.params["layers"][i]["kernel"] for i in range(3)]
    assert all("bias" not in fn.params["layers"][i] for i in range(3))
    for k, fan_in in zip(kernels, (226, 200, 200)):
        # U(-b, b) with b rounded to float32
        assert float(jnp.max(jnp.abs(k))) <= (1 + ulp(F32)) / np.sqrt(fan_in)
        # a sample statistic (not a rounding tolerance): 5 % of the std
        np.testing.assert_allclose(float(jnp.std(k)), 1 / np.sqrt(3 * fan_in), rtol=0.05)
    norm = float(jnp.sqrt(sum(jnp.sum(k ** 2) for k in kernels)))
    assert 12.5 < norm < 13.7  # the reference's ≈ 13.1


def test_functional_apply_matches_module():
    m = MLP(4, (8,), 3, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (5, 4))
    fn = functionalize(m)
    out, state = jax.jit(fn.apply, static_argnums=3)(fn.params, fn.model_state, x, True)
    # jit vs eager: other fusion / FMA contraction, so 8 eps normwise
    assert_close(out, m(x), ulps=8)
    biases = [fn.params["layers"][i]["bias"] for i in range(2)]
    assert all(float(jnp.max(jnp.abs(b))) > 0 for b in biases)  # torch-style bias init


# --- one-hot inputs as a row gather (model.one_hot_groups) --------------------


def _pairs(p=13, n=40, seed=0):
    """``n`` random (a, b) pairs as two concatenated one-hots and as indices."""
    rng = np.random.default_rng(seed)
    ab = rng.integers(0, p, size=(n, 2)).astype(np.int32)
    eye = np.eye(p, dtype=np.float32)
    return jnp.asarray(np.concatenate([eye[ab[:, 0]], eye[ab[:, 1]]], 1)), jnp.asarray(ab)


def _forward(model, params):
    fn = functionalize(model)
    return jax.jit(lambda p, x: fn.apply(p, fn.model_state, x, False)[0])


@pytest.mark.parametrize("use_bias", [False, True])
def test_one_hot_gather_forward_is_bit_identical(use_bias):
    """Every product but two is an exact zero, so the matmul's sum is the
    gathered rows' sum rounded once: bit-identical, for either input form."""
    dense = MLP(26, (32, 32), 13, use_bias=use_bias, rngs=nnx.Rngs(0))
    gather = MLP(26, (32, 32), 13, use_bias=use_bias, one_hot_groups=2, rngs=nnx.Rngs(0))
    params = functionalize(dense).params
    jax.tree.map(np.testing.assert_array_equal, params, functionalize(gather).params)
    x, ab = _pairs()
    want = _forward(dense, params)(params, x)
    np.testing.assert_array_equal(_forward(gather, params)(params, x), want)
    # integer inputs are the hot positions: the gather whatever the option
    np.testing.assert_array_equal(_forward(dense, params)(params, ab), want)
    np.testing.assert_array_equal(gather(ab), dense(x))  # eager module calls too


def test_one_hot_gather_gradients_match_the_matmul():
    """Layers after the first see bit-identical activations and cotangents;
    the first kernel's gradient is a scatter-add of the same products in
    another order: equal within float32 rounding of its largest entry
    (observed ≤ 3 eps on the grokking MLP; bound 16 eps normwise)."""
    dense = MLP(226, (64, 64), 113, use_bias=True, rngs=nnx.Rngs(1))
    gather = MLP(226, (64, 64), 113, use_bias=True, one_hot_groups=2, rngs=nnx.Rngs(1))
    x, _ = _pairs(p=113, n=600, seed=1)
    y = jnp.asarray(np.random.default_rng(2).integers(0, 113, 600))

    def grads(model):
        fn = functionalize(model)

        def loss(p, x):
            logits = fn.apply(p, fn.model_state, x, True)[0]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
        return jax.jit(jax.grad(loss))(fn.params, x)

    gd, gg = grads(dense), grads(gather)
    for i in (1, 2):
        jax.tree.map(np.testing.assert_array_equal, gg["layers"][i], gd["layers"][i])
    np.testing.assert_array_equal(gg["layers"][0]["bias"], gd["layers"][0]["bias"])
    want = gd["layers"][0]["kernel"]
    assert float(jnp.abs(want).max()) > 0
    assert_close(gg["layers"][0]["kernel"], want, ulps=16)


def test_one_hot_gather_errors():
    with pytest.raises(ValueError, match="model.one_hot_groups"):
        MLP(25, (8,), 3, one_hot_groups=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="model.one_hot_groups"):
        MLP(26, (8,), 3, one_hot_groups=-1, rngs=nnx.Rngs(0))
    m = MLP(26, (8,), 3, one_hot_groups=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="26 features"):
        m(jnp.ones((2, 24)))
    with pytest.raises(ValueError, match="hot positions of 2"):
        m(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="do not split into 3"):
        MLP(26, (8,), 3, rngs=nnx.Rngs(0))(jnp.ones((2, 3), jnp.int32))


def test_linear_model_with_gather():
    """``hidden=()``: the gathered first layer is also the output layer (no ReLU)."""
    dense = MLP(26, (), 13, rngs=nnx.Rngs(3))
    gather = MLP(26, (), 13, one_hot_groups=2, rngs=nnx.Rngs(3))
    x, _ = _pairs()
    out = gather(x)
    np.testing.assert_array_equal(out, dense(x))
    assert float(jnp.min(out)) < 0  # not rectified
