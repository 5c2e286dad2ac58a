"""Schedule registry: config name -> optax schedule of the step.

``build(name, base_lr, total_steps, **kwargs)`` returns a float for
``"constant"`` (so optimizers see a plain scalar) and an optax schedule
otherwise. A new schedule joins by adding one entry to ``_SCHEDULES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from optim_lab import _registry
from optim_lab import _validation


def constant(base_lr: float, total_steps: int) -> float:
    """The base learning rate at every step."""
    del total_steps
    _validation.check_positive("learning_rate", base_lr)
    return base_lr


_SCHEDULES: dict[str, Callable[..., optax.ScalarOrSchedule]] = {
    "constant": constant,
}


def names() -> tuple[str, ...]:
    return tuple(_SCHEDULES)


def hyperparameter_names() -> tuple[str, ...]:
    """Union of every schedule's keyword arguments (the config fields)."""
    return _registry.union_kwargs(_SCHEDULES.values(), ("base_lr", "total_steps"))


def build(name: str, base_lr: float, total_steps: int,
          **kwargs: Any) -> optax.ScalarOrSchedule:
    """Builds schedule ``name``; ``None``-valued kwargs mean "default"."""
    return _registry.build("schedule", name, _SCHEDULES, base_lr, total_steps,
                           reserved=("base_lr", "total_steps"), **kwargs)
