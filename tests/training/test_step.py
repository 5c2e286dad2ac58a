"""optim_lab.training.step: the evaluation's accuracy is exact at 100 %."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab.training import step

F32_EPS = float(np.finfo(np.float32).eps)


def _logits(labels, correct):
    """One-hot logits right on the first ``correct`` examples, wrong after."""
    pred = jnp.where(jnp.arange(labels.size) < correct, labels, (labels + 1) % 7)
    return jax.nn.one_hot(pred, 7)


@pytest.mark.parametrize("n", [5017, 5107, 100])
def test_accuracy_is_exactly_one_when_all_are_right(n):
    # jnp.mean of 5 017 ones is 0.99999994 (it multiplies by a rounded 1/n)
    assert float(jnp.mean(jnp.ones(5017, jnp.float32))) < 1.0
    labels = jnp.arange(n) % 7
    acc = jax.jit(step._accuracy)
    assert float(acc(_logits(labels, n), labels)) == 1.0
    assert float(acc(_logits(labels, 0), labels)) == 0.0
    batched = jax.vmap(step._accuracy, in_axes=(0, None))(
        jnp.stack([_logits(labels, n), _logits(labels, n // 2)]), labels)
    assert float(batched[0]) == 1.0
    np.testing.assert_allclose(float(batched[1]), (n // 2) / n, rtol=2 * F32_EPS)
