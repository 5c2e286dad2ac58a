"""Dataset registry: config name -> ``fn(**kwargs) -> Dataset``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optim_lab import _registry
from optim_lab.data.dataset import Dataset
from optim_lab.data.digits import digits
from optim_lab.data.modular import modular_arithmetic
from optim_lab.data.parity import sparse_parity
from optim_lab.data.text import byte_text

_DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "modular": modular_arithmetic,
    "sparse_parity": sparse_parity,
    "text": byte_text,
}


def names() -> tuple[str, ...]:
    return tuple(_DATASETS)


def build(name: str, **kwargs: Any) -> Dataset:
    """Builds dataset ``name``; unknown keyword arguments are errors."""
    return _registry.build("data", name, _DATASETS, **kwargs)
