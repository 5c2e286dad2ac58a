"""ALR-SMAG on the digits classifier: a CPU stand-in for MLP 2×100 / MNIST.

sklearn ``load_digits`` (1 437 train / 360 test), MLP 64-100-100-10 with
biases, batch 128, softmax cross-entropy, 120 steps (~10.7 epochs), no
schedule and no weight decay (as in the NGN-M paper's Table 7 row).
``experiments/polyak.py`` sweeps the cap / learning rate; a single run::

    python -m experiments.train --config=experiments/configs/polyak_digits.py \
        --workdir=/tmp/polyak_digits --config.optimizer.learning_rate=1.0

The run logs the effective step τ of ALR-SMAG each step as ``opt/tau``.
"""

import ml_collections

from experiments.configs import base


def get_config():
    c = base.get_base_config()
    c.seed = 0
    c.steps = 120
    c.batch_size = 128
    c.log_every = 1
    c.eval_every = 120
    c.checkpoint_every = 120
    c.log_state_fields = ("tau", "t1")
    c.data = ml_collections.ConfigDict(dict(name="digits"))
    c.model = ml_collections.ConfigDict(dict(
        name="mlp", hidden=(100, 100), use_bias=True, init="torch"))
    c.optimizer = base.optimizer_config("alr_smag", learning_rate=1.0, beta=0.9)
    return c
