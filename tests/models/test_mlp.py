"""MLP: torch-default init statistics, bias option, functional view."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optim_lab.models.functional import functionalize
from optim_lab.models.mlp import MLP
from tolerances import F32, assert_close, ulp


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
