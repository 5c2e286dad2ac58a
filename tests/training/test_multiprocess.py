"""Multi-process training: local processes on free ports (``experiments.launch_local``).

What is checked:

- the same run on 2 processes x 2 devices, 1 process x 4 devices and
  1 process x 1 device (grokking MLP, batch 512; tiny LM, batch 8; 20 steps),
  replicated and FSDP: equal up to the order of floating-point reductions;
- a run saved by 2 processes (FSDP) resumes in 1 process (replicated) and the
  reverse: the state handed over is bit-identical (the checkpoint's SHA-256
  digests of the global values verify in the other layout), and on the same
  process count a resumed run is bit-identical to a straight one;
- one voice: only process 0 writes ``metrics.jsonl`` and prints progress; a
  decision of process 0 (workdir locked) stops every process; the launcher
  fails if any process fails;
- kill -9 of one process: the other exits non-zero with one ``error:`` line
  within ``--distributed_timeout_s`` (+ startup slack), and rerunning all
  processes resumes from the last checkpoint.

Tolerances (float32 eps; measured on 2 cores, x86-64):

- losses, gradient and parameter norms in ``metrics.jsonl``: relative 32 eps
  (measured <= 6: LM test loss, 1 x 1 vs 1 x 4);
- accuracies and zero-loss fractions: at most one example apart;
- params and optimizer state after 20 steps, normwise per leaf
  (``max|a - b| / max|b|``): 1024 eps (measured <= 219: LM 1 x 1 vs 1 x 4; Adam
  turns the rounding of small gradient coordinates into O(lr) steps). A wrong
  batch or a reduction over part of the devices is off by >= 1e-3 relative
  (> 8 000 eps), so the bounds can fail.

Most tests are ``slow`` (each launch is 30-100 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from experiments import _distributed
from experiments import launch_local
from optim_lab import rundir
from optim_lab.training import checkpoint
from optim_lab.training import train
from optim_lab.training import workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
EPS = float(np.finfo(np.float32).eps)
METRIC_ULPS = 32
STATE_ULPS = 1024
ERROR_LINE = re.compile(r"^error: ")
RELATIVE_KEYS = ("train/loss", "test/loss", "grads/global/l2", "params/global/norm",
                 "train/bits_per_byte", "test/bits_per_byte")
FRACTION_KEYS = ("train/accuracy", "test/accuracy", "probe/zero_loss")

GROKKING = ["--config=experiments/configs/grokking.py", "--config.batch_size=512",
            "--config.log_every=5", "--config.eval_every=10",
            "--config.checkpoint_every=10"]
LM = ["--config=experiments/configs/lm.py", "--config.model.num_layers=2",
      "--config.model.d_model=32", "--config.model.num_heads=2",
      "--config.model.mlp_hidden=64", "--config.model.context=32",
      "--config.data.context=32", "--config.batch_size=8", "--config.log_every=5",
      "--config.eval_every=10", "--config.checkpoint_every=10"]
TINY = ["--config=experiments/configs/grokking.py", "--config.data.modulus=11",
        "--config.model.hidden=(16,)", "--config.batch_size=16", "--config.log_every=5",
        "--config.eval_every=10", "--config.checkpoint_every=5"]


def launch(workdir, args, processes, devices, *, steps, timeout=900, extra=()):
    """Runs ``experiments.train`` on ``processes`` x ``devices`` via the launcher."""
    cmd = [sys.executable, "-m", "experiments.launch_local",
           f"--num_processes={processes}", f"--devices_per_process={devices}",
           f"--logs={workdir}.logs", "--", *args, f"--workdir={workdir}",
           f"--config.steps={steps}", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def launched(workdir, args, processes, devices, *, steps, extra=()):
    res = launch(workdir, args, processes, devices, steps=steps, extra=extra)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    return res


def _config(workdir) -> ml_collections.ConfigDict:
    record = rundir.load_config(workdir)
    record.pop("data_fingerprint", None)
    return ml_collections.ConfigDict(record)


def final_state(workdir):
    return jax.device_get(train.restore_state(_config(workdir), workdir))


def normwise_eps(a_tree, b_tree) -> float:
    worst = 0.0
    for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if not np.issubdtype(np.asarray(b).dtype, np.floating) or not b.size:
            assert np.array_equal(a, b)
            continue
        scale = np.max(np.abs(b))
        worst = max(worst, float(np.max(np.abs(a - b)) / (scale or 1.0) / EPS))
    return worst


def assert_same_run(a, b, *, exact=False):
    """Run directories ``a`` and ``b`` hold the same run (up to reduction order)."""
    ma, mb = rundir.read_metrics(a), rundir.read_metrics(b)
    assert [r["step"] for r in ma] == [r["step"] for r in mb]
    sa, sb = final_state(a), final_state(b)
    if exact:
        assert ma == mb
        for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
            np.testing.assert_array_equal(x, y)
        return
    n_eval = None
    for ra, rb in zip(ma, mb):
        for k in RELATIVE_KEYS:
            if k in rb:
                assert abs(ra[k] - rb[k]) <= METRIC_ULPS * EPS * abs(rb[k]), (k, ra, rb)
        for k in FRACTION_KEYS:
            if k in rb:
                n_eval = n_eval or _eval_examples(a)
                assert abs(ra[k] - rb[k]) <= 1.0 / n_eval + 1e-12, (k, ra[k], rb[k])
    assert normwise_eps(sa.params, sb.params) <= STATE_ULPS
    assert normwise_eps(sa.opt_state, sb.opt_state) <= STATE_ULPS


def _eval_examples(workdir) -> int:
    data, _, _, _ = train.setup(_config(workdir))
    return min(data.num_train, int(data.test_x.shape[0]))


def assert_one_voice(workdir, res):
    """Process 0 printed the progress; process 1 printed none, wrote no log."""
    assert re.search(r"^step \d+/\d+ \|", res.stdout, re.M), res.stdout[-1000:]
    other = pathlib.Path(f"{workdir}.logs/process_1.log").read_text()
    assert not re.search(r"^step \d+/", other, re.M), other[-1000:]
    assert "[Gloo]" not in res.stdout + other  # the supervisor drops gloo's notices
    assert rundir.read_metrics(workdir)  # one log, written once per step


# -- fast checks -----------------------------------------------------------------

def test_supervisor_turns_runtime_aborts_into_one_line():
    s = _distributed.Settings("localhost:1234", 2, 1, False, 7)
    heartbeat = ["E1201 23:08:22.628416     873 coordination_service.cc:1549] Use error "
                 "polling to propagate the following error to all tasks: UNAVAILABLE: The "
                 "following tasks are unhealthy (stopped sending heartbeats):\n", "0\n",
                 "The tasks have crashed.\n", "F1201 23:08:22.629173 884 client.h:80] "
                 "Terminating process because ...\n"]
    assert _distributed._reason(heartbeat, -6, s) == (
        "lost process 0: no heartbeat for 7 s (killed, crashed or hung); stopping")
    leader = ["F1201 23:09:48.522445 2539 client.h:80] Terminating process because the "
              "JAX distributed service detected fatal errors. ... absl::Status: "
              "UNAVAILABLE: Failed to send RPC to coordination service. Either the "
              "leader task was preempted/died/restarted unexpectedly\n"]
    assert "lost the coordinator (process 0 at localhost:1234)" in _distributed._reason(
        leader, -6, s)
    assert _distributed._reason([], -9, s) == "the worker was killed by SIGKILL"


PREEMPTION_WARNING = [  # what CI's survivor printed before the runtime's abort
    "W1202 02:15:45.688353   32717 preemption_sync_manager.cc:147] Failed to retrieve "
    "preemption notice from coordination service: UNAVAILABLE: recvmsg:Connection reset "
    "by peer\n",
    "Additional GRPC error information from remote target coordination_service while "
    "calling /xla.coordination.CoordinationService/GetKeyValue:\n",
    ":UNKNOWN:Error received from peer  {grpc_message:\"recvmsg:Connection reset by "
    "peer\", grpc_status:14}. This is only expected if one of the tasks is unhealthy.\n"]
LEADER_ABORT = ("F1202 02:15:46.000001 32718 client.h:80] Terminating process because the "
                "JAX distributed service detected fatal errors. absl::Status: UNAVAILABLE: "
                "Failed to send RPC to coordination service. Either the leader task was "
                "preempted/died/restarted unexpectedly\n")


def _filtered(lines, code, debug=False):
    s = _distributed.Settings("localhost:1234", 2, 1, False, 7)
    f = _distributed.StderrFilter(debug)
    shown = [out for line in lines for out in f.feed(line)]
    return shown, f.finish(code, s)


def test_supervisor_holds_runtime_warnings_before_an_abort():
    shown, end = _filtered(["note: resuming\n", *PREEMPTION_WARNING, LEADER_ABORT], -6)
    assert shown == ["note: resuming\n"]
    assert len(end) == 1 and ERROR_LINE.match(end[0]), end
    assert "lost the coordinator (process 0 at localhost:1234)" in end[0]


def test_supervisor_forwards_the_workers_own_error_line_once():
    own = "error: process 1: a collective with the other processes failed; ...\n"
    shown, end = _filtered([*PREEMPTION_WARNING, own], 1)
    assert shown == [own] and end == []


def test_supervisor_keeps_a_held_python_traceback_and_warnings_of_a_good_run():
    tb = ["Traceback (most recent call last):\n", '  File "x.py", line 1\n',
          "ZeroDivisionError: division by zero\n"]
    shown, end = _filtered([*PREEMPTION_WARNING, *tb], 1)
    assert shown == [] and ERROR_LINE.match(end[0]) and end[1:] == tb
    shown, end = _filtered(PREEMPTION_WARNING, 0)
    assert shown == [] and end == PREEMPTION_WARNING
    shown, end = _filtered([*PREEMPTION_WARNING, LEADER_ABORT], -6, debug=True)
    assert shown == [*PREEMPTION_WARNING, LEADER_ABORT] and end == []


def _binary(*args):
    env = {k: v for k, v in os.environ.items()  # no cluster to detect
           if not k.startswith(("SLURM_", "OMPI_", "PMI_"))}
    return subprocess.run([sys.executable, "-m", "experiments.train",
                           "--config=experiments/configs/grokking.py", "--workdir=/nonexistent",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--coordinator_address=localhost:1234"], "--coordinator_address needs "
     "--num_processes --process_id too"),
    (["--coordinator_address=localhost:1234", "--num_processes=2", "--process_id=2"],
     "--process_id must be < --num_processes (2), got 2"),
    (["--coordinator_address=localhost", "--num_processes=2", "--process_id=0"],
     "expected HOST:PORT"),
    (["--distributed=auto"], "--distributed=auto: coordinator_address should be defined. "
     "(no cluster detected"),
])
def test_launch_flag_mistakes_are_one_line(args, message):
    res = _binary(*args)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr


def test_two_processes_equal_one_and_speak_with_one_voice(tmp_path):
    two = tmp_path / "two"
    res = launched(two, TINY, 2, 1, steps=10)
    assert_one_voice(two, res)
    assert re.search(r"^step 10/10 \|", res.stdout, re.M)
    one = tmp_path / "one"
    launched(one, TINY, 1, 2, steps=10)
    assert_same_run(two, one)


def test_a_decision_of_process_0_stops_every_process(tmp_path):
    """The workdir is locked: process 0 is refused, process 1 learns it; the
    launcher fails."""
    wd = tmp_path / "locked"
    with workdir_lib.lock(wd):
        res = launch(wd, TINY, 2, 1, steps=10, timeout=600)
    assert res.returncode == 1, res.stderr[-3000:]
    assert f"workdir {wd} in use by pid {os.getpid()}" in res.stderr
    other = pathlib.Path(f"{wd}.logs/process_1.log").read_text()
    assert "error: process 0 stopped: workdir" in other, other
    assert "launch_local: failed" in res.stderr


# -- process counts, layouts, resume ---------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Baselines shared by the slow tests, created on first use."""
    root = tmp_path_factory.mktemp("mp")
    cache = {}

    def get(name, args, processes, devices, steps=20, extra=()):
        if name not in cache:
            launched(root / name, args, processes, devices, steps=steps, extra=extra)
            cache[name] = root / name
        return cache[name]

    get.root = root
    return get


@pytest.mark.slow
def test_grokking_on_2x2_equals_1x4_and_1x1(runs):
    base = runs("grok_1x4", GROKKING, 1, 4)
    assert_same_run(runs("grok_2x2", GROKKING, 2, 2), base)
    assert_same_run(runs("grok_1x1", GROKKING, 1, 1), base)


@pytest.mark.slow
def test_lm_on_2x2_equals_1x4_and_1x1_replicated_and_fsdp(runs):
    base = runs("lm_1x4", LM, 1, 4)
    assert_same_run(runs("lm_2x2", LM, 2, 2), base)
    assert_same_run(runs("lm_2x2_fsdp", LM, 2, 2, extra=["--config.sharding=fsdp"]), base)
    assert_same_run(runs("lm_1x1", LM, 1, 1), base)


def _assert_handover_exact(workdir, step):
    """The checkpoint of ``step`` restores here (1 process, 1 device) to the
    exact bytes its writers hashed (SHA-256 of the global values)."""
    manifest = json.loads((workdir / "checkpoints" / str(step) / "manifest" / "metadata")
                          .read_text())
    config = _config(workdir)
    _, fn, _, tx = train.setup(config)

    def fail(line):
        raise AssertionError(line)

    state = checkpoint.restore(workdir, train.initial_state(fn, tx, config.seed),
                               report=fail)
    assert int(state.step) == step
    assert checkpoint.digests(state._asdict()) == manifest["leaves"]


@pytest.mark.slow
def test_saved_by_2_processes_resumes_in_1_and_the_reverse(runs, tmp_path):
    fsdp = ["--config.sharding=fsdp"]
    # 2 processes (FSDP) save step 10; 1 process x 4 devices (replicated) goes on.
    a = tmp_path / "two_then_one"
    launched(a, GROKKING, 2, 2, steps=10, extra=fsdp)
    _assert_handover_exact(a, 10)
    res = launched(a, GROKKING, 1, 4, steps=20)
    assert "damaged" not in res.stderr
    assert_same_run(a, runs("grok_1x4", GROKKING, 1, 4))
    # 1 process saves step 10; 2 processes (FSDP) go on.
    b = tmp_path / "one_then_two"
    launched(b, GROKKING, 1, 4, steps=10)
    res = launched(b, GROKKING, 2, 2, steps=20, extra=fsdp)
    assert "damaged" not in res.stderr
    straight = runs("grok_2x2_fsdp", GROKKING, 2, 2, extra=fsdp)
    assert_same_run(b, straight)
    # On the same process count, resuming is exact (as in one process).
    c = tmp_path / "two_then_two"
    launched(c, GROKKING, 2, 2, steps=10, extra=fsdp)
    launched(c, GROKKING, 2, 2, steps=20, extra=fsdp)
    assert_same_run(c, straight, exact=True)


# -- failure ---------------------------------------------------------------------------

def _start_pair(workdir, timeout_s, steps):
    port = launch_local.free_port()
    args = [*TINY, f"--workdir={workdir}", f"--config.steps={steps}",
            f"--distributed_timeout_s={timeout_s}"]
    env = launch_local.process_env(1)
    return [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for cmd in launch_local.commands("experiments.train", args, 2, port)]


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_kill9_one_process_stops_the_other_then_rerun_resumes(tmp_path, runs, victim):
    timeout_s, steps = 5, 60
    wd = tmp_path / "killed"
    procs = _start_pair(wd, timeout_s, steps)
    for expected in ("step 5/", "step 10/"):  # stepping; the step-5 checkpoint saved
        line = procs[0].stdout.readline()
        assert line.startswith(expected), line
    t0 = time.monotonic()
    procs[victim].send_signal(signal.SIGKILL)
    survivor = procs[1 - victim]
    try:
        _, err = survivor.communicate(timeout=timeout_s + 30)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("the surviving process hung after its peer was killed")
    elapsed = time.monotonic() - t0
    procs[victim].communicate()
    assert survivor.returncode != 0
    assert elapsed <= timeout_s + 20, elapsed
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and ERROR_LINE.match(lines[0]), err
    assert f"process {1 - victim}" in lines[0], lines[0]
    # Rerunning all processes resumes from the last checkpoint, exactly.
    restored = int(train.restore_state(_config(wd), wd).step)
    assert restored >= 5
    res = launched(wd, TINY, 2, 1, steps=steps)
    assert f"step {steps}/{steps}" in res.stdout
    straight = runs("tiny_2x1_60", TINY, 2, 1, steps=steps)
    assert_same_run(wd, straight, exact=True)
