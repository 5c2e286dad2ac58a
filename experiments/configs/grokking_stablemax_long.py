"""The paper's full StableMax grokking run (Fig. 1b): a manual run, not CI.

AdamW lr 1e-2, β2 0.999, ε 1e-25, no weight decay, StableMax loss, 80 000
full-batch steps on addition mod 113 (40 %). Test accuracy should start rising
near 30 k steps, pass 50 % near 45 k and reach about 97 % near 75 k (spec §7).
Takes roughly 1 hour on 2 CPU cores; the manual benchmark runs it and writes
its curve and milestones under ``results/grokking/``::

    python -m benchmarks.grokking_stablemax_long
"""

from experiments.configs import grokking


def get_config():
    c = grokking.get_config()
    c.steps = 80_000
    c.log_every = 100
    c.eval_every = 500
    c.checkpoint_every = 5_000
    c.loss = "stablemax"
    c.optimizer.b2 = 0.999
    return c
