"""A small BatchNorm CNN (flax NNX) whose conv kernels are scale-invariant.

``conv3x3 (no bias) -> BatchNorm -> ReLU`` blocks, a 2x2 max-pool after the
second block, global average pooling and a dense head. Because every conv is
followed by BatchNorm (batch statistics in training), the loss is invariant to
the scale of each conv kernel: the setting AdamP / SGDP are built for. Conv
kernels use flax layout ``(3, 3, in, out)`` (output channel last).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from optim_lab import _validation


class CNN(nnx.Module):
    """BN-CNN for small NHWC images.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from optim_lab.models.cnn import CNN
        >>> CNN((8, 8, 1), 10, channels=(4, 8), rngs=nnx.Rngs(0))(jnp.ones((2, 8, 8, 1))).shape
        (2, 10)
    """

    def __init__(self, image_shape: Sequence[int], num_classes: int, *,
                 channels: Sequence[int] = (16, 32, 32), pool_after: int = 1,
                 bn_momentum: float = 0.9, rngs: nnx.Rngs):
        if len(image_shape) != 3:
            raise ValueError(f"model.image_shape must be (H, W, C), got {image_shape!r}; "
                             "use an image dataset (e.g. data.image=True for digits)")
        if not len(channels):
            raise ValueError("model.channels must hold at least one conv width, got ()")
        for width in channels:
            _validation.check_int("model.channels", width, low=1)
        _validation.check_int("model.pool_after", pool_after, low=-1)
        _validation.check_unit_interval("model.bn_momentum", bn_momentum)
        sizes = [image_shape[-1], *channels]
        self.convs = nnx.List([
            nnx.Conv(a, b, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
            for a, b in zip(sizes[:-1], sizes[1:])])
        self.norms = nnx.List([nnx.BatchNorm(b, momentum=bn_momentum, rngs=rngs)
                               for b in channels])
        self.head = nnx.Linear(channels[-1], num_classes, rngs=rngs)
        self.pool_after = pool_after

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = jax.nn.relu(norm(conv(x)))
            if i == self.pool_after:
                x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        return self.head(jnp.mean(x, axis=(1, 2)))
