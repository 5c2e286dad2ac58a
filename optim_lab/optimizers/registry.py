"""Optimizer registry: config name -> validated optax constructor.

Every constructor takes ``learning_rate`` (a float or an optax schedule) and
keyword hyperparameters, validates them eagerly and returns an
``optax.GradientTransformationExtraArgs`` (so ``value=`` reaches transforms that
need the loss, and is ignored by the others). A ``orthograd_`` prefix wraps
any registered optimizer in ⊥Grad: ``orthograd_adamw`` is
``optax.chain(orthograd(...), adamw(...))``; its options are the
hyperparameters ``orthograd_scope``, ``orthograd_renormalize`` and
``orthograd_zero_if_parallel``.

``build`` is strict: a hyperparameter the optimizer does not take is an error,
never silently ignored. Code that lets one config serve every optimizer (the
experiment binaries: ``--config.optimizer.name=sgd`` on an AdamW config) asks
:func:`hyperparameters_of` which fields the chosen optimizer takes and unsets
the others itself, explicitly (``experiments/_cli.py``).

A new optimizer joins the lab (config flags, the shared test bar and the update
benchmark) by adding one :class:`Entry` to ``_ENTRIES``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import optax

from optim_lab import _registry
from optim_lab.optimizers import adamp
from optim_lab.optimizers import baselines
from optim_lab.optimizers import fadam
from optim_lab.optimizers import perpgrad
from optim_lab.optimizers import polyak

ORTHOGRAD_PREFIX = "orthograd_"
_ORTHOGRAD_ARGS = {"orthograd_scope": "scope",
                   "orthograd_renormalize": "renormalize",
                   "orthograd_zero_if_parallel": "zero_if_parallel"}
_ORTHOGRAD_TYPES = {"orthograd_scope": str, "orthograd_renormalize": bool,
                    "orthograd_zero_if_parallel": bool}


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered optimizer.

    Attributes:
        constructor: ``fn(learning_rate, **hyperparameters) -> transform``.
        baseline: Name of the optax baseline it is benchmarked against, as a
            ``(registry name, hyperparameters)`` pair, or ``None``.
        needs_value: Whether ``update`` requires the loss via ``value=``.
        test_hparams: Hyperparameters for the shared test bar (e.g. a small lr).
    """
    constructor: Callable[..., optax.GradientTransformation]
    baseline: tuple[str, Mapping[str, Any]] | None = None
    needs_value: bool = False
    test_hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_ENTRIES: dict[str, Entry] = {
    "adamw": Entry(baselines.adamw, test_hparams={"learning_rate": 1e-2}),
    "adam": Entry(baselines.adam, test_hparams={"learning_rate": 1e-2}),
    "sgd": Entry(baselines.sgd, test_hparams={"learning_rate": 1e-3,
                                              "momentum": 0.9}),
    "adamp": Entry(adamp.adamp, baseline=("adamw", {"weight_decay": 1e-2}),
                   test_hparams={"learning_rate": 1e-2, "weight_decay": 1e-2}),
    "sgdp": Entry(adamp.sgdp, baseline=("sgd", {"momentum": 0.9}),
                  test_hparams={"learning_rate": 1e-3, "momentum": 0.9}),
    "fadam": Entry(fadam.fadam, baseline=("adamw", {"weight_decay": 0.1}),
                   test_hparams={"learning_rate": 1e-2, "weight_decay": 1e-3}),
    "alr_smag": Entry(polyak.alr_smag, baseline=("sgd", {"momentum": 0.9}),
                      needs_value=True, test_hparams={"learning_rate": 1.0}),
    "alr_hb": Entry(polyak.alr_hb, baseline=("sgd", {"momentum": 0.9}),
                    needs_value=True, test_hparams={"learning_rate": 1.0}),
}

# name -> constructor, for every name ``build`` accepts (``orthograd_<name>``
# builds ``<name>``'s constructor, then wraps it).
_CONSTRUCTORS: dict[str, Callable[..., optax.GradientTransformation]] = {
    prefix + name: entry.constructor
    for prefix in ("", ORTHOGRAD_PREFIX) for name, entry in _ENTRIES.items()}


def names(*, with_orthograd: bool = False) -> tuple[str, ...]:
    """Registered names (optionally with their ``orthograd_`` variants)."""
    base = tuple(_ENTRIES)
    if with_orthograd:
        base += tuple(ORTHOGRAD_PREFIX + n for n in _ENTRIES)
    return base


def get(name: str) -> Entry:
    """The entry for ``name`` (``orthograd_`` prefix stripped)."""
    base = name[len(ORTHOGRAD_PREFIX):] if name.startswith(ORTHOGRAD_PREFIX) else name
    if base not in _ENTRIES:
        raise ValueError(
            f"optimizer.name: unknown optimizer {name!r}"
            f"{_registry.did_you_mean(str(name), names(with_orthograd=True))}; known: "
            f"{', '.join(names())} (each also as '{ORTHOGRAD_PREFIX}<name>')")
    return _ENTRIES[base]


def hyperparameters_of(name: str) -> tuple[str, ...]:
    """The hyperparameters optimizer ``name`` takes, besides ``learning_rate``.

    ``orthograd_<name>`` takes ``<name>``'s and the ``orthograd_*`` options.

    Examples:
        >>> from optim_lab.optimizers import registry
        >>> registry.hyperparameters_of("sgd")
        ('momentum', 'nesterov', 'weight_decay')
    """
    taken = [k for k in _registry.accepted_kwargs(get(name).constructor)
             if k != "learning_rate"]
    if name.startswith(ORTHOGRAD_PREFIX):
        taken += list(_ORTHOGRAD_ARGS)
    return tuple(taken)


def hyperparameter_types() -> dict[str, type]:
    """Every registered hyperparameter (the config fields) and its type."""
    types = _registry.kwarg_types([e.constructor for e in _ENTRIES.values()],
                                  ("learning_rate",))
    types.update(_ORTHOGRAD_TYPES)
    return dict(sorted(types.items()))


def hyperparameter_names() -> tuple[str, ...]:
    """Union of every registered constructor's hyperparameters."""
    return tuple(hyperparameter_types())


def build(name: str, learning_rate: optax.ScalarOrSchedule,
          **hyperparameters: Any) -> optax.GradientTransformationExtraArgs:
    """Builds optimizer ``name``; ``None``-valued hyperparameters mean default.

    The constructor is looked up, its keyword arguments checked and called by
    :func:`optim_lab._registry.build` (the lab's one registry mechanism); an
    ``orthograd_`` name is then wrapped in ⊥Grad, built the same way from the
    ``orthograd_*`` hyperparameters.

    Raises:
        ValueError: unknown name, a hyperparameter the optimizer does not take,
            or an out-of-range value (the message names the field).

    Examples:
        >>> from optim_lab.optimizers import registry
        >>> tx = registry.build("orthograd_sgd", 0.1, momentum=0.9, orthograd_scope="global")
        >>> len(tx.init({"w": 1.0}))  # (⊥Grad, sgd)
        2
    """
    get(name)  # an unknown name: the message also mentions the orthograd_ variants
    hp = {k: v for k, v in hyperparameters.items() if v is not None}
    wrap = name.startswith(ORTHOGRAD_PREFIX)
    ortho_keys = [k for k in hp if k in _ORTHOGRAD_ARGS]
    if ortho_keys and not wrap:
        raise ValueError(f"optimizer.{ortho_keys[0]}: only valid for "
                         f"'{ORTHOGRAD_PREFIX}*' optimizers, not {name!r}")
    ortho = {_ORTHOGRAD_ARGS[k]: hp.pop(k) for k in ortho_keys}
    tx = _registry.build("optimizer", name, _CONSTRUCTORS, learning_rate,
                         reserved=("learning_rate",), **hp)
    if wrap:
        tx = optax.chain(
            _registry.build("optimizer", name, {name: perpgrad.orthograd}, **ortho), tx)
    return optax.with_extra_args_support(tx)
