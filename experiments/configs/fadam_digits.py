"""FAdam vs AdamW on the digits classifier.

sklearn ``load_digits`` (8x8 images, 10 classes), MLP 64-64-10 with biases,
batch 64, softmax cross-entropy, 600 steps. ``experiments/fadam.py`` sweeps
optimizer × learning rate × weight decay × seed over this config; a single
run::

    python -m experiments.train --config=experiments/configs/fadam_digits.py \
        --workdir=/tmp/fadam_digits --config.optimizer.name=adamw
"""

import ml_collections

from experiments.configs import base


def get_config():
    c = base.get_base_config()
    c.seed = 0
    c.steps = 600
    c.batch_size = 64
    c.log_every = 10
    c.eval_every = 100
    c.checkpoint_every = 600
    c.data = ml_collections.ConfigDict(dict(name="digits"))
    c.model = ml_collections.ConfigDict(dict(
        name="mlp", hidden=(64,), use_bias=True, init="torch"))
    c.optimizer = base.optimizer_config("fadam", learning_rate=1e-3,
                                        weight_decay=0.1)
    return c
