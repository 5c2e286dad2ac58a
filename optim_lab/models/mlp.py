"""Multi-layer perceptron (flax NNX) with the grokking paper's options.

``init="torch"`` reproduces PyTorch's ``nn.Linear`` default, U(±1/√fan_in) for
kernels (``variance_scaling(1/3, "fan_in", "uniform")``) and biases; ``"lecun"``
is flax's default (LeCun normal kernels, zero biases).

**One-hot inputs as a row gather.** When the input is ``k`` concatenated
one-hot vectors (the modular-arithmetic pairs: two one-hots of ``p``), the
first layer's ``x @ W`` only adds up ``k`` rows of ``W``. With
``one_hot_groups=k`` (or integer inputs: the hot positions themselves) the
first layer gathers those rows instead of multiplying, which removes the
first layer's matmul from the forward pass and its kernel-gradient matmul
from the backward pass (about 30 % of the grokking MLP's FLOPs). The
parameters are the same ``(in_features, hidden)`` kernel, so inits, start
files and checkpoints are interchangeable with the dense model. For
``k ≤ 2`` the forward pass is bit-identical to the matmul (every other
product is an exact zero and the sum of two rows is rounded once); the kernel
gradient is a scatter-add of the same terms in another order, equal to the
matmul's within float rounding.
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


def _hot_rows(x: jax.Array, in_features: int, groups: int) -> jax.Array:
    """Rows of the first kernel selected by one-hot / index inputs: ``(B, groups)``.

    Integer ``x`` of shape ``(..., groups)`` holds each group's hot position;
    float ``x`` of shape ``(..., in_features)`` is ``groups`` concatenated
    one-hot vectors (the values are assumed to be exactly 0 or 1).
    """
    if in_features % groups:
        raise ValueError(f"{in_features} input features do not split into "
                         f"{groups} equal one-hot groups (input shape {x.shape})")
    size = in_features // groups
    offsets = jnp.arange(groups, dtype=jnp.int32) * size
    if jnp.issubdtype(x.dtype, jnp.integer):
        if x.shape[-1] != groups:
            raise ValueError(f"integer MLP inputs are the hot positions of {groups} "
                             f"one-hot groups: last axis {groups}, got shape {x.shape}")
        return x.astype(jnp.int32) + offsets
    if x.shape[-1] != in_features:
        raise ValueError(f"one-hot MLP inputs have {in_features} features, got "
                         f"shape {x.shape}")
    # The hot position of each group as Σ_i i·x_i: exact for 0/1 values and
    # cheaper on CPU than an argmax (a variadic reduce).
    hot = x.reshape(*x.shape[:-1], groups, size) @ jnp.arange(size, dtype=x.dtype)
    return hot.astype(jnp.int32) + offsets


def _gather_linear(layer: nnx.Linear, rows: jax.Array) -> jax.Array:
    """``one_hot(rows) @ kernel (+ bias)`` as a sum of gathered kernel rows."""
    out = jnp.take(layer.kernel[...], rows, axis=0).sum(axis=-2)
    return out + layer.bias[...] if layer.bias is not None else out


class MLP(nnx.Module):
    """ReLU MLP ``in -> hidden... -> out``.

    ``hidden`` holds positive integer widths (``()``: a linear model); anything
    else is an error naming ``model.hidden``, raised before a layer is built.

    ``one_hot_groups=k`` (``in_features`` divisible by ``k``) declares the
    float inputs to be ``k`` concatenated one-hot vectors and computes the
    first layer as a row gather (module docstring); integer inputs
    ``(..., k)`` (the hot positions) take that path whatever the option, with
    ``k`` their last axis when it is 0. Inputs that are not exactly one-hot
    must keep the default ``one_hot_groups=0`` (a dense matmul).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from optim_lab.models.mlp import MLP
        >>> MLP(4, (8,), 3, rngs=nnx.Rngs(0))(jnp.ones((2, 4))).shape
        (2, 3)
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int,
                 *, use_bias: bool = True, init: str = "torch",
                 one_hot_groups: int = 0, dtype=jnp.float32, rngs: nnx.Rngs):
        _validation.check_choice("model.init", init, INITS)
        for width in hidden:  # before any layer exists: (0,) would divide by zero
            _validation.check_int("model.hidden", width, low=1)
        _validation.check_int("model.one_hot_groups", one_hot_groups, low=0)
        if one_hot_groups and in_features % one_hot_groups:
            raise ValueError(f"model.one_hot_groups: {in_features} input features do "
                             f"not split into {one_hot_groups} equal one-hot groups")
        self.in_features, self.one_hot_groups = in_features, one_hot_groups
        sizes = [in_features, *hidden, out_features]
        self.layers = nnx.List([
            _linear(a, b, use_bias, init, rngs, dtype)
            for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        groups = self.one_hot_groups
        if not groups and jnp.issubdtype(x.dtype, jnp.integer):
            groups = x.shape[-1]
        layers = list(self.layers)
        if groups:
            x = _gather_linear(layers[0], _hot_rows(x, self.in_features, groups))
            x = x if len(layers) == 1 else jax.nn.relu(x)
            layers = layers[1:]
        for i, layer in enumerate(layers):
            x = layer(x)
            x = x if i == len(layers) - 1 else jax.nn.relu(x)
        return x
