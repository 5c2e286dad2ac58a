"""The one mechanism behind every name -> constructor registry of the lab."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from optim_lab import _validation


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
                             f"{key!r}{did_you_mean(key, accepted)}; it takes "
                             f"{', '.join(accepted)}")


def lookup(kind: str, name: str, table: Mapping[str, Any], *,
           field: str | None = None) -> Any:
    """``table[name]``, or a ``ValueError`` listing the known names.

    The message names the config field, ``field`` (default ``<kind>.name``),
    and suggests the closest known name.
    """
    try:
        _validation.check_choice(field or f"{kind}.name", name, table)
    except ValueError as e:
        raise ValueError(f"{e}{did_you_mean(str(name), table)}") from None
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


def _default_type(param: inspect.Parameter) -> type:
    default = param.default
    if default is inspect.Parameter.empty or default is None:
        return object
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float if isinstance(default, float) else int
    return type(default) if isinstance(default, (str, tuple)) else object


def kwarg_types(fns, reserved: tuple[str, ...] = ()) -> dict[str, type]:
    """Config field type of each keyword of ``fns``, from its default value.

    ``int`` and ``float`` defaults of one name merge to ``float``; any other
    disagreement, and a ``None`` or missing default, gives ``object``.
    """
    out: dict[str, type] = {}
    for fn in fns:
        for name, param in inspect.signature(fn).parameters.items():
            if name in reserved:
                continue
            t = _default_type(param)
            prev = out.setdefault(name, t)
            if prev is not t:
                out[name] = float if {prev, t} == {int, float} else object
    return dict(sorted(out.items()))
