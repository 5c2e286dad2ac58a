"""benchmarks/sweep.py: every timed loop runs (a few steps, no timing)."""

import jax
import numpy as np

from benchmarks import sweep as bench
from optim_lab.training import train


def test_loops_run_and_keep_the_state():
    config = bench.digits_config()
    vmapped, _, part = bench.vmapped_loop(config)
    # Closes log windows (every 10 steps, fetched and split per member) until
    # 12 more steps are logged: through step 20, with the next OVERLAP_CALLS
    # calls dispatched before the window of step 20 is closed.
    states = vmapped(12)
    assert len(states) == 1 and int(part.state.step) == 20 + train.OVERLAP_CALLS
    assert len(bench.sequential_loop(config)(12)) == 8  # one state per member
    lab = bench.lab_loop(config, 10)(30)  # scanned calls across an epoch end (22 steps)
    bare_params, _ = bench.bare_loop(config)(3)
    for a, b in zip(jax.tree.leaves(lab.params), jax.tree.leaves(bare_params), strict=True):
        assert a.shape == b.shape and np.all(np.isfinite(a))
