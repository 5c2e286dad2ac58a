"""LLaMA-style LM: shapes, parameter paths, causality, RoPE, size."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from optim_lab.data.dataset import DataSpec
from optim_lab.models import registry
from optim_lab.models.functional import functionalize
from optim_lab.models.llama import Llama
from optim_lab.models.llama import apply_rope

EPS = float(jnp.finfo(jnp.float32).eps)
TINY = dict(num_layers=3, d_model=16, num_heads=2, mlp_hidden=24, context=8, vocab_size=11)


def _paths(params) -> list[str]:
    return [jax.tree_util.keystr(k, simple=True, separator="/")
            for k, _ in jax.tree_util.tree_leaves_with_path(params)]


@pytest.fixture(scope="module")
def tiny():
    return functionalize(Llama(**TINY, rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def default():
    return functionalize(registry.build("llama", DataSpec(128, 256), 0))


_apply = jax.jit(lambda fn_apply, *a: fn_apply(*a, False)[0], static_argnums=0)


def _logits(fn, tokens):
    return _apply(fn.apply, fn.params, fn.model_state, tokens)


def test_shapes_and_layer_paths(tiny):
    tokens = jax.random.randint(jax.random.key(1), (3, 8), 0, 11)
    assert _logits(tiny, tokens).shape == (3, 8, 11)
    assert _logits(tiny, tokens[:, :5]).shape == (3, 5, 11)
    paths = _paths(tiny.params)
    layers = {int(m.group(1)) for p in paths if (m := re.search(r"layers_(\d+)", p))}
    assert layers == {0, 1, 2}
    for i in range(3):
        for name in ("attn/q_proj/kernel", "attn/k_proj/kernel", "attn/v_proj/kernel",
                     "attn/o_proj/kernel", "mlp/gate_proj/kernel", "mlp/up_proj/kernel",
                     "mlp/down_proj/kernel", "attn_norm/scale", "mlp_norm/scale"):
            assert f"layers_{i}/{name}" in paths
    assert {"embed/embedding", "head/kernel", "norm/scale"} <= set(paths)


def test_no_biases_and_init(tiny, default):
    paths = _paths(tiny.params)
    assert not [p for p in paths if "bias" in p]
    leaves = dict(zip(paths, jax.tree.leaves(tiny.params)))
    for p, v in leaves.items():
        if p.endswith("scale"):
            np.testing.assert_array_equal(v, np.ones(16))
    for p, v in zip(_paths(default.params), jax.tree.leaves(default.params)):
        if v.ndim == 2:  # N(0, 0.02) matrices
            n = v.size  # ±5 standard errors of a sample std
            assert abs(float(jnp.std(v)) / 0.02 - 1) < 5 / math.sqrt(2 * n), p


def test_causal(tiny):
    tokens = jax.random.randint(jax.random.key(2), (2, 8), 0, 11)
    changed = tokens.at[:, 5].set((tokens[:, 5] + 1) % 11)
    a, b = _logits(tiny, tokens), _logits(tiny, changed)
    np.testing.assert_array_equal(a[:, :5], b[:, :5])  # exact: masked terms are 0
    assert np.all(np.abs(np.asarray(a[:, 5:] - b[:, 5:])).max(axis=-1) > 0)


def test_rope_depends_on_relative_position_only():
    q, k = jax.random.normal(jax.random.key(3), (2, 1, 1, 8))
    rq = lambda m: apply_rope(q, jnp.array([m]))[0, 0]  # noqa: E731
    rk = lambda n: apply_rope(k, jnp.array([n]))[0, 0]  # noqa: E731
    # float32 rounds an angle a by ~eps·a (a ≤ 27 here): the scores agree to that.
    tol = 8 * EPS * 28 * float(jnp.linalg.norm(q) * jnp.linalg.norm(k))
    for m, n, shift in ((3, 1, 5), (0, 7, 20), (10, 10, 3)):
        np.testing.assert_allclose(jnp.vdot(rq(m), rk(n)),
                                   jnp.vdot(rq(m + shift), rk(n + shift)), atol=tol)
    assert abs(float(jnp.vdot(rq(0), rk(0)) - jnp.vdot(rq(3), rk(0)))) > 1e-3
    # Position 0 is the identity; the norm is preserved; pair i rotates by p·base^(-2i/d).
    np.testing.assert_array_equal(rq(0), q[0, 0])
    np.testing.assert_allclose(jnp.linalg.norm(rq(9)), jnp.linalg.norm(q), rtol=8 * EPS)
    theta = 9 * 10000.0 ** (-np.arange(4) * 2 / 8)
    x1, x2 = np.asarray(q[0, 0, :4], np.float64), np.asarray(q[0, 0, 4:], np.float64)
    want = np.concatenate([x1 * np.cos(theta) - x2 * np.sin(theta),
                           x2 * np.cos(theta) + x1 * np.sin(theta)])
    np.testing.assert_allclose(rq(9), want, atol=64 * EPS * np.abs(want).max())


def test_default_size_from_registry(default):
    fn = default
    d, h, layers, vocab = 128, 344, 4, 256
    expected = 2 * vocab * d + layers * (4 * d * d + 3 * d * h + 2 * d) + d
    assert expected == 857_216
    assert sum(v.size for v in jax.tree.leaves(fn.params)) == expected
    assert fn.params["embed"]["embedding"].shape == (256, 128)
    assert fn.params["head"]["kernel"].shape == (128, 256)


def test_errors():
    with pytest.raises(ValueError, match="multiple of 2 \\* model.num_heads"):
        Llama(d_model=12, num_heads=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs token data"):
        registry.build("llama", DataSpec((8, 8, 1), 10), 0)
    m = Llama(**TINY, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="exceeds model.context = 8"):
        m(jnp.zeros((1, 9), jnp.int32))
    with pytest.raises(ValueError, match="integer tokens"):
        m(jnp.zeros((1, 4)))


def test_gradient_is_finite_everywhere(tiny):
    tokens = jax.random.randint(jax.random.key(4), (2, 8), 0, 11)

    def loss(params):
        logits, _ = tiny.apply(params, tiny.model_state, tokens[:, :-1], True)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits),
                                             tokens[:, 1:, None], -1))

    grads = jax.grad(loss)(tiny.params)
    for p, g in zip(_paths(grads), jax.tree.leaves(grads)):
        assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0, p
