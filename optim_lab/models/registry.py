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
from optim_lab.models import grokking_transformer
from optim_lab.models import llama
from optim_lab.models import mlp


def _mlp(spec, rngs, *, hidden=(200, 200), use_bias=True, init="torch", one_hot_groups=0):
    """``one_hot_groups=k``: the inputs are ``k`` concatenated one-hots (e.g. the
    modular data's pair), and the first layer a row gather (:class:`mlp.MLP`)."""
    return mlp.MLP(spec.num_features, tuple(hidden), spec.num_classes,
                   use_bias=use_bias, init=init, one_hot_groups=one_hot_groups, rngs=rngs)


def _cnn(spec, rngs, *, channels=(16, 32, 32), pool_after=1, bn_momentum=0.9):
    shape = spec.num_features
    return cnn.CNN(shape if isinstance(shape, tuple) else (shape,), spec.num_classes,
                   channels=tuple(channels), pool_after=pool_after,
                   bn_momentum=bn_momentum, rngs=rngs)


def _sequence_length(spec, model: str) -> int:
    if not isinstance(spec.num_features, int):
        raise ValueError(f"model {model!r} needs token data (a sequence length as "
                         f"num_features), got input shape {spec.num_features!r}")
    return spec.num_features


def _llama(spec, rngs, *, num_layers=4, d_model=128, num_heads=4, mlp_hidden=344,
           context=0, init_std=0.02, rope_base=10000.0):
    """Vocabulary from ``spec.num_classes``; ``context`` 0: the data's length."""
    return llama.Llama(num_layers=num_layers, d_model=d_model, num_heads=num_heads,
                       mlp_hidden=mlp_hidden,
                       context=context or _sequence_length(spec, "llama"),
                       vocab_size=spec.num_classes, init_std=init_std,
                       rope_base=rope_base, rngs=rngs)


def _grokking_transformer(spec, rngs, *, d_model=128, num_heads=4, ff_dim=2048,
                          num_layers=1, dropout=0.1):
    """Token vocabulary and classes both ``spec.num_classes`` (113 for p = 113)."""
    _sequence_length(spec, "grokking_transformer")
    return grokking_transformer.GrokkingTransformer(
        vocab_size=spec.num_classes, num_classes=spec.num_classes, d_model=d_model,
        num_heads=num_heads, ff_dim=ff_dim, num_layers=num_layers, dropout=dropout,
        rngs=rngs)


_MODELS: dict[str, Callable[..., nnx.Module]] = {
    "cnn": _cnn,
    "grokking_transformer": _grokking_transformer,
    "llama": _llama,
    "mlp": _mlp,
}


def names() -> tuple[str, ...]:
    return tuple(_MODELS)


def build(name: str, spec: Any, seed: int, **kwargs: Any) -> nnx.Module:
    """Builds model ``name`` for the dataset described by ``spec``."""
    return _registry.build("model", name, _MODELS, spec, nnx.Rngs(seed),
                           reserved=("spec", "rngs"), **kwargs)
