"""Multi-layer perceptron (flax NNX) with the grokking paper's options.

``init="torch"`` reproduces PyTorch's ``nn.Linear`` default, U(±1/√fan_in) for
kernels (``variance_scaling(1/3, "fan_in", "uniform")``) and biases; ``"lecun"``
is flax's default (LeCun normal kernels, zero biases).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from optim_lab import _validation

INITS = ("torch", "lecun")


def _torch_bias_init(fan_in: int):
    bound = 1.0 / fan_in ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def _linear(din: int, dout: int, use_bias: bool, init: str, rngs: nnx.Rngs,
            dtype) -> nnx.Linear:
    kw = {}
    if init == "torch":
        kw = dict(kernel_init=nnx.initializers.variance_scaling(
                      1 / 3, "fan_in", "uniform"),
                  bias_init=_torch_bias_init(din))
    return nnx.Linear(din, dout, use_bias=use_bias, rngs=rngs,
                      param_dtype=dtype, dtype=dtype, **kw)


class MLP(nnx.Module):
    """ReLU MLP ``in -> hidden... -> out``.

    ``hidden`` holds positive integer widths (``()``: a linear model); anything
    else is an error naming ``model.hidden``, raised before a layer is built.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from optim_lab.models.mlp import MLP
        >>> MLP(4, (8,), 3, rngs=nnx.Rngs(0))(jnp.ones((2, 4))).shape
        (2, 3)
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int,
                 *, use_bias: bool = True, init: str = "torch",
                 dtype=jnp.float32, rngs: nnx.Rngs):
        _validation.check_choice("model.init", init, INITS)
        for width in hidden:  # before any layer exists: (0,) would divide by zero
            _validation.check_int("model.hidden", width, low=1)
        sizes = [in_features, *hidden, out_features]
        self.layers = nnx.List([
            _linear(a, b, use_bias, init, rngs, dtype)
            for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)
