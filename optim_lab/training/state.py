"""The training state: everything a checkpoint must hold for an exact resume."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax


class TrainState(NamedTuple):
    """Pure pytree carried by the jitted step.

    Attributes:
        step: Number of optimizer steps taken (int32 scalar). With
            (seed, step) -> batch data, it is also the data position.
        params: Trainable parameters (nested dict of arrays).
        model_state: Non-trainable model variables (BatchNorm statistics...).
        opt_state: The optax state.
        rng: A raw uint32 PRNG key, folded with ``step`` for stochastic layers.
    """
    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array
