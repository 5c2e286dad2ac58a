"""BN-CNN: shapes, BN mode handling and scale invariance of conv kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab.data.dataset import DataSpec
from optim_lab.models import functional
from optim_lab.models import registry


def _fn():
    return functional.functionalize(
        registry.build("cnn", DataSpec((8, 8, 1), 10), 0, channels=(4, 8, 8)))


def test_shapes_and_flax_kernel_layout():
    fn = _fn()
    assert fn.params["convs"][0]["kernel"].shape == (3, 3, 1, 4)
    assert fn.params["convs"][2]["kernel"].shape == (3, 3, 8, 8)
    x = jnp.asarray(np.random.default_rng(0).random((5, 8, 8, 1)), jnp.float32)
    out, state = fn.apply(fn.params, fn.model_state, x, True)
    assert out.shape == (5, 10)
    # training updates the running statistics; eval does not
    assert not np.allclose(state["norms"][0]["mean"], fn.model_state["norms"][0]["mean"])
    _, state_eval = fn.apply(fn.params, fn.model_state, x, False)
    np.testing.assert_array_equal(state_eval["norms"][0]["mean"],
                                  fn.model_state["norms"][0]["mean"])


def test_conv_kernels_are_scale_invariant_in_training_mode():
    fn = _fn()
    x = jnp.asarray(np.random.default_rng(0).random((16, 8, 8, 1)), jnp.float32)
    scaled = jax.tree.map(lambda a: a, fn.params)
    scaled["convs"][1]["kernel"] = 3.0 * scaled["convs"][1]["kernel"]
    a, _ = fn.apply(fn.params, fn.model_state, x, True)
    b, _ = fn.apply(scaled, fn.model_state, x, True)
    # not a rounding tolerance: BatchNorm's epsilon (var + 1e-5) makes the
    # invariance approximate
    np.testing.assert_allclose(a, b, atol=2e-4)
    # and its gradient is orthogonal to the kernel
    def loss(p):
        return jnp.sum(jnp.square(fn.apply(p, fn.model_state, x, True)[0]))
    g = jax.grad(loss)(fn.params)["convs"][1]["kernel"]
    w = fn.params["convs"][1]["kernel"]
    cos = float(jnp.vdot(g, w) / (jnp.linalg.norm(g) * jnp.linalg.norm(w)))
    assert abs(cos) < 1e-4  # as above, BatchNorm's epsilon, not rounding


def test_flat_input_spec_rejected():
    with pytest.raises(ValueError, match="image"):
        registry.build("cnn", DataSpec(64, 10), 0)
