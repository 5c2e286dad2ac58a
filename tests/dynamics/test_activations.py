"""Residual-stream probe of the LLaMA LM (optim_lab/dynamics/activations.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from optim_lab.dynamics import activations
from optim_lab.models import functional
from optim_lab.models.llama import Llama


def _model():
    return Llama(num_layers=3, d_model=16, num_heads=2, mlp_hidden=24, context=8,
                 vocab_size=11, rngs=nnx.Rngs(0))


def _tokens():
    return jax.random.randint(jax.random.key(1), (4, 8), 0, 11)


def _perturbed(params):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    return jax.tree.unflatten(treedef, [x + 0.05 * jax.random.normal(k, x.shape)
                                        for x, k in zip(leaves, keys)])


def test_recomputed_stream_gives_the_models_logits_bit_for_bit():
    model, tokens = _model(), _tokens()
    fn = functional.functionalize(model)
    params = _perturbed(fn.params)  # not the module's own weights
    stream, logits = activations.residual_stream(model, params, tokens)
    expected, _ = fn.apply(params, fn.model_state, tokens, False)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(expected))
    assert len(stream) == 4 and all(x.shape == (4, 8, 16) for x in stream)
    np.testing.assert_array_equal(np.asarray(stream[0]),
                                  np.asarray(params["embed"]["embedding"])[tokens])


def test_probe_is_max_and_median_of_the_stream():
    model, tokens = _model(), _tokens()
    params = _perturbed(functional.functionalize(model).params)
    out = jax.jit(lambda p, t: activations.residual_max_abs(model, p, t))(params, tokens)
    stream, _ = activations.residual_stream(model, params, tokens)
    names = activations.stream_names(3)
    for name, x in zip(names, stream):
        a = np.abs(np.asarray(x))
        assert float(out[f"act/{name}/max_abs"]) == a.max()
        assert float(out[f"act/{name}/median_abs"]) == pytest.approx(np.median(a), rel=1e-6)
    top = max(np.abs(np.asarray(x)).max() for x in stream[1:])
    assert float(out["act/max_abs"]) == top
    assert float(out["act/max_over_median"]) == pytest.approx(
        top / np.median(np.abs(np.asarray(stream[-1]))), rel=1e-6)


def test_blocks_with_zero_output_projections_are_the_identity():
    model, tokens = _model(), _tokens()
    params = functional.functionalize(model).params
    for i in range(3):
        block = params[f"layers_{i}"]
        block["attn"]["o_proj"]["kernel"] = jnp.zeros_like(block["attn"]["o_proj"]["kernel"])
        block["mlp"]["down_proj"]["kernel"] = jnp.zeros_like(
            block["mlp"]["down_proj"]["kernel"])
    out = activations.residual_max_abs(model, params, tokens)
    embed = float(out["act/embed/max_abs"])
    assert embed > 0
    assert [float(out[f"act/layers_{i}/max_abs"]) for i in range(3)] == [embed] * 3
    # and it scales with the embedding
    params["embed"]["embedding"] = 10.0 * params["embed"]["embedding"]
    scaled = activations.residual_max_abs(model, params, tokens)
    assert float(scaled["act/max_abs"]) == pytest.approx(10 * embed, rel=1e-6)


def test_needs_a_llama():
    with pytest.raises(TypeError, match="Llama"):
        activations.residual_stream(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), {}, _tokens())
