"""StableMax without weight decay (the Fig. 1b setting), CI-sized: 1 500 steps.

AdamW lr 1e-2, β2 0.999, ε 1e-25, StableMax CE. Checks that the zero-loss
fraction stays 0 and the loss finite while logits pass 10³; the grokking
itself needs tens of thousands of steps (``grokking_stablemax_long.py``).
"""

from experiments.configs import grokking


def get_config():
    c = grokking.get_config()
    c.steps = 1500
    c.checkpoint_every = 500
    c.loss = "stablemax"
    c.optimizer.b2 = 0.999
    return c
