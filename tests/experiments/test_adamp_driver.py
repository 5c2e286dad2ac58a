"""experiments/adamp.py: the 2-D scale-invariant toy, and the digits study
through the sweep engine at a tiny size."""

import json

import numpy as np
import pytest

from experiments import adamp
from optim_lab import rundir
from optim_lab.training import train

from tolerances import assert_close

STEPS = 20
NAMES = ["adamp_wd0_s0_n20", "adamp_wd0.1_s0_n20"]


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


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """AdamP, weight decay 0 and 0.1, one seed, 20 steps (one log window)."""
    root = tmp_path_factory.mktemp("adamp")
    results, timing = adamp.run_digits(root, seeds=1, steps=STEPS, optimizers=("adamp",))
    return root, results, timing


def test_digits_runs_go_through_one_vmapped_program_per_optimizer(digits):
    root, results, timing = digits
    assert sorted(p.name for p in root.iterdir()) == sorted(NAMES + ["sweep_timing.json"])
    for name in NAMES:  # ordinary run directories
        assert (root / name / "config.json").exists()
        assert rundir.read_metrics(root / name)[-1]["step"] == STEPS
    # the weight decays are traced values of one program
    assert timing["groups"] == [2] and timing["trained"] == timing["members"] == 2
    assert timing["wall_s"] > 0 and len(timing["load_start"]) == 3
    assert results[("adamp", 0.1, 0)]["norm"][-1] < results[("adamp", 0.0, 0)]["norm"][-1]

    # a rerun trains nothing and reports the stored timing
    logs = (root / NAMES[1] / "metrics.jsonl").read_bytes()
    again, timing_again = adamp.run_digits(root, seeds=1, steps=STEPS, optimizers=("adamp",))
    assert (root / NAMES[1] / "metrics.jsonl").read_bytes() == logs
    assert timing_again == {**timing, "reused": True}
    np.testing.assert_array_equal(again[("adamp", 0.1, 0)]["norm"],
                                  results[("adamp", 0.1, 0)]["norm"])


@pytest.mark.slow
def test_digits_member_matches_its_single_run(digits, tmp_path):
    root, _, _ = digits
    config = adamp.digits_config("adamp", 0.1, 0, STEPS)
    single = tmp_path / "single"
    train.train_and_evaluate(config, single, progress=False)
    member = root / NAMES[1]
    assert json.loads((member / "config.json").read_text()) == \
        json.loads((single / "config.json").read_text())
    swept, alone = rundir.read_metrics(member), rundir.read_metrics(single)
    assert [r["step"] for r in swept] == [r["step"] for r in alone] == [0, STEPS]
    # Step 0 (before any update): same initialisation and data, only the
    # vmapped (grouped) convolutions' summation order differs.
    keys = sorted(k for k in alone[0] if k != "step")
    assert_close(np.float32([swept[0][k] for k in keys]),
                 np.float32([alone[0][k] for k in keys]), ulps=4, scale=0)
    # After training: Adam divides each gradient coordinate by its own RMS, so
    # a rounding difference in a small or sign-changing gradient coordinate
    # becomes a visible difference in the step (measured on this net after 2
    # steps: SGD members within 5 eps of their single runs, Adam members 1e-3
    # normwise; after 20 steps the losses differ by up to 1 %). Budget for the
    # final losses: 2^18 eps (3 %), a check that the member trained the same
    # run, not a rounding bound.
    keys = ["test/loss", "train/loss"]
    assert_close(np.float32([swept[-1][k] for k in keys]),
                 np.float32([alone[-1][k] for k in keys]), ulps=2 ** 18, scale=0)
