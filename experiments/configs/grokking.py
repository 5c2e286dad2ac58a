"""Grokking on addition mod 113 (Prieto et al., ICLR 2025), reference setting.

MLP 226-200-200-113 without biases, PyTorch-default init, 40 % train split,
full batch, AdamW(lr 1e-2, β2 0.99, ε 1e-25, no weight decay), softmax CE in
float32: the "paper intent" CLI values. Variants override fields, e.g.
``--config.optimizer.name=orthograd_adamw`` or ``--config.loss=stablemax``.
"""

from experiments.configs import base


def get_config():
    c = base.get_base_config()
    c.seed = 42
    c.steps = 3000
    c.log_every = 10
    c.eval_every = 10
    c.checkpoint_every = 500
    c.optimizer = base.optimizer_config(
        "adamw", learning_rate=1e-2, b1=0.9, b2=0.99, eps=1e-25, weight_decay=0.0)
    return c
