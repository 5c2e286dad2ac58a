"""Argument validation shared by every optim_lab constructor.

Every check runs eagerly, in Python, before anything is traced, and raises a
``ValueError`` that names the argument and the allowed range. Float
hyperparameters must be finite: NaN and ±inf are refused for every range (the
range printed in the message is open at infinity). Schedules (callables) are
accepted where a scalar hyperparameter may be scheduled; their values are not
checked, since calling them would trace user code. Traced values
(``optax.inject_hyperparams`` rebuilds the transform inside ``update``) are
skipped: the concrete initial values were checked at ``init``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np


def _is_schedule(value: Any) -> bool:
    return callable(value)


def is_traced(value: Any) -> bool:
    """Whether ``value`` is a tracer: the one rule for values that cannot be
    checked or branched on.

    A hyperparameter injected by ``optax.inject_hyperparams`` is a tracer
    inside ``update``; it was checked concretely when ``init`` built the
    transform, so the checks here skip it, and a constructor that branches on
    a hyperparameter must take the branch that is valid for any value.
    """
    return isinstance(value, jax.core.Tracer)


def _as_float(name: str, value: Any) -> float:
    try:
        out = float(np.asarray(value))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a number, got {value!r}") from e
    if math.isnan(out):
        raise ValueError(f"{name} must be a number, got NaN")
    return out


def check_range(name: str, value: Any, low: float | None = None,
                high: float | None = None, *, low_inclusive: bool = True,
                high_inclusive: bool = True, allow_schedule: bool = False) -> None:
    """Raises ``ValueError`` unless ``value`` is finite and
    ``low (<|<=) value (<|<=) high`` (``None`` = unbounded)."""
    if (allow_schedule and _is_schedule(value)) or is_traced(value):
        return
    v = _as_float(name, value)
    lo_ok = low is None or (v >= low if low_inclusive else v > low)
    hi_ok = high is None or (v <= high if high_inclusive else v < high)
    finite = math.isfinite(v)
    if not (finite and lo_ok and hi_ok):
        lb = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
        hb = "inf)" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
        must = "be in" if finite else "be finite and in"
        raise ValueError(f"{name} must {must} {lb}, {hb}, got {value!r}")


def check_positive(name: str, value: Any, *, allow_schedule: bool = False) -> None:
    """Raises unless ``value > 0`` (schedules pass when ``allow_schedule``)."""
    check_range(name, value, 0.0, None, low_inclusive=False,
                allow_schedule=allow_schedule)


def check_non_negative(name: str, value: Any, *,
                       allow_schedule: bool = False) -> None:
    """Raises unless ``value >= 0``."""
    check_range(name, value, 0.0, None, allow_schedule=allow_schedule)


def check_unit_interval(name: str, value: Any, *,
                        allow_schedule: bool = False) -> None:
    """Raises unless ``0 <= value < 1`` (decay rates such as b1, b2, momentum)."""
    check_range(name, value, 0.0, 1.0, high_inclusive=False,
                allow_schedule=allow_schedule)


def check_learning_rate(learning_rate: Any) -> None:
    """Raises unless ``learning_rate`` is a positive finite number or a schedule.

    A schedule (any callable of the step) is not called; a traced value
    (``optax.inject_hyperparams``) is skipped.
    """
    check_positive("learning_rate", learning_rate, allow_schedule=True)


def require_params(name: str, params: Any, why: str = "") -> None:
    """Raises ``ValueError`` when a transform that reads the weights got none.

    Args:
        name: The transform, as the user called it (``"scale_by_adamp"``).
        params: The ``params`` argument of its ``update``.
        why: Optional reason, shown in parentheses (e.g. what reads them).
    """
    if params is None:
        why = f" ({why})" if why else ""
        raise ValueError(f"{name} needs the current parameters{why}: call "
                         f"update(updates, state, params).")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raises unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_int(name: str, value: Any, low: int | None = None) -> None:
    """Raises unless ``value`` is an integer ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    """Returns ``value``; raises ``TypeError`` unless it is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")
    return value
