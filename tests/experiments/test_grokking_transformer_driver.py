"""The Fig. 6 transformer through the binaries: one step of ``experiments.train``,
exact resume with dropout, and the ``experiments.grokking_transformer`` driver
(tiny sizes: d 32, FF 64, addition mod 11)."""

import json

import jax
import numpy as np
import pytest

from experiments import grokking_transformer as driver
from experiments.configs import grokking_transformer
from optim_lab import rundir
from optim_lab.training import train

import binaries

TINY = {"model.d_model": 32, "model.ff_dim": 64, "data.modulus": 11}


def _tiny(**overrides):
    c = grokking_transformer.get_config()
    for key, value in {**TINY, "log_every": 5, "eval_every": 5,
                       "checkpoint_every": 5, **overrides}.items():
        section, _, field = key.rpartition(".")
        (c[section] if section else c)[field] = value
    return c


def test_one_step_of_the_train_binary(tmp_path):
    workdir = tmp_path / "run"
    args = ["--config=experiments/configs/grokking_transformer.py", f"--workdir={workdir}",
            "--config.steps=1", "--config.log_every=1", "--config.eval_every=1",
            "--config.checkpoint_every=1",
            *(f"--config.{k}={v}" for k, v in TINY.items())]
    binaries.run_ok("experiments.train", *args, timeout=900)
    records = rundir.read_metrics(workdir)
    assert [r["step"] for r in records] == [0, 1]
    step1 = records[-1]
    assert np.isfinite(step1["train/loss"]) and step1["train/nonfinite"] == 0.0
    # 10 * 10 pairs in [1, 10], 40 % train; accuracies are multiples of 1/n
    for split, n in (("train", 40), ("test", 60)):
        acc = step1[f"{split}/accuracy"]
        assert 0.0 <= acc <= 1.0 and abs(acc * n - round(acc * n)) < 1e-4, (split, acc)
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["name"] == "grokking_transformer"
    assert (config["model"]["d_model"], config["model"]["ff_dim"]) == (32, 64)
    assert (workdir / "checkpoints" / "1").is_dir()


def _params(config, workdir):
    return jax.device_get(train.restore_state(config, workdir).params)


def test_resume_with_dropout_is_exact(tmp_path):
    """10 steps straight == 5 steps, stop, resume to 10: bit-identical params
    and metrics. Dropout masks are a function of (seed, step), so the resumed
    half draws the masks the straight run drew; and dropout is really on (a
    run without it logs other losses), so this can fail."""
    straight = _tiny(steps=10)
    train.train_and_evaluate(straight, tmp_path / "straight", progress=False)
    train.train_and_evaluate(_tiny(steps=5), tmp_path / "resumed", progress=False)
    train.train_and_evaluate(_tiny(steps=10), tmp_path / "resumed", progress=False)
    a, b = (rundir.read_metrics(tmp_path / d) for d in ("straight", "resumed"))
    assert [r["step"] for r in a] == [0, 5, 10]
    assert a == b
    jax.tree.map(np.testing.assert_array_equal, _params(straight, tmp_path / "straight"),
                 _params(straight, tmp_path / "resumed"))
    train.train_and_evaluate(_tiny(steps=5, **{"model.dropout": 0.0}), tmp_path / "nodrop",
                             progress=False)
    no_dropout = rundir.read_metrics(tmp_path / "nodrop")
    assert no_dropout[1]["train/loss"] != a[1]["train/loss"]
    assert no_dropout[0] == a[0]  # same init and eval-mode forward: dropout is the only change


def test_driver_variants_and_report(tmp_path):
    """The driver's three optimizer settings (those the reference ran) and its
    table; the ε = 1e-25 AdamW runs keep a float64 Adam state."""
    cfgs = {v: driver.transformer_config(v, 5e-3, 500, 20) for v in driver.VARIANTS}
    o, w, p = cfgs["orthograd_adamw"], cfgs["adamw_wd1.5"], cfgs["adamw"]
    assert (o.optimizer.name, o.optimizer.b2, o.optimizer.eps) == ("orthograd_adamw", 0.999, 1e-8)
    assert o.optimizer.state_dtype is None and not o.enable_x64
    for c, wd in ((w, 1.5), (p, 0.0)):
        assert (c.optimizer.name, c.optimizer.b2, c.optimizer.eps) == ("adamw", 0.99, 1e-25)
        assert c.optimizer.weight_decay == wd
        assert c.optimizer.state_dtype == 64 and c.enable_x64
    assert all(c.optimizer.learning_rate == 5e-3 and c.steps == 500 and c.eval_every == 20
               and c.model.dropout == 0.1 for c in cfgs.values())
    rows, anchors = driver.run_all(
        tmp_path / "runs", tmp_path / "results", lrs=[5e-3], variants=["orthograd_adamw", "adamw"],
        steps=4, eval_every=20, mlp_anchor=False, command="cmd", d_model=32, ff_dim=64,
        modulus=11)
    assert [r["name"] for r in rows] == ["orthograd_adamw_lr0.005", "adamw_lr0.005"]
    assert anchors == [] and all(r["steps"] == 4 for r in rows)
    state = train.restore_state(driver.transformer_config("adamw", 5e-3, 4, 20, d_model=32,
                                                          ff_dim=64, modulus=11),
                                tmp_path / "runs" / "adamw_lr0.005")
    dtypes = {x.dtype for x in jax.tree.leaves(state.opt_state) if x.ndim > 0}
    assert dtypes == {np.dtype("float64")}
    text = (tmp_path / "results" / "transformer.md").read_text()
    assert "| ⊥AdamW, lr 0.005 | 4 |" in text and "| AdamW, lr 0.005 | 4 |" in text
    assert (tmp_path / "results" / "transformer.png").stat().st_size > 0
    # --report_only rewrites the report from the runs as they are, training nothing
    (tmp_path / "results" / "transformer.md").unlink()
    again, _ = driver.run_all(
        tmp_path / "runs", tmp_path / "results", lrs=[5e-3], variants=["orthograd_adamw"],
        steps=8, eval_every=20, mlp_anchor=False, command="cmd", report_only=True,
        d_model=32, ff_dim=64, modulus=11)
    assert again[0]["steps"] == 4
    assert "| ⊥AdamW, lr 0.005 | 4 |" in (tmp_path / "results" / "transformer.md").read_text()
    with pytest.raises(ValueError, match="--report_only: no run in"):
        driver.run_all(tmp_path / "none", tmp_path / "results", lrs=[5e-3],
                       variants=["adamw"], steps=4, eval_every=20, mlp_anchor=False,
                       command="cmd", report_only=True, d_model=32, ff_dim=64, modulus=11)


def test_mlp_anchor_starts_from_the_reference_start():
    """The Fig. 6b MLP anchor uses the reference's split and initial weights."""
    from optim_lab.data import reference_start
    config = driver.mlp_anchor_config("mlp_orthograd_adamw", 500, 20)
    assert (config.optimizer.name, config.optimizer.learning_rate) == ("orthograd_adamw", 5e-3)
    data, fn, _, _ = train.setup(config)
    start = reference_start.load_start(config.model.init_from)
    assert (data.train_x.shape[0], data.test_x.shape[0]) == (5107, 7662)
    np.testing.assert_array_equal(fn.params["layers"][0]["kernel"],
                                  start.params["layers"][0]["kernel"])


@pytest.mark.parametrize("spec, match", [
    ("orthograd_adamw", "not VARIANT:LR"),
    ("sgd:1e-2", "not VARIANT:LR"),
    ("adamw:fast", "is not a number"),
    ("adamw:-1e-3", "must be > 0"),
])
def test_extra_runs_are_checked(spec, match):
    with pytest.raises(ValueError, match=match):
        driver.parse_extra(spec)
