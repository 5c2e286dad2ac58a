"""The 2-D scale-invariant toy of experiments/adamp.py (spec §12.1)."""

import numpy as np

from experiments import adamp


def test_momentum_grows_the_norm_and_sgdp_does_not():
    gd = adamp.toy_run(0.0, False)
    sgd = adamp.toy_run(0.9, False)
    sgd99 = adamp.toy_run(0.99, False)
    ref = adamp.toy_run(0.9, True)             # adamp==0.3.0 semantics
    paper = adamp.toy_run(0.9, True, False)    # paper Algorithm 1
    paper99 = adamp.toy_run(0.99, True, False)
    np.testing.assert_allclose(gd["norm"][-1], 1.09, atol=0.01)
    np.testing.assert_allclose(sgd["norm"][-1], 5.94, atol=0.01)
    np.testing.assert_allclose(sgd99["norm"][-1], 51.3, atol=0.1)
    assert sgd["norm"][-1] >= 4.0
    assert paper["norm"][-1] <= 1.4 and paper99["norm"][-1] <= 1.4
    # reference semantics (projected buffer) match adamp.SGDP on a (1, 2) tensor
    np.testing.assert_allclose(ref["norm"][-1], 1.5556, atol=1e-3)
    # all reach the optimum; SGDP faster than momentum SGD
    first = lambda r: int(np.argmax(r["angle"] < 0.1))  # noqa: E731
    assert first(ref) < first(sgd) and first(paper) < first(sgd)
