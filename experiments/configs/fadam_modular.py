"""FAdam vs AdamW on modular addition: a small, CPU-sized setting.

Addition mod 59, 50 % train split, MLP 118-128-128-59 without biases
(PyTorch-default init), full batch, softmax cross-entropy, 1 000 steps.
``experiments/fadam.py`` sweeps optimizer × learning rate × weight decay ×
seed over this config; a single run::

    python -m experiments.train --config=experiments/configs/fadam_modular.py \
        --workdir=/tmp/fadam_mod --config.optimizer.learning_rate=3e-3
"""

import ml_collections

from experiments.configs import base


def get_config():
    c = base.get_base_config()
    c.seed = 0
    c.steps = 1000
    c.batch_size = 0
    c.log_every = 10
    c.eval_every = 100
    c.checkpoint_every = 1000
    c.data = ml_collections.ConfigDict(dict(
        name="modular", modulus=59, op="add", train_fraction=0.5, split_seed=0))
    c.model = ml_collections.ConfigDict(dict(
        name="mlp", hidden=(128, 128), use_bias=False, init="torch"))
    c.optimizer = base.optimizer_config("fadam", learning_rate=1e-3,
                                        weight_decay=0.1)
    return c
