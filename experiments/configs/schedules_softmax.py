"""Refined schedules, convex case: softmax regression on digits with SGD.

Linear model 64 -> 10 (a bias-carrying MLP without hidden layers), SGD
without momentum, batch 32, T = 2 000 steps, gradient norms logged every 10
steps (window means). ``refine_from`` runs use the L2 norms (w = G^-2).
Schedules are swept by ``experiments/schedules.py``; a single run::

    python -m experiments.train --config=experiments/configs/schedules_softmax.py \
        --workdir=/tmp/sm_linear --config.schedule.name=linear
"""

import ml_collections

from experiments.configs import base


def get_config():
    c = base.get_base_config()
    c.seed = 0
    c.steps = 2000
    c.batch_size = 32
    c.log_every = 10
    c.eval_every = 200
    c.checkpoint_every = 2000
    c.data = ml_collections.ConfigDict(dict(name="digits"))
    c.model = ml_collections.ConfigDict(dict(
        name="mlp", hidden=(), use_bias=True, init="torch"))
    c.optimizer = base.optimizer_config("sgd", learning_rate=0.1)
    c.schedule = base.schedule_config("constant")
    return c
