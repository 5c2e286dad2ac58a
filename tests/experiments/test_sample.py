"""Sampling from a trained byte-level LM run (experiments/sample.py)."""

import json
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sample
from experiments.configs import lm
from optim_lab.training import train
from optim_lab.training import workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _tiny_lm_config():
    c = lm.get_config()
    c.model.update(num_layers=2, d_model=32, num_heads=2, mlp_hidden=64, context=16)
    c.data.update(context=16, max_bytes=2 ** 16, eval_windows=4)
    c.batch_size, c.steps = 4, 3
    c.log_every = c.eval_every = c.checkpoint_every = 3
    return c


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lm") / "run"
    train.train_and_evaluate(_tiny_lm_config(), workdir, progress=False)
    return workdir


def test_sampling_is_deterministic_for_a_seed(lm_run):
    a = sample.sample(lm_run, "def ", 40, 0.8, 0)
    assert len(a) == 40
    assert sample.sample(lm_run, "def ", 40, 0.8, 0) == a
    assert sample.sample(lm_run, "def ", 40, 0.8, 1) != a


def test_greedy_matches_a_plain_sliding_window_loop(lm_run):
    apply, params, model_state, context, step = sample.restore_lm(lm_run)
    assert (context, step) == (16, 3)
    prompt = b"import os\n"
    got = sample.generate(apply, params, model_state, context, prompt, 20, 0.0, 0)
    seq = list(prompt)  # 10 + 20 bytes > context 16: the window slides
    for _ in range(20):
        window = jnp.asarray([seq[-context:]], jnp.int32)
        logits, _ = apply(params, model_state, window, False)
        seq.append(int(np.argmax(np.asarray(logits[0, -1]))))
    assert got == bytes(seq[len(prompt):])


def test_binary_prints_prompt_and_the_requested_bytes(lm_run):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.sample", f"--workdir={lm_run}",
         "--prompt=class ", "--length=33", "--seed=3"],
        cwd=ROOT, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.startswith(b"class ") and out.stdout.endswith(b"\n")
    assert len(out.stdout) == len(b"class ") + 33 + 1
    assert out.stdout[6:-1] == sample.sample(lm_run, "class ", 33, 0.8, 3)


def test_a_run_without_checkpoint_is_refused(tmp_path):
    workdir_lib.prepare(tmp_path / "empty", _tiny_lm_config())
    with pytest.raises(ValueError, match="no checkpoint"):
        sample.restore_lm(tmp_path / "empty")
    with pytest.raises(ValueError, match="empty"):
        sample.generate(None, None, None, 16, b"", 5, 0.8, 0)


def test_a_non_lm_run_is_one_error_line(tmp_path):
    (tmp_path / "mlp").mkdir()
    (tmp_path / "mlp" / "config.json").write_text(json.dumps(
        {"model": {"name": "mlp"}, "data": {"name": "modular"}}))
    out = subprocess.run(
        [sys.executable, "-m", "experiments.sample", f"--workdir={tmp_path / 'mlp'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "not a byte-level language-model run" in lines[0] and "'mlp'" in lines[0]
