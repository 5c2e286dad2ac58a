"""The one mechanism behind every name -> constructor registry of the lab."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from optim_lab import _validation


def accepted_kwargs(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Names of ``fn``'s parameters."""
    return tuple(inspect.signature(fn).parameters)


def check_kwargs(kind: str, name: str, fn: Callable[..., Any],
                 kwargs: Mapping[str, Any], reserved: tuple[str, ...] = ()) -> None:
    """Raises ``ValueError`` naming ``<kind>.<key>`` for an unaccepted kwarg."""
    accepted = [a for a in accepted_kwargs(fn) if a not in reserved]
    for key in kwargs:
        if key not in accepted:
            raise ValueError(f"{kind}.{key}: {kind} {name!r} does not take "
                             f"{key!r}; it takes {', '.join(accepted)}")


def lookup(kind: str, name: str, table: Mapping[str, Any]) -> Any:
    """``table[name]``, or a ``ValueError`` listing the known names."""
    _validation.check_choice(f"{kind}.name", name, table)
    return table[name]


def build(kind: str, name: str, table: Mapping[str, Callable[..., Any]], /,
          *args: Any, reserved: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """Looks ``name`` up, checks ``kwargs`` (``None`` = default) and calls it.

    Errors raised by the constructor are re-raised with ``kind (name):``
    prepended, so the message says which config section is wrong.
    """
    fn = lookup(kind, name, table)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    check_kwargs(kind, name, fn, kwargs, reserved)
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{kind} ({name}): {e}") from e


def union_kwargs(fns, reserved: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Sorted union of the keyword names of ``fns`` (config fields)."""
    out = set()
    for fn in fns:
        out.update(accepted_kwargs(fn))
    return tuple(sorted(out - set(reserved)))
