"""Model registry: config name -> ``fn(data_spec, rngs, **kwargs) -> nnx.Module``.

``data_spec`` carries the input feature count / shape and the number of
classes, so a model config never repeats facts about the data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from optim_lab import _registry
from optim_lab.models import cnn
from optim_lab.models import mlp


def _mlp(spec, rngs, *, hidden=(200, 200), use_bias=True, init="torch"):
    return mlp.MLP(spec.num_features, tuple(hidden), spec.num_classes,
                   use_bias=use_bias, init=init, rngs=rngs)


def _cnn(spec, rngs, *, channels=(16, 32, 32), pool_after=1, bn_momentum=0.9):
    shape = spec.num_features
    return cnn.CNN(shape if isinstance(shape, tuple) else (shape,), spec.num_classes,
                   channels=tuple(channels), pool_after=pool_after,
                   bn_momentum=bn_momentum, rngs=rngs)


_MODELS: dict[str, Callable[..., nnx.Module]] = {
    "cnn": _cnn,
    "mlp": _mlp,
}


def names() -> tuple[str, ...]:
    return tuple(_MODELS)


def build(name: str, spec: Any, seed: int, **kwargs: Any) -> nnx.Module:
    """Builds model ``name`` for the dataset described by ``spec``."""
    return _registry.build("model", name, _MODELS, spec, nnx.Rngs(seed),
                           reserved=("spec", "rngs"), **kwargs)
