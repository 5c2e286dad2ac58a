"""Gradient / weight cosine probe (NLM)."""

import jax.numpy as jnp
import numpy as np

from optim_lab import grad_weight_cosine

from tolerances import assert_close


def test_per_leaf_and_global_values():
    params = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([[0.0, 2.0]])}
    grads = {"a": jnp.array([-3.0, 0.0]), "b": jnp.array([[1.0, 0.0]])}
    out = grad_weight_cosine(grads, params)
    # cosines: 4 eps of |cos| + 1 (their natural scale)
    assert_close(out["cos_neg_grad_weight/a"], 1.0, ulps=4, scale=1.0)
    assert_close(out["cos_neg_grad_weight/b"], 0.0, ulps=4, scale=1.0)
    gv, wv = np.array([-3.0, 0, 1, 0]), np.array([1.0, 0, 0, 2])
    want = -gv @ wv / (np.linalg.norm(gv) * np.linalg.norm(wv))
    assert_close(out["cos_neg_grad_weight/global"], want, ulps=4, scale=1.0)


def test_zero_leaves_give_zero_not_nan():
    out = grad_weight_cosine({"z": jnp.zeros(3), "g": jnp.ones(2)},
                             {"z": jnp.zeros(3), "g": jnp.zeros(2)})
    for v in out.values():
        assert float(v) == 0.0


def test_nested_names():
    out = grad_weight_cosine({"layers": {0: {"kernel": jnp.ones(2)}}},
                             {"layers": {0: {"kernel": -jnp.ones(2)}}})
    assert_close(out["cos_neg_grad_weight/layers/0/kernel"], 1.0, ulps=4, scale=1.0)
