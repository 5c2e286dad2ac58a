"""The sweep and summarize binaries, run as a user runs them."""

import json
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments import summarize
from optim_lab import rundir
from optim_lab.training import checkpoint
from optim_lab.training import plotting
from optim_lab.training import train

import binaries

TINY = ["--config=experiments/configs/grokking.py", "--config.data.modulus=11",
        "--config.model.hidden=(16,)", "--config.batch_size=16"]


def _run(module, *args, timeout=600):
    return binaries.run(module, *args, timeout=timeout)


def _sweep_args(workdir, steps, *extra):
    return [*TINY, f"--workdir={workdir}", f"--config.steps={steps}",
            "--config.log_every=5", "--config.eval_every=10",
            "--config.checkpoint_every=10", *extra]


@pytest.mark.parametrize("axis, needles", [
    ("--sweep=optimizer.learnin_rate=1e-3,1e-2",
     ["unknown config field 'optimizer.learnin_rate'",
      "did you mean 'optimizer.learning_rate'?"]),
    ("--sweep=seed=0,x", ["seed: cannot parse 'x' as int"]),
    ("--sweep=optimizer.learning_rate=1e-2,-1",
     ["sweep member optimizer.learning_rate=-1.0", "learning_rate must be in (0, inf)"]),
], ids=["unknown_field", "unparsable", "invalid_member"])
def test_bad_sweeps_are_one_line_errors_before_compiling(tmp_path, axis, needles):
    out = _run("experiments.sweep", *_sweep_args(tmp_path / "sw", 10), axis)
    assert "Traceback" not in out.stderr and out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    assert all(n in lines[0] for n in needles), lines[0]
    assert not (tmp_path / "sw").exists()


def test_sweep_binary_runs_groups_and_summarize_reads_them(tmp_path):
    sw = tmp_path / "sw"
    out = _run("experiments.sweep", *_sweep_args(sw, 10), "--sweep=seed=0,1",
               "--sweep=optimizer.name=adamw,sgd")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sweep: 4 members in 2 program group(s)" in out.stdout
    assert "note: optimizer sgd does not take b1, b2, eps" in out.stderr
    names = sorted(p.name for p in sw.iterdir())
    assert names == ["seed=0,optimizer.name=adamw", "seed=0,optimizer.name=sgd",
                     "seed=1,optimizer.name=adamw", "seed=1,optimizer.name=sgd"]
    cfg = json.loads((sw / "seed=1,optimizer.name=sgd" / "config.json").read_text())
    assert cfg["seed"] == 1 and cfg["optimizer"]["name"] == "sgd"
    assert cfg["optimizer"]["b2"] is None and cfg["steps"] == 10
    assert all(rundir.read_metrics(sw / n)[-1]["step"] == 10 for n in names)

    res = _run("experiments.summarize", str(sw), "--metrics=train/loss,test/accuracy")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line for line in res.stdout.splitlines() if line.startswith("| optimizer")]
    assert [r.split(" | ")[:3] for r in rows] == [  # labels: the fields that differ
        ["| optimizer.b1=0.9, optimizer.b2=0.99, optimizer.eps=1e-25, optimizer.name=adamw",
         "2 (0, 1)", "10"],
        ["| optimizer.b1=None, optimizer.b2=None, optimizer.eps=None, optimizer.name=sgd",
         "2 (0, 1)", "10"]]
    assert (sw / "summary.md").read_text().strip() == res.stdout.strip()


def _synthetic(path, lr, seed, losses, accs):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(
        {"optimizer": {"learning_rate": lr}, "seed": seed}, sort_keys=True))
    (path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": 10 * i, "train/loss": loss, "test/accuracy": acc}) + "\n"
        for i, (loss, acc) in enumerate(zip(losses, accs))))


def test_summary_table_numbers(tmp_path):
    _synthetic(tmp_path / "a0", 0.1, 0, [1.0, 0.2, 0.4], [0.1, 0.9, 0.8])
    _synthetic(tmp_path / "a1", 0.1, 1, [1.0, 0.3, 0.2], [0.1, 0.5, 0.7])
    _synthetic(tmp_path / "b0", 0.2, 0, [1.0, "nan", "nan"], [0.1, 0.2, "nan"])
    assert summarize.final_and_best(rundir.read_metrics(tmp_path / "a0"), "train/loss") \
        == (0.4, 0.2)
    assert summarize.final_and_best(rundir.read_metrics(tmp_path / "a0"), "test/accuracy") \
        == (0.8, 0.9)
    groups = plotting.group_by_seed(plotting.find_runs([tmp_path]))
    table = summarize.summary_table(groups, ["train/loss", "test/accuracy"]).splitlines()
    assert table[0] == ("| group | seeds | step | final train/loss | best train/loss (min) "
                        "| final test/accuracy | best test/accuracy (max) |")
    # final loss 0.4, 0.2: mean 0.3, sample std 0.1414; best 0.2, 0.2; final acc 0.8,
    # 0.7: 0.75 ± 0.07071; best 0.9, 0.7: 0.8 ± 0.1414; the diverged seed: nan.
    assert table[2] == ("| optimizer.learning_rate=0.1 | 2 (0, 1) | 20 | 0.3 ± 0.14 | "
                        "0.2 ± 0 | 0.75 ± 0.071 | 0.8 ± 0.14 |")
    assert table[3] == "| optimizer.learning_rate=0.2 | 1 (0) | 20 | nan | 1 | nan | 0.2 |"


def _template(seed):
    """A state of the kill test's members' structure."""
    from experiments.configs import grokking
    cfg = grokking.get_config()
    cfg.data.modulus, cfg.model.hidden, cfg.batch_size, cfg.seed = 11, (16,), 16, seed
    _, fn, _, tx = train.setup(cfg)
    return train.initial_state(fn, tx, seed)


@pytest.mark.slow
def test_kill9_sweep_resumes_exactly(tmp_path):
    args = [*TINY, "--config.steps=40", "--config.log_every=1", "--config.eval_every=2",
            "--config.checkpoint_every=1", "--sweep=seed=0,1",
            "--sweep=optimizer.learning_rate=1e-2,3e-2"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run("experiments.sweep", *args, f"--workdir={straight}").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", *args,
                             f"--workdir={killed}"], cwd=binaries.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    proc.stdout.readline()  # the plan line
    proc.stdout.readline()  # first progress line: compiled and stepping
    time.sleep(random.Random(7).uniform(0.2, 2.0))  # saves every step: often mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = [json.loads(line)["step"] for d in killed.iterdir()
             for line in (d / "metrics.jsonl").read_text().splitlines()[-1:]
             if line.endswith("}")]
    assert steps and max(steps) < 40, steps  # killed mid-run
    assert _run("experiments.sweep", *args, f"--workdir={killed}").returncode == 0
    for d in sorted(straight.iterdir()):
        assert rundir.read_metrics(killed / d.name) == rundir.read_metrics(d)
        seed = json.loads((d / "config.json").read_text())["seed"]
        template = _template(seed)
        a = jax.tree.leaves(jax.device_get(checkpoint.restore(killed / d.name, template)))
        b = jax.tree.leaves(jax.device_get(checkpoint.restore(d, template)))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
