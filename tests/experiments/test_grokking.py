"""CPU-scale checks of the grokking paper's claims on the grokking configs.

Check 1 (⊥AdamW groks) and check 4 (StableMax keeps a learning signal) run
in the default suite; checks 2 and 3 (Softmax Collapse onset, float64 delay;
3 000 steps each) are ``slow`` and run in CI via ``make test-slow``.
"""

import pytest

from experiments import _common
from experiments.configs import grokking
from experiments.configs import grokking_released
from experiments.configs import grokking_stablemax
from optim_lab import rundir
from optim_lab.training import train


def _run(config, workdir, **fields):
    for k, v in fields.items():
        config[k] = v
    train.train_and_evaluate(config, workdir)
    return _common.evals(rundir.read_metrics(workdir))


def test_presets_match_the_reference_settings():
    intent, released = grokking.get_config(), grokking_released.get_config()
    assert (intent.optimizer.b2, intent.optimizer.eps) == (0.99, 1e-25)
    assert (released.optimizer.b2, released.optimizer.eps) == (0.999, 1e-8)
    assert released.optimizer.name == "orthograd_adamw"
    for c in (intent, released):
        assert c.optimizer.weight_decay == 0.0 and c.optimizer.learning_rate == 1e-2
        assert c.model.use_bias is False and c.model.hidden == (200, 200)
        assert c.batch_size == 0 and c.data.train_fraction == 0.4


def test_check1_orthograd_adamw_groks_by_step_250(tmp_path):
    evals = _run(grokking_released.get_config(), tmp_path, steps=250,
                 checkpoint_every=250)
    hit = [r["step"] for r in evals if r["test/accuracy"] >= 0.95]
    assert hit and hit[0] <= 250, [(r["step"], r["test/accuracy"]) for r in evals]
    assert evals[-1]["train/accuracy"] == 1.0


def test_check4_stablemax_no_zero_terms_while_logits_pass_1e3(tmp_path):
    evals = _run(grokking_stablemax.get_config(), tmp_path, log_every=100,
                 eval_every=100, checkpoint_every=1500)
    assert all(r["probe/zero_loss"] == 0.0 for r in evals)
    assert all(isinstance(r["train/loss"], float) for r in evals)  # NaN/inf are logged as strings
    assert evals[-1]["probe/max_logit"] > 1e3
    assert evals[-1]["train/accuracy"] == 1.0
    # softmax *would* have collapsed on these logits
    assert evals[-1]["probe/softmax_collapse"] > 0.9


@pytest.mark.slow
def test_check2_and_3_softmax_collapse_and_float64_delay(tmp_path):
    f32 = _run(grokking.get_config(), tmp_path / "f32", log_every=50, eval_every=50)
    trained = [r for r in f32 if r["step"] > 0]
    assert max(r["test/accuracy"] for r in trained) < 0.01
    assert any(r["probe/softmax_collapse"] > 0.3 for r in trained if r["step"] < 2500)
    plateau = [r["cos_neg_grad_weight/layers/2/kernel"] for r in trained
               if 200 <= r["step"] <= 1200]
    assert min(plateau) >= 0.85
    c = grokking.get_config()
    c.loss_dtype, c.enable_x64 = 64, True
    f64 = _run(c, tmp_path / "f64", log_every=50, eval_every=50)
    assert f64[-1]["step"] == 3000
    assert max(r["probe/softmax_collapse"] for r in f64) < 0.1


def test_long_stablemax_preset_and_report():
    from experiments.configs import grokking_stablemax_long
    from experiments.grokking_summary import report
    c = grokking_stablemax_long.get_config()
    assert (c.loss, c.steps, c.optimizer.b2, c.optimizer.eps) == ("stablemax", 80_000, 0.999, 1e-25)
    records = [{"step": s, "test/accuracy": a, "train/accuracy": 1.0, "probe/zero_loss": 0.0,
                "params/global/norm": 300.0, "probe/max_logit": 2e3}
               for s, a in [(0, 0.0), (30_000, 0.2), (45_000, 0.55), (75_000, 0.97)]]
    text = report(records, 80_000, None)
    assert "| 10% | 30000 |" in text and "| 50% | 45000 |" in text
    assert "| 90% | 75000 |" in text and "test acc 0.9700" in text
