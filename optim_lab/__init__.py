"""optim_lab: optax-compatible optimizers, losses, schedules and probes.

Everything public is re-exported here, flat, and listed in ``__all__``.
"""

from optim_lab.dynamics.alignment import grad_weight_cosine as grad_weight_cosine
from optim_lab.dynamics.collapse import softmax_collapse_frac as softmax_collapse_frac
from optim_lab.dynamics.collapse import zero_loss_frac as zero_loss_frac
from optim_lab.dynamics.norms import effective_step as effective_step
from optim_lab.dynamics.norms import tree_norms as tree_norms
from optim_lab.losses.softmax import softmax_cross_entropy as softmax_cross_entropy
from optim_lab.losses.stablemax import log_stablemax as log_stablemax
from optim_lab.losses.stablemax import stablemax as stablemax
from optim_lab.losses.stablemax import stablemax_cross_entropy as stablemax_cross_entropy
from optim_lab.optimizers.perpgrad import orthograd as orthograd

__version__ = "0.1.0"

__all__ = [
    "effective_step",
    "grad_weight_cosine",
    "log_stablemax",
    "orthograd",
    "softmax_collapse_frac",
    "softmax_cross_entropy",
    "stablemax",
    "stablemax_cross_entropy",
    "tree_norms",
    "zero_loss_frac",
]
