"""The long StableMax run (Fig. 1b) from the reference's own starting point.

``grokking_stablemax_long.py`` with the data split and the initial weights of
the reference's seed-42 run (``LucasPrietoAl/grokking-at-the-edge-of-numerical-
stability`` @ 0cc9e8d, recorded in ``tests/golden/grokking_start.npz`` by
``tests/golden/gen_grokking_start.py``): ``data.split_from`` and
``model.init_from`` point at that file (resolved from the repository root, so
the config works from any directory). Everything else is the reference's
Fig. 1b setting: float32 MLP, StableMax loss in float64, AdamW lr 1e-2,
β2 0.999, ε 1e-25, no weight decay, full batch. Same start as the reference:
the remaining differences are summation order and the optimizer-state
arithmetic. Run it with::

    python -m benchmarks.grokking_stablemax_long --config=ref

.. warning::
    ε = 1e-25 needs the float64 optimizer state this config inherits
    (``optimizer.state_dtype = 64``): XLA:CPU flushes float32 subnormals to
    zero, so a float32 Adam state takes steps up to ~1e5 × lr once
    |g| ≲ 1e-19, where the torch reference (which keeps subnormals) does not.
    See ``grokking_stablemax_long.py``.
"""

import pathlib

from experiments.configs import grokking_stablemax_long

START_FILE = (pathlib.Path(__file__).resolve().parents[2]
              / "tests" / "golden" / "grokking_start.npz")


def get_config():
    c = grokking_stablemax_long.get_config()
    c.seed = 42  # the reference's seed (its split and init come from the file)
    c.data.split_from = str(START_FILE)
    c.model.init_from = str(START_FILE)
    return c
