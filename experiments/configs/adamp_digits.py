"""AdamP vs AdamW on a BatchNorm CNN on digits.

scikit-learn ``load_digits`` as 8x8x1 images, the BN-CNN 16-32-32 (bias-free
3x3 convs, each followed by BatchNorm, so the conv kernels are
scale-invariant), batch 64, softmax cross-entropy, constant lr 1e-2, 1 000
steps (~45 epochs). ``experiments/adamp.py`` sweeps optimizer × weight decay ×
seed over this config; a single run::

    python -m experiments.train --config=experiments/configs/adamp_digits.py \
        --workdir=/tmp/adamp_digits --config.optimizer.name=adamw
"""

import ml_collections

from experiments.configs import base


def get_config():
    c = base.get_base_config()
    c.seed = 0
    c.steps = 1000
    c.batch_size = 64
    c.log_every = 20
    c.eval_every = 100
    c.checkpoint_every = 1000
    c.data = ml_collections.ConfigDict(dict(name="digits", image=True))
    c.model = ml_collections.ConfigDict(dict(
        name="cnn", channels=(16, 32, 32), pool_after=1, bn_momentum=0.9))
    c.optimizer = base.optimizer_config("adamp", learning_rate=1e-2,
                                        weight_decay=1e-2)
    return c
