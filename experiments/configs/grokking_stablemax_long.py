"""The paper's full StableMax grokking run (Fig. 1b): a manual run, not CI.

AdamW lr 1e-2, β2 0.999, ε 1e-25, no weight decay, StableMax loss, 80 000
full-batch steps on addition mod 113 (40 %). Test accuracy should start rising
near 30 k steps, pass 50 % near 45 k and reach about 97 % near 75 k (spec §7).
Takes roughly 1–2 hours on 2 CPU cores::

    python -m experiments.train --config=experiments/configs/grokking_stablemax_long.py \
        --workdir=runs/stablemax_long
    python -m experiments.plot --workdirs=runs/stablemax_long --log_x \
        --out=results/grokking/stablemax_long.png
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
