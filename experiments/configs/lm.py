"""Byte-level LLaMA-style language model on the Python standard library's sources.

The weight-rescaling spec's smallest faithful CPU experiment: 4 pre-RMSNorm blocks,
d 128, 4 heads, SwiGLU 344, context 128, batch 32, AdamW lr 3e-3, weight decay
0.1, ~2 000 steps. Variants override fields::

    --config.model.init_std=0.006 --config.rescaling.lir_base_std=0.006   # (b) LIR
    --config.rescaling.tvr_target=0.01 --config.rescaling.tvr_interval=50  # (c) + TVR

The corpus (default: the stdlib's ``.py`` files, first 8 MiB in sorted order;
``--config.data.path=FILE`` for any text file) is fingerprinted (size +
sha256) in the run's ``config.json``. Logs validation loss and bits per byte.
"""

import ml_collections

from experiments.configs import base


def get_config():
    c = base.get_base_config()
    c.seed = 0
    c.steps = 2000
    c.batch_size = 32
    c.log_every = 50
    c.eval_every = 250
    c.checkpoint_every = 500
    c.loss = "softmax"
    c.data = ml_collections.ConfigDict(dict(
        name="text", path="", context=128, val_fraction=0.1,
        max_bytes=8 * 2 ** 20, eval_windows=64))
    c.model = ml_collections.ConfigDict(dict(
        name="llama", num_layers=4, d_model=128, num_heads=4, mlp_hidden=344,
        context=128, init_std=0.02, rope_base=10000.0))
    c.optimizer = base.optimizer_config(
        "adamw", learning_rate=3e-3, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1)
    return c
