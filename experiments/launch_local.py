"""Starts a multi-process run on this machine (for testing what a cluster runs).

    python -m experiments.launch_local --num_processes=2 --devices_per_process=2 \\
        -- --config=experiments/configs/lm.py --workdir=runs/lm2

starts ``--num_processes`` copies of ``python -m <--module>`` (``-m``; default
``experiments.train``, e.g. ``-m experiments.sweep`` for a sweep) with the
arguments after ``--`` plus
``--coordinator_address=localhost:<a free port> --num_processes=N
--process_id=I``; each process sees ``--devices_per_process`` CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count``; 0: leave the
environment alone). Process 0's output is streamed; the others' goes to
``--logs`` (default: a new temporary directory), and the tail of a failing
process's log is printed. The launcher exits 0 if every process does, else
with the first failing process's status; if one fails, the others are given
``--grace_s`` seconds to stop on their own (they do, within their
``--distributed_timeout_s``) and then killed.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_processes", 2, "Processes to start.", lower_bound=1)
flags.DEFINE_integer("devices_per_process", 0, "CPU devices per process (0: the "
                     "environment's default).", lower_bound=0)
flags.DEFINE_string("module", "experiments.train", "The binary (python -m MODULE), "
                    "e.g. experiments.sweep.", short_name="m")
flags.DEFINE_string("logs", None, "Where processes 1.. write their output "
                    "(process_<i>.log); default: a new temporary directory.")
flags.DEFINE_float("grace_s", 120.0, "After a process fails, how long the others "
                   "get to stop on their own before they are killed.", lower_bound=0)
flags.DEFINE_integer("port", 0, "Coordinator port (0: a free one).", lower_bound=0)

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def free_port() -> int:
    """A TCP port free on localhost right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_env(devices: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with ``devices`` forced CPU devices (0: as is)."""
    env = dict(os.environ if base is None else base)
    if devices:
        xla = re.sub(rf"{_DEVICE_FLAG}=\d+", "", env.get("XLA_FLAGS", "")).strip()
        env["XLA_FLAGS"] = f"{xla} {_DEVICE_FLAG}={devices}".strip()
    return env


def commands(module: str, args: list[str], num_processes: int, port: int
             ) -> list[list[str]]:
    """The command line of each process."""
    return [[sys.executable, "-m", module, *args,
             f"--coordinator_address=localhost:{port}",
             f"--num_processes={num_processes}", f"--process_id={i}"]
            for i in range(num_processes)]


def _tail(path: pathlib.Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def launch(args: list[str], *, num_processes: int, devices_per_process: int = 0,
           module: str = "experiments.train", log_dir: str | None = None,
           grace_s: float = 120.0, port: int = 0) -> int:
    """Runs the processes; returns 0 or the first failing process's status."""
    port = port or free_port()
    logs = pathlib.Path(log_dir or tempfile.mkdtemp(prefix="launch_local_"))
    logs.mkdir(parents=True, exist_ok=True)
    env = process_env(devices_per_process)
    procs, files = [], []
    if num_processes > 1:
        print(f"launch_local: {num_processes} processes on localhost:{port}; "
              f"processes 1..{num_processes - 1} log to {logs}/", file=sys.stderr,
              flush=True)
    for i, cmd in enumerate(commands(module, args, num_processes, port)):
        if i == 0:
            procs.append(subprocess.Popen(cmd, env=env))
        else:
            f = open(logs / f"process_{i}.log", "w")  # noqa: SIM115 - closed below
            files.append(f)
            procs.append(subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT))

    def kill_all(signum=None, frame=None):
        del frame
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
        if signum is not None:
            os._exit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, kill_all)
    first_failure, deadline = None, None
    try:
        while any(p.poll() is None for p in procs):
            for i, p in enumerate(procs):
                code = p.poll()
                if code not in (None, 0) and first_failure is None:
                    first_failure = (i, code)
                    deadline = time.monotonic() + grace_s
                    if i > 0:
                        print(f"launch_local: process {i} failed ({_status(code)}); "
                              f"last lines of {logs}/process_{i}.log:\n"
                              + _tail(logs / f"process_{i}.log"), file=sys.stderr,
                              flush=True)
            if deadline is not None and time.monotonic() > deadline:
                alive = [i for i, p in enumerate(procs) if p.poll() is None]
                print(f"launch_local: processes {alive} still running {grace_s:g} s "
                      "after a failure; killing them", file=sys.stderr, flush=True)
                kill_all()
            time.sleep(0.1)
    finally:
        for f in files:
            f.close()
    if first_failure is None:
        failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode]
        first_failure = failed[0] if failed else None
    if first_failure is None:
        return 0
    i, code = first_failure
    print(f"launch_local: failed: process {i} ({_status(code)})", file=sys.stderr,
          flush=True)
    return code if code > 0 else 1


def main(argv: list[str]) -> None:
    sys.exit(launch(argv[1:], num_processes=FLAGS.num_processes,
                    devices_per_process=FLAGS.devices_per_process, module=FLAGS.module,
                    log_dir=FLAGS.logs, grace_s=FLAGS.grace_s, port=FLAGS.port))


if __name__ == "__main__":
    app.run(main)
