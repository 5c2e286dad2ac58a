"""Sweeps on several processes: local processes on free ports (``experiments.launch_local``).

A 2-member sweep (seeds 0 and 1, the tiny grokking MLP, batch 16, 10 steps)
runs on 2 processes x 1 device through the launcher (``-m experiments.sweep``).
What is checked:

- it equals the same sweep in 1 process x 2 devices **exactly**: every logged
  metric, and the whole state at step 10 (the SHA-256 digests of every leaf
  in the checkpoint manifests). Same mesh size, same per-device programs, and
  a sum of two partial values does not depend on their order, so nothing may
  differ;
- one voice: process 0 prints the plan, the progress and the config's
  ``note:`` line (the file's Adam fields dropped for SGD), process 1 none of
  them; each member's ``metrics.jsonl`` holds every logged step once (a
  second writer would duplicate lines);
- the sweep saved by 2 processes resumes in 1 process x 1 device: the step-10
  checkpoints restore here to the bytes their writers hashed, the resumed
  members reach step 20 without a damaged checkpoint, and equal the straight
  1 x 2 sweep up to the order of reductions, with the tolerances of
  ``test_multiprocess.py`` (float32 eps: metrics relative 32 eps, state
  normwise 1024 eps; accuracies one example).

``slow``: the three launches take 1-2 min on 2 busy cores.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import test_multiprocess as mp

from optim_lab import rundir
from optim_lab.training import sweep as sweep_lib

from runs import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--config=experiments/configs/grokking.py", "--config.data.modulus=11",
        "--config.optimizer.name=sgd",  # drops the file's Adam fields: a note: line
        "--config.model.hidden=(16,)", "--config.batch_size=16", "--config.log_every=5",
        "--config.eval_every=10", "--config.checkpoint_every=10", "--sweep=seed=0,1"]
MEMBERS = ("seed=0", "seed=1")
PROGRESS = re.compile(r"^group 1/1, mean of 2: step (\d+)/(\d+) \|", re.M)


def sweep(workdir, processes, devices, steps, timeout=900):
    """Runs ``experiments.sweep`` on ``processes`` x ``devices`` via the launcher."""
    cmd = [sys.executable, "-m", "experiments.launch_local",
           f"--num_processes={processes}", f"--devices_per_process={devices}",
           f"--logs={workdir}.logs", "-m", "experiments.sweep", "--", *TINY,
           f"--workdir={workdir}", f"--config.steps={steps}"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    return res


def manifest(member_dir, step):
    path = member_dir / "checkpoints" / str(step) / "manifest" / "metadata"
    return json.loads(path.read_text())


def test_launcher_runs_the_sweep_binary_with_dash_m(tmp_path):
    """``-m experiments.sweep`` picks the binary: its own flag error comes back."""
    res = subprocess.run(
        [sys.executable, "-m", "experiments.launch_local", "--num_processes=1",
         "-m", "experiments.sweep", "--", *TINY[:-1], "--sweep=seed=0,x",
         f"--workdir={tmp_path / 'sw'}"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "error: --sweep: seed: cannot parse 'x' as int" in res.stderr, res.stderr[-2000:]


def test_sweeps_refuse_fsdp(tmp_path):
    config = tiny_config(sharding="fsdp")
    members = sweep_lib.expand(config, sweep_lib.parse_axes(["seed=0,1"], config))
    with pytest.raises(ValueError, match=r"sweep member seed=0: sharding: sweeps keep "
                       r"every member's state replicated, got 'fsdp'"):
        sweep_lib.plan(members, tmp_path)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The 2 x 1 sweep to step 10 and the 1 x 2 sweep to step 20."""
    root = tmp_path_factory.mktemp("sweep_mp")
    two = root / "two"
    res = sweep(two, 2, 1, steps=10)
    one = root / "one"
    sweep(one, 1, 2, steps=20)
    return two, res, one


@pytest.mark.slow
def test_sweep_on_2_processes_equals_1_process_with_one_voice(sweeps):
    two, res, one = sweeps
    assert sorted(p.name for p in two.iterdir()) == list(MEMBERS)
    # one voice
    assert "sweep: 2 members in 1 program group(s)" in res.stdout
    assert [m.groups() for m in PROGRESS.finditer(res.stdout)] == [("5", "10"),
                                                                  ("10", "10")]
    other = pathlib.Path(f"{two}.logs/process_1.log").read_text()
    assert "sweep:" not in other and not PROGRESS.search(other), other[-2000:]
    assert "note: optimizer sgd does not take" in res.stdout + res.stderr
    assert "note:" not in other, other[-2000:]
    assert "[Gloo]" not in res.stdout + other
    for name in MEMBERS:
        assert [r["step"] for r in rundir.read_metrics(two / name)] == [0, 5, 10]
        assert json.loads((two / name / "config.json").read_text()) == \
            json.loads((one / name / "config.json").read_text()) | {"steps": 10}
    # exactly the 1-process sweep: every logged value, every byte of the state
    for name in MEMBERS:
        assert rundir.read_metrics(two / name) == rundir.read_metrics(one / name)[:3]
        assert manifest(two / name, 10) == manifest(one / name, 10)


@pytest.mark.slow
def test_sweep_saved_by_2_processes_resumes_in_1(sweeps, tmp_path):
    two, _, one = sweeps
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    for name in MEMBERS:
        mp._assert_handover_exact(resumed / name, 10)
    res = sweep(resumed, 1, 1, steps=20)
    assert "damaged" not in res.stderr, res.stderr[-2000:]
    assert [m.groups() for m in PROGRESS.finditer(res.stdout)] == [("15", "20"),
                                                                  ("20", "20")]
    for name in MEMBERS:
        mp.assert_same_run(resumed / name, one / name)
