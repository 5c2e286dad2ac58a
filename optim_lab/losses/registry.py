"""Loss registry: config name -> per-example loss ``fn(logits, labels, dtype=)``.

Names are looked up through :mod:`optim_lab._registry`, the one mechanism
behind every registry of the lab (an unknown name lists the known ones and
suggests the closest). A new loss joins by adding one entry to ``_LOSSES``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from optim_lab import _registry
from optim_lab import _validation
from optim_lab.losses import softmax
from optim_lab.losses import stablemax

LossFn = Callable[..., jax.Array]

_LOSSES: dict[str, LossFn] = {
    "softmax": softmax.softmax_cross_entropy,
    "stablemax": stablemax.stablemax_cross_entropy,
}

_DTYPES = {16: jnp.float16, 32: jnp.float32, 64: jnp.float64}


def names() -> tuple[str, ...]:
    """Registered loss names."""
    return tuple(_LOSSES)


def get(name: str) -> LossFn:
    """Returns the loss called ``name``; ``ValueError`` names the known ones.

    Examples:
        >>> from optim_lab.losses import registry
        >>> registry.get("stablemax").__name__
        'stablemax_cross_entropy'
    """
    return _registry.lookup("loss", name, _LOSSES, field="loss")


def dtype_from_bits(bits: int) -> jnp.dtype:
    """16/32/64 -> float dtype; 64 requires ``jax_enable_x64``."""
    _validation.check_choice("loss_dtype", bits, _DTYPES)
    if bits == 64 and not jax.config.jax_enable_x64:
        raise ValueError("loss_dtype=64 needs 64-bit JAX: set "
                         "config.enable_x64=True (jax_enable_x64).")
    return _DTYPES[bits]
