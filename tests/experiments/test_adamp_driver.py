"""The 2-D scale-invariant toy of experiments/adamp.py (spec §12.1)."""

import json

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


def test_read_run_averages_the_three_kernels(tmp_path):
    def rec(step, norms=None, effs=None, **extra):
        r = {"step": step, **extra}
        for k, v in zip(adamp.KERNELS, norms or ()):
            r[f"params/{k}/norm"] = v
        for k, v in zip(adamp.KERNELS, effs or ()):
            r[f"effective_step/{k}"] = v
        return r

    last = {"test/accuracy": 0.9, "train/accuracy": 1.0, "train/loss": 0.01}
    records = [rec(0, norms=(1.0, 2.0, 3.0)), rec(20, effs=(0.1, 0.2, 0.3)),
               rec(40, norms=(2.0, 4.0, 6.0), effs=(0.4, 0.5, 0.6), **last)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = adamp.read_run(tmp_path)
    np.testing.assert_array_equal(run["step"], [0, 40])
    np.testing.assert_allclose(run["norm"], [2.0, 4.0])
    np.testing.assert_array_equal(run["eff_step"], [20, 40])
    np.testing.assert_allclose(run["eff"], [0.2, 0.5])
    assert (run["test_acc"], run["train_acc"], run["train_loss"]) == (0.9, 1.0, 0.01)
