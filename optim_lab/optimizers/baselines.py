"""optax baselines (AdamW, Adam, SGD) behind validated constructors.

optax itself accepts a negative learning rate or ``b2 = 1`` silently; these
thin wrappers check every hyperparameter before anything is traced and then
return the unchanged optax transformation, so numerics are optax's own.
"""

from __future__ import annotations

import optax

from optim_lab import _validation


def _check_adam_args(learning_rate, b1, b2, eps, weight_decay=0.0):
    _validation.check_learning_rate(learning_rate)
    _validation.check_unit_interval("b1", b1)
    _validation.check_unit_interval("b2", b2)
    _validation.check_non_negative("eps", eps)
    _validation.check_non_negative("weight_decay", weight_decay,
                                   allow_schedule=True)


def adamw(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9,
          b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 1e-4,
          nesterov: bool = False) -> optax.GradientTransformation:
    """``optax.adamw`` with validated arguments (decoupled weight decay)."""
    _check_adam_args(learning_rate, b1, b2, eps, weight_decay)
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps,
                       weight_decay=weight_decay, nesterov=nesterov)


def adam(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9,
         b2: float = 0.999, eps: float = 1e-8,
         nesterov: bool = False) -> optax.GradientTransformation:
    """``optax.adam`` with validated arguments."""
    _check_adam_args(learning_rate, b1, b2, eps)
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps, nesterov=nesterov)


def sgd(learning_rate: optax.ScalarOrSchedule, momentum: float = 0.0,
        nesterov: bool = False, weight_decay: float = 0.0
        ) -> optax.GradientTransformation:
    """``optax.sgd`` (heavy ball = torch SGD without dampening), validated.

    ``weight_decay`` is coupled (added to the gradient before momentum), as in
    ``torch.optim.SGD``.
    """
    _validation.check_learning_rate(learning_rate)
    _validation.check_unit_interval("momentum", momentum)
    _validation.check_non_negative("weight_decay", weight_decay)
    tx = optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)
    if weight_decay:
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    return tx
