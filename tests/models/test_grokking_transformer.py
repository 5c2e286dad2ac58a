"""Fig. 6 grokking transformer: torch-layer math, size, init, dropout keyed by rng."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from optim_lab.data import modular
from optim_lab.data.dataset import DataSpec
from optim_lab.models import registry
from optim_lab.models.functional import functionalize
from optim_lab.models.grokking_transformer import GrokkingTransformer

EPS = float(jnp.finfo(jnp.float32).eps)
TINY = dict(vocab_size=7, num_classes=5, d_model=8, num_heads=2, ff_dim=16)


@pytest.fixture(scope="module")
def tiny():
    return functionalize(GrokkingTransformer(**TINY, rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def tokens():
    return jax.random.randint(jax.random.key(1), (6, 3), 0, 7)


def _layer_norm(x, p):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _reference(params, tokens, heads):
    """torch ``TransformerEncoderLayer`` (post-LN, eval) + last-position head, in numpy."""
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
    x = p["embedding"]["embedding"][np.asarray(tokens)]
    lp = p["layers_0"]
    d = x.shape[-1]
    dh = d // heads
    qkv = x @ lp["self_attn"]["in_proj"]["kernel"] + lp["self_attn"]["in_proj"]["bias"]
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    out = np.zeros_like(x)
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        s = q[..., sl] @ np.swapaxes(k[..., sl], -1, -2) / math.sqrt(dh)
        a = np.exp(s - s.max(-1, keepdims=True))
        out[..., sl] = (a / a.sum(-1, keepdims=True)) @ v[..., sl]
    attn = out @ lp["self_attn"]["out_proj"]["kernel"] + lp["self_attn"]["out_proj"]["bias"]
    x = _layer_norm(x + attn, lp["norm1"])
    ff = np.maximum(x @ lp["linear1"]["kernel"] + lp["linear1"]["bias"], 0)
    x = _layer_norm(x + ff @ lp["linear2"]["kernel"] + lp["linear2"]["bias"], lp["norm2"])
    return x[:, -1] @ p["head"]["kernel"] + p["head"]["bias"]


def test_eval_forward_matches_torch_layer_math(tiny, tokens):
    out, _ = tiny.apply(tiny.params, tiny.model_state, tokens, False)
    assert out.shape == (6, 5)
    want = _reference(tiny.params, tokens, heads=2)
    np.testing.assert_allclose(out, want, rtol=0, atol=64 * EPS * np.abs(want).max())


def test_default_size_matches_the_spec():
    data = modular.modular_arithmetic(exclude_zero=True, encoding="tokens")
    assert data.spec == DataSpec(2, 113) and data.num_train == 5017
    fn = functionalize(registry.build("grokking_transformer", data.spec, 0))
    v, d, ff = 113, 128, 2048  # torch layout: in_proj (3d, d), out_proj, linear1/2, 2 norms, head
    expected = (v * d + (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d)
                + 4 * d + (d * v + v))
    assert expected == 622_065
    assert sum(x.size for x in jax.tree.leaves(fn.params)) == expected
    assert set(fn.params) == {"embedding", "layers_0", "head"}  # no positional embedding
    out, _ = fn.apply(fn.params, fn.model_state, data.train_x[:4], False)
    assert out.shape == (4, 113)
    # torch default init
    layer = fn.params["layers_0"]
    emb = fn.params["embedding"]["embedding"]
    assert abs(float(jnp.std(emb)) - 1) < 5 / math.sqrt(2 * emb.size)
    in_proj = layer["self_attn"]["in_proj"]["kernel"]  # Xavier over (3d, d)
    slack = 1 + 4 * float(jnp.finfo(jnp.float32).eps)  # the bound is rounded to float32
    assert float(jnp.max(jnp.abs(in_proj))) <= math.sqrt(6 / (4 * d)) * slack
    for name in ("in_proj", "out_proj"):
        np.testing.assert_array_equal(layer["self_attn"][name]["bias"], 0)
    for name, fan_in in (("linear1", d), ("linear2", ff)):
        assert float(jnp.max(jnp.abs(layer[name]["kernel"]))) <= slack / math.sqrt(fan_in)
        assert float(jnp.max(jnp.abs(layer[name]["bias"]))) > 0


def test_dropout_is_keyed_by_rng(tiny, tokens):
    apply = jax.jit(tiny.apply, static_argnums=3)
    run = lambda train, rng=None: np.asarray(  # noqa: E731
        apply(tiny.params, tiny.model_state, tokens, train, rng)[0])
    key = jax.random.fold_in(jax.random.PRNGKey(0), 7)  # as the training step does
    evaluation = run(False)
    np.testing.assert_array_equal(run(False, key), evaluation)  # eval ignores the key
    train = run(True, key)
    assert np.abs(train - evaluation).max() > 1e-3  # dropout active in training
    np.testing.assert_array_equal(run(True, key), train)  # same key, same masks
    other = run(True, jax.random.fold_in(jax.random.PRNGKey(0), 8))
    assert np.abs(other - train).max() > 1e-3
    with pytest.raises(ValueError, match="uses dropout in training: pass rng="):
        run(True)


def test_zero_dropout_needs_no_rng(tokens):
    fn = functionalize(GrokkingTransformer(**TINY, dropout=0.0, rngs=nnx.Rngs(0)))
    a, _ = fn.apply(fn.params, fn.model_state, tokens, True)
    b, _ = fn.apply(fn.params, fn.model_state, tokens, False)
    np.testing.assert_array_equal(a, b)


def test_errors():
    with pytest.raises(ValueError, match="integer tokens"):
        onehot = modular.modular_arithmetic(modulus=5)
        m = registry.build("grokking_transformer", onehot.spec, 0, d_model=8, ff_dim=8)
        m.eval()
        m(onehot.train_x)
    with pytest.raises(ValueError, match="model.dropout must be in"):
        GrokkingTransformer(**TINY, dropout=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiple of model.num_heads"):
        GrokkingTransformer(**{**TINY, "num_heads": 3}, rngs=nnx.Rngs(0))
