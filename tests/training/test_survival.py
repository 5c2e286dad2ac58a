"""Runs survive damage: checkpoint integrity, lock, trustworthy log, divergence stop.

Each test reproduces one way a run directory gets damaged (or misused) and
checks that the run either continues exactly or stops with one clear error.
"""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from optim_lab import rundir
from optim_lab.training import checkpoint
from optim_lab.training import errors
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import train
from optim_lab.training import workdir as workdir_lib

from runs import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _leaves(workdir, config):
    return jax.tree.leaves(jax.device_get(train.restore_state(config, workdir)))


def _assert_same_run(a, b, config):
    assert rundir.read_metrics(a) == rundir.read_metrics(b)
    for x, y in zip(_leaves(a, config), _leaves(b, config), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def straight20(tmp_path_factory):
    """An uninterrupted 20-step run to compare damaged-and-resumed runs with."""
    d = tmp_path_factory.mktemp("straight")
    train.train_and_evaluate(tiny_config(steps=20), d, progress=False)
    return d


def _flip_bytes(path: pathlib.Path, n: int = 1000, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for i in rng.sample(range(len(data)), min(n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _largest_file(directory: pathlib.Path) -> pathlib.Path:
    return max((f for f in directory.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)


# -- checkpoint integrity ------------------------------------------------------

def test_damaged_newest_checkpoint_falls_back_to_older(tmp_path, straight20, capsys):
    train.train_and_evaluate(tiny_config(steps=20, checkpoint_every=5), tmp_path,
                             progress=False)  # keeps checkpoints 15 and 20
    _flip_bytes(_largest_file(tmp_path / "checkpoints" / "20"))
    capsys.readouterr()
    train.train_and_evaluate(tiny_config(steps=20, checkpoint_every=5), tmp_path,
                             progress=False)
    err = capsys.readouterr().err
    assert "checkpoints/20 is damaged" in err and "resuming from step 15" in err
    assert (tmp_path / checkpoint.DAMAGED_DIR / "20").is_dir()
    _assert_same_run(tmp_path, straight20, tiny_config())


def test_checksum_mismatch_is_caught_even_when_the_file_decodes(tmp_path, capsys):
    train.train_and_evaluate(tiny_config(steps=10, checkpoint_every=5), tmp_path,
                             progress=False)
    manifest = tmp_path / "checkpoints" / "10" / "manifest" / "metadata"
    doc = json.loads(manifest.read_text())
    key = next(k for k in doc["leaves"] if k.startswith("params"))
    doc["leaves"][key][2] = "0" * 64  # as if the params bytes had changed
    manifest.write_text(json.dumps(doc))
    state = train.restore_state(tiny_config(), tmp_path)
    assert int(state.step) == 5
    assert "checksum mismatch in 1 leaf(s), first " + key in capsys.readouterr().err


def test_no_valid_checkpoint_refuses_and_moves_nothing(tmp_path):
    train.train_and_evaluate(tiny_config(steps=10), tmp_path, progress=False)
    before = rundir.read_metrics(tmp_path)
    for f in (tmp_path / "checkpoints" / "10").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0garbage" * 4)
    for _ in range(2):  # refused every time: nothing moved, the log kept
        with pytest.raises(errors.CheckpointError, match=r"no valid checkpoint .*10: "):
            train.train_and_evaluate(tiny_config(steps=20), tmp_path, progress=False)
    assert (tmp_path / "checkpoints" / "10").is_dir()
    assert rundir.read_metrics(tmp_path) == before


# -- the log ---------------------------------------------------------------------

def test_crash_before_first_checkpoint_restarts_the_log(tmp_path, straight20):
    train.train_and_evaluate(tiny_config(steps=10), tmp_path, progress=False)
    import shutil
    shutil.rmtree(tmp_path / "checkpoints")  # as if killed before the first save
    train.train_and_evaluate(tiny_config(steps=20), tmp_path, progress=False)
    steps = [r["step"] for r in rundir.read_metrics(tmp_path)]
    assert steps == [0, 5, 10, 15, 20]
    _assert_same_run(tmp_path, straight20, tiny_config())


def test_deleted_log_is_reported(tmp_path, capsys):
    train.train_and_evaluate(tiny_config(steps=10), tmp_path, progress=False)
    (tmp_path / "metrics.jsonl").unlink()
    train.train_and_evaluate(tiny_config(steps=20), tmp_path, progress=False)
    assert "history before step 10 is lost" in capsys.readouterr().err
    assert [r["step"] for r in rundir.read_metrics(tmp_path)] == [15, 20]


def test_corruption_before_the_last_line_is_refused(tmp_path):
    train.train_and_evaluate(tiny_config(steps=10), tmp_path, progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="corrupt line 2"):
        train.train_and_evaluate(tiny_config(steps=20), tmp_path, progress=False)


def test_log_steps_must_strictly_increase(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"step": 5}\n{"step": 5}\n')
    with pytest.raises(ValueError, match="steps must strictly increase"):
        rundir.read_metrics(tmp_path)
    (tmp_path / "new").mkdir()
    writer = metrics_lib.MetricsWriter(tmp_path / "new", 0)
    writer.write(0, {})
    with pytest.raises(errors.RunDataError, match="strictly increase"):
        writer.write(0, {})
    writer.close()


def test_fewer_steps_than_done_changes_nothing(tmp_path, capsys):
    train.train_and_evaluate(tiny_config(steps=20), tmp_path, progress=False)
    config_before = (tmp_path / "config.json").read_bytes()
    log_before = (tmp_path / "metrics.jsonl").read_bytes()
    last = train.train_and_evaluate(tiny_config(steps=10), tmp_path, progress=False)
    assert "already at step 20 (> steps=10); nothing to do" in capsys.readouterr().err
    assert last["step"] == 20
    assert (tmp_path / "config.json").read_bytes() == config_before
    assert (tmp_path / "metrics.jsonl").read_bytes() == log_before


# -- the lock --------------------------------------------------------------------

def test_second_process_on_a_workdir_is_refused(tmp_path):
    with workdir_lib.lock(tmp_path):
        with pytest.raises(errors.WorkdirInUse, match=f"in use by pid {os.getpid()}"):
            train.train_and_evaluate(tiny_config(steps=5), tmp_path, progress=False)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_lock_of_a_killed_process_never_blocks(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from optim_lab.training import workdir as w\n"
         f"with w.lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(errors.WorkdirInUse, match=f"pid {holder.pid}"):
        with workdir_lib.lock(tmp_path):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with workdir_lib.lock(tmp_path):
        assert (tmp_path / workdir_lib.LOCK_FILE).read_text().strip() == str(os.getpid())


# -- divergence --------------------------------------------------------------------

# eval_every 10: the window ending at step 10 is closed at once; 50: only after
# more calls are dispatched (host work overlapped), with the same outcome.
@pytest.mark.parametrize("eval_every", [10, 50])
def test_diverging_run_stops_with_checkpoint(tmp_path, capsys, eval_every):
    cfg = tiny_config(steps=100, log_every=5, eval_every=eval_every, checkpoint_every=50,
                      max_nonfinite_steps=7, **{"optimizer.name": "sgd",
                                                "optimizer.learning_rate": 1e12})
    cfg.optimizer.weight_decay = None
    with pytest.raises(errors.Diverged) as info:
        train.train_and_evaluate(cfg, tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "consecutive non-finite steps from step" in msg
    assert "stopped at step 10" in msg  # 7 rejected steps are seen at the 2nd window
    assert "non-finite: loss" in msg or "non-finite: gradients" in msg
    assert "rejected" in capsys.readouterr().out
    state = train.restore_state(cfg, tmp_path)
    assert int(state.step) == 10
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_nonfinite_hyperparameters_are_refused(tmp_path, value):
    with pytest.raises(ValueError, match="optimizer.learning_rate must be finite"):
        train.train_and_evaluate(tiny_config(**{"optimizer.learning_rate": value}),
                                 tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- kill -9 at random points ---------------------------------------------------------

def _binary(workdir, steps):
    return [sys.executable, "-m", "experiments.train",
            "--config=experiments/configs/grokking.py", f"--workdir={workdir}",
            f"--config.steps={steps}", "--config.log_every=1", "--config.eval_every=2",
            "--config.checkpoint_every=1", "--config.data.modulus=11",
            "--config.model.hidden=(16,)"]


@pytest.mark.slow
def test_kill9_at_random_points_resumes_exactly(tmp_path):
    steps = 60
    straight = tmp_path / "straight"
    subprocess.run(_binary(straight, steps), cwd=ROOT, check=True, capture_output=True)
    killed = tmp_path / "killed"
    rng = random.Random(1234)
    for _ in range(4):
        proc = subprocess.Popen(_binary(killed, steps), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        proc.stdout.readline()  # first progress line: compiled and stepping
        time.sleep(rng.uniform(0.0, 1.5))  # checkpoints every step: often mid-save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(_binary(killed, steps), cwd=ROOT, check=True, capture_output=True)
    assert rundir.read_metrics(killed) == rundir.read_metrics(straight)
    template = _grokking_template()
    a = jax.tree.leaves(jax.device_get(checkpoint.restore(killed, template)))
    b = jax.tree.leaves(jax.device_get(checkpoint.restore(straight, template)))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _grokking_template():
    from experiments.configs import grokking
    cfg = grokking.get_config()
    cfg.data.modulus, cfg.model.hidden = 11, (16,)
    _, fn, _, tx = train.setup(cfg)
    return train.initial_state(fn, tx, cfg.seed)
