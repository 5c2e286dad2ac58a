"""Training-dynamics probes: pure functions of arrays returning flat dicts."""

from optim_lab.dynamics.alignment import grad_weight_cosine
from optim_lab.dynamics.collapse import softmax_collapse_frac
from optim_lab.dynamics.collapse import zero_loss_frac
from optim_lab.dynamics.curvature import top_hessian_eigenvalue
from optim_lab.dynamics.norms import effective_step
from optim_lab.dynamics.norms import leaf_name
from optim_lab.dynamics.norms import tree_norms

__all__ = [
    "effective_step",
    "grad_weight_cosine",
    "leaf_name",
    "softmax_collapse_frac",
    "top_hessian_eigenvalue",
    "tree_norms",
    "zero_loss_frac",
]
