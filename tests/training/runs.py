"""Tiny training configs shared by the training tests (and any e2e test)."""

from experiments.configs import base


def tiny_config(**overrides):
    """Addition mod 11, MLP 22-16-11, a few full-batch AdamW steps."""
    c = base.get_base_config()
    c.steps = 20
    c.log_every = 5
    c.eval_every = 10
    c.checkpoint_every = 10
    c.data.modulus = 11
    c.model.hidden = (16,)
    c.optimizer.learning_rate = 1e-2
    c.optimizer.weight_decay = 0.0
    for key, value in overrides.items():
        section, _, field = key.rpartition(".")
        (c[section] if section else c)[field] = value
    return c
