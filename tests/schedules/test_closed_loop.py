"""Closed loop end to end: a tiny run, then a run refined from its norm log."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import base
from optim_lab.schedules import norm_log
from optim_lab.schedules.refined import refine_schedule
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import train

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 12


def tiny(**schedule):
    c = base.get_base_config()
    c.steps, c.log_every, c.eval_every, c.checkpoint_every = STEPS, 1, STEPS, STEPS
    c.data.modulus = 11
    c.model.hidden = (16,)
    c.optimizer.name, c.optimizer.learning_rate = "sgd", 0.5
    for key, value in schedule.items():
        c.schedule[key] = value
    return c


@pytest.fixture(scope="module")
def previous_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run_a")
    train.train_and_evaluate(tiny(), workdir)
    return workdir


@pytest.fixture(scope="module")
def refined_run(previous_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run_b")
    train.train_and_evaluate(
        tiny(name="refined", refine_from=str(previous_run), trim=0,
             optimizer="sgd"), workdir)
    return workdir


def _losses(workdir):
    return [r["train/loss"] for r in metrics_lib.read_metrics(workdir)
            if "grads/global/l2" in r]  # training records (step 0 is eval only)


def test_refined_run_uses_the_refined_schedule_of_the_previous_run(
        previous_run, refined_run, tmp_path):
    shape = refine_schedule(norm_log.load_grad_norms(previous_run), trim=0,
                            total_steps=STEPS)
    assert shape[-1] == 0.0 and not np.allclose(shape, 1.0)
    train.train_and_evaluate(tiny(name="table", table=tuple(shape)),
                             tmp_path / "table")
    refined_losses = _losses(refined_run)
    assert refined_losses == _losses(tmp_path / "table")
    assert refined_losses != _losses(previous_run)


def test_binary_closed_loop(previous_run, refined_run, tmp_path):
    cmd = [sys.executable, "-m", "experiments.train",
           "--config=experiments/configs/base.py", f"--workdir={tmp_path}",
           f"--config.steps={STEPS}", "--config.log_every=1",
           f"--config.eval_every={STEPS}", f"--config.checkpoint_every={STEPS}",
           "--config.data.modulus=11", "--config.model.hidden=(16,)",
           "--config.optimizer.name=sgd", "--config.optimizer.learning_rate=0.5",
           "--config.schedule.name=refined", "--config.schedule.trim=0",
           f"--config.schedule.refine_from={previous_run}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _losses(tmp_path) == _losses(refined_run)


@pytest.mark.parametrize("schedule, match", [
    (dict(refine_from="/nonexistent/run"), "does not exist"),
    (dict(refine_from=None), "refine_from must name"),
    (dict(optimizer="adamw"), "optimizer 'sgd'"),
])
def test_input_errors_are_raised_before_training(previous_run, tmp_path,
                                                 schedule, match):
    cfg = tiny(name="refined", refine_from=str(previous_run))
    cfg.schedule.update(schedule)
    with pytest.raises(ValueError, match=match):
        train.train_and_evaluate(cfg, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_other_run_length_needs_resample(previous_run, tmp_path):
    cfg = tiny(name="refined", refine_from=str(previous_run))
    cfg.steps = 2 * STEPS
    with pytest.raises(ValueError, match="resample=True"):
        train.train_and_evaluate(cfg, tmp_path / "a")
    cfg.schedule.resample = True
    cfg.checkpoint_every = cfg.eval_every = 2 * STEPS
    train.train_and_evaluate(cfg, tmp_path / "b")
    assert len(_losses(tmp_path / "b")) == 2 * STEPS
