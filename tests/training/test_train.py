"""train_and_evaluate: end-to-end run, exact resume, workdir guards, errors."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from optim_lab.training import checkpoint
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import train

from runs import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _final_state(workdir, config):
    return train.restore_state(config, workdir)


def test_one_step_binary_end_to_end(tmp_path):
    cmd = [sys.executable, "-m", "experiments.train",
           "--config=experiments/configs/grokking.py", f"--workdir={tmp_path}",
           "--config.steps=1", "--config.log_every=1", "--config.eval_every=1",
           "--config.checkpoint_every=1", "--config.data.modulus=11",
           "--config.model.hidden=(16,)", "--config.optimizer.name=orthograd_adamw",
           "--config.optimizer.orthograd_scope=global", "--config.loss=stablemax",
           "--config.hessian_iters=3"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step 1/1" in out.stdout and "steps/s" in out.stdout and "ETA" in out.stdout
    records = metrics_lib.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [0, 1]
    for key in ("train/loss", "test/accuracy", "probe/softmax_collapse",
                "probe/zero_loss", "cos_neg_grad_weight/global",
                "params/global/norm", "grads/global/l2", "effective_step/global",
                "probe/hessian_top_eig"):
        assert np.isfinite(records[-1][key]), key
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["optimizer"]["orthograd_scope"] == "global"
    assert (tmp_path / "checkpoints" / "1").is_dir()


def test_training_reduces_loss_and_logs_windows(tmp_path):
    cfg = tiny_config(steps=40, checkpoint_every=40)
    final = train.train_and_evaluate(cfg, tmp_path)
    records = metrics_lib.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert "test/accuracy" in records[2] and "test/accuracy" not in records[1]
    assert final["train/loss"] < records[1]["train/loss"] * 0.9
    assert final["train/nonfinite"] == 0.0


def test_exact_resume_is_bit_identical(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train_and_evaluate(tiny_config(steps=20), straight)
    train.train_and_evaluate(tiny_config(steps=10), split)
    train.train_and_evaluate(tiny_config(steps=20), split)  # resumes at 10
    assert metrics_lib.read_metrics(straight) == metrics_lib.read_metrics(split)
    a, b = _final_state(straight, tiny_config()), _final_state(split, tiny_config())
    assert int(a.step) == int(b.step) == 20
    for x, y in zip(*(jax_leaves(s) for s in (a, b))):
        np.testing.assert_array_equal(x, y)


def test_resume_after_crash_truncates_metrics_past_checkpoint(tmp_path, capsys):
    train.train_and_evaluate(tiny_config(steps=10), tmp_path)
    with (tmp_path / "metrics.jsonl").open("a") as f:  # a run killed after step 10
        f.write(json.dumps({"step": 15, "train/loss": 123.0}) + "\n")
        f.write('{"step": 17, "train/lo')  # torn last line
    train.train_and_evaluate(tiny_config(steps=20), tmp_path)
    assert "dropped a torn last line" in capsys.readouterr().err
    records = metrics_lib.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [0, 5, 10, 15, 20]
    assert records[3]["train/loss"] != 123.0


def jax_leaves(state):
    import jax
    return jax.tree.leaves(jax.device_get(state))


def test_finished_run_is_not_retrained(tmp_path):
    first = train.train_and_evaluate(tiny_config(steps=10), tmp_path)
    again = train.train_and_evaluate(tiny_config(steps=10), tmp_path)
    assert again == json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert again["step"] == 10 and first["train/loss"] == again["train/loss"]


def test_different_config_is_refused(tmp_path):
    train.train_and_evaluate(tiny_config(steps=5, checkpoint_every=5), tmp_path)
    with pytest.raises(ValueError, match=r"optimizer.learning_rate: 0.01 != 0.02"):
        train.train_and_evaluate(tiny_config(**{"optimizer.learning_rate": 0.02}),
                                 tmp_path)


def test_corrupt_config_json_is_refused(tmp_path):
    train.train_and_evaluate(tiny_config(steps=5, checkpoint_every=5), tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is corrupt"):
        train.train_and_evaluate(tiny_config(steps=5), tmp_path)


def test_run_files_without_config_are_refused(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(ValueError, match="no config.json"):
        train.train_and_evaluate(tiny_config(), tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 0}\n'


def test_corrupt_checkpoint_is_refused(tmp_path):
    train.train_and_evaluate(tiny_config(steps=10), tmp_path)
    ckpt = tmp_path / "checkpoints" / "10"
    for f in ckpt.rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"\0garbage" * 4)
    with pytest.raises(checkpoint.CheckpointError, match="no valid checkpoint"):
        train.train_and_evaluate(tiny_config(steps=20), tmp_path)


@pytest.mark.parametrize("overrides,match", [
    ({"optimizer.name": "adamz"}, "optimizer.name: unknown optimizer 'adamz'"),
    ({"optimizer.learning_rate": 0.0}, r"learning_rate must be in \(0, inf\)"),
    ({"optimizer.learning_rate": -1e-3}, r"learning_rate must be in \(0, inf\)"),
    ({"optimizer.b1": 1.0}, r"b1 must be in \[0, 1\)"),
    ({"optimizer.b2": -0.1}, r"b2 must be in \[0, 1\)"),
    ({"optimizer.momentum": 0.9}, "optimizer.momentum: optimizer 'adamw' does not take"),
    ({"data.train_fraction": 1.0}, r"data.train_fraction must be in \(0, 1\)"),
    ({"data.train_fraction": 0.0}, r"data.train_fraction must be in \(0, 1\)"),
    ({"loss": "hinge"}, "loss must be one of"),
    ({"loss_dtype": 8}, "loss_dtype must be one of"),
    ({"model.init": "xavier"}, "model.init must be one of"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"eval_every": 7}, "eval_every must be a multiple of log_every"),
])
def test_invalid_config_raises_before_compiling(tmp_path, monkeypatch, overrides, match):
    def no_compile(*a, **k):
        raise AssertionError("compiled before validating")
    monkeypatch.setattr(train, "compile_steps", no_compile)
    with pytest.raises(ValueError, match=match):
        train.train_and_evaluate(tiny_config(**overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_nonfinite_step_leaves_state_untouched():
    import jax
    import jax.numpy as jnp
    import optax

    from optim_lab.training.state import TrainState
    from optim_lab.training.step import make_train_step

    def apply(params, model_state, x, train, rng=None):
        return x @ params["w"], model_state

    def loss_fn(logits, y):  # NaN whenever any label is 1
        return jnp.where(y == 1, jnp.nan, jnp.sum(logits ** 2, -1))

    tx = optax.with_extra_args_support(optax.adam(0.1))
    params = {"w": jnp.ones((3, 2))}
    state = TrainState(jnp.int32(0), params, {}, tx.init(params), jax.random.PRNGKey(0))
    step = jax.jit(make_train_step(apply, loss_fn, tx))
    x = jnp.ones((4, 3))
    bad, m = step(state, (x, jnp.array([0, 1, 0, 0])))
    assert float(m["train/nonfinite"]) == 1.0 and int(bad.step) == 1
    np.testing.assert_array_equal(bad.params["w"], params["w"])
    for a, b in zip(jax.tree.leaves(bad.opt_state), jax.tree.leaves(state.opt_state)):
        np.testing.assert_array_equal(a, b)
    good, m = step(bad, (x, jnp.zeros(4, jnp.int32)))
    assert float(m["train/nonfinite"]) == 0.0
    assert not np.array_equal(good.params["w"], params["w"])


def test_refined_schedule_gets_the_runs_optimizer(tmp_path):
    train.train_and_evaluate(tiny_config(steps=20, log_every=1), tmp_path / "prev")
    cfg = tiny_config(steps=20, **{"optimizer.name": "sgd"})
    cfg.optimizer.weight_decay = None
    cfg.schedule.name = "refined"
    cfg.schedule.refine_from = str(tmp_path / "prev")
    with pytest.raises(ValueError, match="trained with optimizer 'adamw', this run uses 'sgd'"):
        train.build_optimizer(cfg)
    cfg.optimizer.name = "adamw"
    assert callable(train.build_optimizer(cfg).update)


def test_progress_line_can_be_turned_off(tmp_path, capsys):
    train.train_and_evaluate(tiny_config(steps=10), tmp_path / "loud")
    assert "step 10/10 |" in capsys.readouterr().out
    train.train_and_evaluate(tiny_config(steps=10), tmp_path / "quiet", progress=False)
    assert "step" not in capsys.readouterr().out
    assert len(metrics_lib.read_metrics(tmp_path / "quiet")) == 3


def test_scanned_dispatch_is_bit_identical(tmp_path):
    one, scanned = tmp_path / "k1", tmp_path / "k3"
    train.train_and_evaluate(tiny_config(steps=30), one, progress=False)
    # K=3 with log_every=5: calls of 3 and 2 steps; the first run ends at 13,
    # mid-window, so the resume starts inside a call window.
    train.train_and_evaluate(tiny_config(steps=13, steps_per_call=3), scanned,
                             progress=False)
    train.train_and_evaluate(tiny_config(steps=30, steps_per_call=3), scanned,
                             progress=False)
    a, b = metrics_lib.read_metrics(one), metrics_lib.read_metrics(scanned)
    assert [r["step"] for r in b] == [0, 5, 10, 13, 15, 20, 25, 30]
    assert [r for r in a if r["step"] >= 20] == [r for r in b if r["step"] >= 20]
    assert a[:3] == b[:3]
    for x, y in zip(jax_leaves(_final_state(one, tiny_config())),
                    jax_leaves(_final_state(scanned, tiny_config())), strict=True):
        np.testing.assert_array_equal(x, y)


def test_call_sizes_respect_log_boundaries():
    assert list(train.call_sizes(13, 30, 3, 5)) == [2, 3, 2, 3, 2, 3, 2]
    assert list(train.call_sizes(0, 7, 10, 5)) == [5, 2]
    assert list(train.call_sizes(0, 4, 1, 5)) == [1, 1, 1, 1]


def test_log_windows_close_late_only_between_evaluations_and_checkpoints():
    import ml_collections
    config = ml_collections.ConfigDict(dict(steps=12, log_every=2, eval_every=6,
                                            checkpoint_every=4))
    dispatched = []

    def calls():
        for s in range(1, 13):
            dispatched.append(s)
            yield s, f"m{s}", f"state{s}"

    seen = [(w.step, len(dispatched), w.first, w.metrics, w.state, w.last)
            for w in train.log_windows(calls(), config, 0, overlap=1)]
    # Step 2 needs neither: closed after step 3 is dispatched; 4 (checkpoint),
    # 6 (eval), 8, 12 (last) at once; 10 late.
    assert [(s, d) for s, d, *_ in seen] == [(2, 3), (4, 4), (6, 6), (8, 8), (10, 11),
                                            (12, 12)]
    assert seen[0][2:] == (1, ["m1", "m2"], "state2", False) and seen[-1][-1]
    # Deeper: a window waits for 3 more calls, but never past a later window
    # that closes at once (4 flushes 2), and windows stay in step order.
    dispatched.clear()
    config.checkpoint_every = 12
    assert [(w.step, len(dispatched)) for w in
            train.log_windows(calls(), config, 0, overlap=3)] == [
        (2, 5), (4, 6), (6, 6), (8, 11), (10, 12), (12, 12)]
    dispatched.clear()
    assert [(w.step, len(dispatched)) for w in
            train.log_windows(calls(), config, 0, overlap=True)] == [
        (2, 6), (4, 6), (6, 6), (8, 12), (10, 12), (12, 12)]  # OVERLAP_CALLS = 4
    config.checkpoint_every = 4
    dispatched.clear()
    assert [(w.step, len(dispatched)) for w in
            train.log_windows(calls(), config, 0, overlap=False)] == [
        (s, s) for s in range(2, 13, 2)]


def test_state_dtype_64_keeps_optimizer_state_in_float64(tmp_path):
    import jax
    cfg = tiny_config(steps=5, **{"optimizer.state_dtype": 64, "enable_x64": True})
    train.train_and_evaluate(cfg, tmp_path, progress=False)
    state = train.restore_state(cfg, tmp_path)
    floats = [x for x in jax.tree.leaves(state.opt_state) if x.dtype.kind == "f"]
    assert floats and all(x.dtype == np.float64 for x in floats)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(state.params))


def test_state_dtype_64_without_x64_is_refused(tmp_path):
    with pytest.raises(ValueError, match="optimizer.state_dtype=64 needs enable_x64"):
        train.train_and_evaluate(tiny_config(**{"optimizer.state_dtype": 64}), tmp_path)


def test_init_from_reference_start(tmp_path):
    import jax

    from optim_lab.data import reference_start
    start = ROOT / "tests" / "golden" / "grokking_start.npz"
    cfg = tiny_config(steps=1, log_every=1, eval_every=1, checkpoint_every=1)
    cfg.data.modulus, cfg.data.train_fraction = 113, 0.4
    cfg.model.hidden = (200, 200)
    cfg.model.init_from = str(start)
    cfg.data.split_from = str(start)
    _, fn, _, _ = train.setup(cfg)
    want = reference_start.load_start(start).params
    for a, b in zip(jax.tree.leaves(fn.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    cfg.model.init_from = str(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="model.init_from: no such file"):
        train.setup(cfg)
