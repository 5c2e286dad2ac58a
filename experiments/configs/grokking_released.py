"""⊥AdamW with the settings the released code actually ran.

The reference wrapper ignored the CLI's β2/ε, so the published ⊥AdamW curves
used torch's defaults β2 = 0.999, ε = 1e-8; 300 full-batch steps.
"""

from experiments.configs import grokking


def get_config():
    c = grokking.get_config()
    c.steps = 300
    c.checkpoint_every = 300
    c.optimizer.name = "orthograd_adamw"
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    return c
