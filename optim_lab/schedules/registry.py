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
from optim_lab.schedules import decay
from optim_lab.schedules import refined


def constant(base_lr: float, total_steps: int) -> float:
    """The base learning rate at every step."""
    del total_steps
    _validation.check_positive("learning_rate", base_lr)
    return base_lr


def _table(base_lr: float, total_steps: int, table=None) -> optax.Schedule:
    """``from_table`` in the registry's ``(base_lr, total_steps, **kw)`` form."""
    if table is None:
        raise ValueError("table must be a sequence of >= 2 multipliers")
    return decay.from_table(base_lr, table, total_steps)


_SCHEDULES: dict[str, Callable[..., optax.ScalarOrSchedule]] = {
    "constant": constant,
    "linear": decay.linear_decay,
    "cosine": decay.cosine_decay,
    "wsd": decay.wsd,
    "table": _table,
    "refined": refined.refined_from_run,
}


def names() -> tuple[str, ...]:
    return tuple(_SCHEDULES)


def accepts(name: str, kwarg: str) -> bool:
    """Whether schedule ``name`` takes keyword ``kwarg``."""
    fn = _registry.lookup("schedule", name, _SCHEDULES)
    return kwarg in _registry.accepted_kwargs(fn)


def hyperparameter_types() -> dict[str, type]:
    """Every schedule keyword argument (the config fields) and its type."""
    return _registry.kwarg_types(_SCHEDULES.values(), ("base_lr", "total_steps"))


def hyperparameter_names() -> tuple[str, ...]:
    """Union of every schedule's keyword arguments."""
    return tuple(hyperparameter_types())


def build(name: str, base_lr: float, total_steps: int,
          **kwargs: Any) -> optax.ScalarOrSchedule:
    """Builds schedule ``name``; ``None``-valued kwargs mean "default"."""
    return _registry.build("schedule", name, _SCHEDULES, base_lr, total_steps,
                           reserved=("base_lr", "total_steps"), **kwargs)
