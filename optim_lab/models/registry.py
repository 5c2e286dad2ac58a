"""Model registry: config name -> ``fn(data_spec, rngs, **kwargs) -> nnx.Module``.

``data_spec`` carries the input feature count / shape and the number of
classes, so a model config never repeats facts about the data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from optim_lab import _registry
from optim_lab.models import mlp


def _mlp(spec, rngs, *, hidden=(200, 200), use_bias=True, init="torch"):
    return mlp.MLP(spec.num_features, tuple(hidden), spec.num_classes,
                   use_bias=use_bias, init=init, rngs=rngs)


_MODELS: dict[str, Callable[..., nnx.Module]] = {
    "mlp": _mlp,
}


def names() -> tuple[str, ...]:
    return tuple(_MODELS)


def build(name: str, spec: Any, seed: int, **kwargs: Any) -> nnx.Module:
    """Builds model ``name`` for the dataset described by ``spec``."""
    return _registry.build("model", name, _MODELS, spec, nnx.Rngs(seed),
                           reserved=("spec", "rngs"), **kwargs)
