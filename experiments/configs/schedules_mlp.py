"""Refined schedules, non-convex case: a 2-layer MLP on digits with Adam.

MLP 64-64-10 (ReLU), Adam, batch 32, T = 2 000 steps, gradient norms logged
every 10 steps. ``refine_from`` runs use the L1 norms of the raw gradient
(w = G^-1, the paper's Adam variant): ``--config.schedule.norm=l1``.
"""

from experiments.configs import base
from experiments.configs import schedules_softmax


def get_config():
    c = schedules_softmax.get_config()
    c.model.hidden = (64,)
    c.optimizer = base.optimizer_config("adam", learning_rate=1e-3)
    return c
