"""The Fig. 6 grokking transformer (Prieto et al., ICLR 2025) on addition mod 113.

Pairs (i, j) with i, j in [1, 112] as two tokens (12 544 samples, 5 017 train
at 40 %), token embedding (vocab 113, d 128), no positional embedding, one
post-LN encoder layer (4 heads, ReLU FF 2048, dropout 0.1 active in
training; its randomness is a pure function of (seed, step)), a linear head
on the last position. AdamW lr 1e-3, full batch, softmax CE in float32.
Variants (spec table, Fig. 6a)::

    --config.optimizer.name=orthograd_adamw          # ⊥AdamW
    --config.optimizer.weight_decay=1.5              # AdamW, wd 1.5

The defaults β2 0.999, ε 1e-8 are what the released ⊥AdamW run used (its
wrapper ignored its CLI β2 / ε and built torch's default AdamW). The released AdamW runs
(wd 1.5 and wd 0) used the CLI defaults β2 0.99, ε 1e-25;
``experiments/grokking_transformer.py`` runs all three as released.

.. warning::
    With ε = 1e-25 (``--config.optimizer.eps=1e-25``) keep the Adam state in
    float64: ``--config.optimizer.state_dtype=64 --config.enable_x64=True``.
    XLA:CPU flushes float32 subnormals to zero, so a float32 state underflows
    once |g| ≲ 1e-19 and Adam then steps up to ~1e5 × lr, where torch (which
    keeps subnormals) does not (``optim_lab.with_state_dtype``).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import base


def get_config():
    c = base.get_base_config()
    c.seed = 42
    c.steps = 5000
    c.log_every = 10
    c.eval_every = 10
    c.checkpoint_every = 500
    # split_from / init_from: a start file (tests/golden/grokking_transformer.npz,
    # the reference transformer's seed-42 split and initial weights); None = off.
    c.data = ml_collections.ConfigDict(dict(
        name="modular", modulus=113, op="add", train_fraction=0.4, split_seed=0,
        exclude_zero=True, encoding="tokens", split_from=config_dict.placeholder(str)))
    c.model = ml_collections.ConfigDict(dict(
        name="grokking_transformer", d_model=128, num_heads=4, ff_dim=2048,
        num_layers=1, dropout=0.1, init_from=config_dict.placeholder(str)))
    c.optimizer = base.optimizer_config(
        "adamw", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    return c
