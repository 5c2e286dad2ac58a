"""Multi-process launch flags shared by the binaries (``jax.distributed``).

    python -m experiments.train ... --coordinator_address=HOST:PORT \\
        --num_processes=N --process_id=I [--distributed_timeout_s=60]
    srun python -m experiments.train ... --distributed=auto     # SLURM / Open MPI / TPU

A binary calls :func:`initialize_from_flags` first thing in ``main`` (before
anything touches a device). With neither flag it does nothing: one process,
its local devices. Otherwise it configures CPU collectives over gloo and calls
``jax.distributed.initialize`` (``--distributed=auto``: the cluster's
environment provides what the flags leave unset), after which ``jax.devices()``
lists every process's devices and the training code builds one global mesh
over them (see ``optim_lab/training/parallel.py``).

**Failure.** If a process dies or hangs, the others must not hang: the JAX
runtime declares a process dead after ``--distributed_timeout_s`` seconds
without a heartbeat (and a lost coordinator, process 0, at once) and aborts
every survivor. That abort is a multi-line C++ log with a stack trace, so each
process runs its work in a *worker* child process and stays as a thin
supervisor that forwards the worker's output, turns a runtime abort into one
line (``error: process 1: lost process 0 (the coordinator) ...``) and exits
non-zero. The worker dies with its supervisor (``PR_SET_PDEATHSIG``), so killing
either is killing the process. An error in a collective (a peer vanished mid
all-reduce) is one line too, and the worker exits at once instead of waiting
for the others at shutdown. ``--debug`` passes the runtime's log through.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

from absl import flags

ENV_WORKER = "OPTIM_LAB_DISTRIBUTED_WORKER"  # set in the worker child
DEFAULT_TIMEOUT_S = 60
INIT_TIMEOUT_S = 300  # processes of a cluster job start with some skew
SHUTDOWN_TIMEOUT_S = 60

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the launch flags (idempotent)."""
    if "coordinator_address" in FLAGS:
        return
    flags.DEFINE_string("coordinator_address", None,
                        "HOST:PORT of process 0's coordinator: a multi-process run "
                        "(with --num_processes and --process_id).")
    flags.DEFINE_integer("num_processes", None, "Processes in the run.", lower_bound=1)
    flags.DEFINE_integer("process_id", None, "This process's index, 0 .. N-1.",
                         lower_bound=0)
    flags.DEFINE_enum("distributed", "off", ["off", "auto"],
                      "auto: jax.distributed.initialize() detects the cluster "
                      "(SLURM, Open MPI, TPU); the flags above override what it "
                      "detects. off: multi-process only with --coordinator_address.")
    flags.DEFINE_integer("distributed_timeout_s", DEFAULT_TIMEOUT_S,
                         "A process silent this long (killed, crashed, hung) stops "
                         "the others. Waiting for all processes to join at start "
                         f"takes at most max(this, {INIT_TIMEOUT_S}) s, at shutdown "
                         f"max(this, {SHUTDOWN_TIMEOUT_S}) s.", lower_bound=1)


class Settings:
    """The parsed launch flags."""

    def __init__(self, coordinator_address, num_processes, process_id, auto, timeout_s):
        self.coordinator_address = coordinator_address
        self.num_processes, self.process_id = num_processes, process_id
        self.auto, self.timeout_s = auto, timeout_s

    @property
    def enabled(self) -> bool:
        if self.auto:
            return True
        return self.coordinator_address is not None and self.num_processes != 1

    def who(self) -> str:
        """``"process I"`` (as far as this process knows its index)."""
        pid = self.process_id
        if pid is None:
            for var in ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
                if os.environ.get(var, "").isdigit():
                    pid = int(os.environ[var])
                    break
        return f"process {pid}" if pid is not None else "this process"


def settings_from_flags() -> Settings:
    """The launch flags, validated (``ValueError`` names the flag)."""
    s = Settings(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                 FLAGS.distributed == "auto", FLAGS.distributed_timeout_s)
    if not s.auto:
        given = [n for n in ("coordinator_address", "num_processes", "process_id")
                 if FLAGS[n].value is not None]
        if given and len(given) < 3:
            missing = sorted({"coordinator_address", "num_processes", "process_id"}
                             - set(given))
            raise ValueError(f"--{given[0]} needs --{' --'.join(missing)} too (or "
                             "--distributed=auto on a cluster)")
    if s.coordinator_address is not None and not re.fullmatch(
            r"\[?[^\s\[\]]+\]?:\d{1,5}", s.coordinator_address):
        raise ValueError("--coordinator_address: expected HOST:PORT, got "
                         f"{s.coordinator_address!r}")
    if (s.num_processes is not None and s.process_id is not None
            and s.process_id >= s.num_processes):
        raise ValueError(f"--process_id must be < --num_processes ({s.num_processes}), "
                         f"got {s.process_id}")
    return s


def initialize_from_flags() -> None:
    """Joins the multi-process run the flags ask for (no-op for one process).

    In the launched process this never returns: it runs the worker child (the
    same command line) and exits with its status. In the worker it calls
    :func:`initialize`.
    """
    s = settings_from_flags()
    if not s.enabled:
        return
    if os.environ.get(ENV_WORKER) != "1":
        sys.exit(supervise(s, debug=bool(FLAGS["debug"].value) if "debug" in FLAGS
                           else False))
    _die_with_parent()
    initialize(s.coordinator_address, s.num_processes, s.process_id,
               timeout_s=s.timeout_s, auto=s.auto)


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None, *, timeout_s: int = DEFAULT_TIMEOUT_S,
               auto: bool = False) -> None:
    """``jax.distributed.initialize`` with CPU collectives over gloo.

    ``auto``: unset arguments come from the cluster's environment. A process
    without heartbeat for ``timeout_s`` stops the others. Raises a ``RunError``
    (one line) if the processes cannot meet within ``max(timeout_s, 300)`` s.
    """
    import jax  # noqa: PLC0415

    from optim_lab.training.errors import RunError  # noqa: PLC0415
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address, num_processes, process_id,
            cluster_detection_method=None if auto else "deactivate",
            initialization_timeout=max(timeout_s, INIT_TIMEOUT_S),
            heartbeat_timeout_seconds=timeout_s,
            shutdown_timeout_seconds=max(timeout_s, SHUTDOWN_TIMEOUT_S))
    except ValueError as e:
        if auto:
            raise ValueError(f"--distributed=auto: {e} (no cluster detected: give "
                             "--coordinator_address, --num_processes and "
                             "--process_id)") from e
        raise
    except Exception as e:  # noqa: BLE001 - the runtime raises its own types
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise RunError(f"could not join the multi-process run at {coordinator_address} "
                       f"within {max(timeout_s, INIT_TIMEOUT_S)} s ({type(e).__name__}: "
                       f"{first})") from e


@contextlib.contextmanager
def worker_errors() -> Iterator[None]:
    """In a worker: an unexpected error ends the process at once (no shutdown wait).

    A ``ValueError`` (a config mistake), ``RunError`` or ``SystemExit``
    propagates (every process reaches those together, and they meet again at
    shutdown). A failed collective (a peer vanished: jax raises it as a
    ``ValueError`` too) or any other error happened to this process alone: the
    others may be waiting for it in a collective, so after one line (a failed
    collective) or the traceback, the process exits without the shutdown
    barrier, and the others learn at once.
    """
    if os.environ.get(ENV_WORKER) != "1":
        yield
        return
    from optim_lab.training.errors import RunError  # noqa: PLC0415
    try:
        yield
    except (RunError, SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:  # noqa: BLE001
        # jax raises a failed collective as a ValueError (or its runtime error)
        collective = _COLLECTIVE_FAILURE.search(str(e))
        if isinstance(e, ValueError) and not collective:
            raise
        if collective and not ("debug" in FLAGS and FLAGS.debug):
            first = (str(e).strip().splitlines() or [""])[0][:300]
            sys.stderr.write(f"error: {_who_am_i()}: a collective with the other "
                             f"processes failed; one of them probably stopped "
                             f"({type(e).__name__}: {first})\n")
        else:
            import traceback  # noqa: PLC0415
            traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)


_COLLECTIVE_FAILURE = re.compile(
    r"\bGloo\b|collective.*fail|Connection (reset|closed|refused)", re.IGNORECASE)


def _who_am_i() -> str:
    try:
        import jax  # noqa: PLC0415
        return f"process {jax.process_index()}"
    except Exception:  # noqa: BLE001
        return "this process"


def _die_with_parent() -> None:
    """The worker gets SIGKILL when its supervisor dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the supervisor died before prctl
        os._exit(1)


# -- the supervisor -------------------------------------------------------------

# A C++ (glog) or absl log line: severity, date, time, thread, file:line.
_RUNTIME_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")
# gloo's connection notices (two threads may interleave them on one line)
_NOISE = re.compile(r"\[Gloo\] Rank|^\d+ is connected to \d+ peer ranks")


class StderrFilter:
    """What the supervisor shows of the worker's stderr.

    Lines pass through until the first runtime log line (any severity: the
    runtime warns before it aborts, e.g. "Failed to retrieve preemption
    notice"); from then on stderr is held back, except the worker's own
    one-line ``error:`` messages. At the end, a successful worker's held lines
    are shown; a failed worker's are replaced by one ``error:`` line (unless
    the worker said one), followed by a Python traceback if one was held.
    """

    def __init__(self, debug: bool = False):
        self.debug = debug
        self.held: list[str] = []
        self.said_error = False

    def feed(self, line: str) -> list[str]:
        """The lines to write now for one line of the worker's stderr."""
        if self.debug:
            return [line]
        if line.startswith("error:"):
            self.said_error = True
            return [line]
        if self.held or _RUNTIME_LOG.match(line):
            self.held.append(line)
            return []
        return [] if _NOISE.search(line) else [line]

    def finish(self, code: int, s: Settings) -> list[str]:
        """The lines to write when the worker exited with ``code``."""
        if code == 0 or self.debug:
            return list(self.held)
        out = [] if self.said_error else [f"error: {s.who()}: {_reason(self.held, code, s)}\n"]
        tb = next((i for i, line in enumerate(self.held)
                   if line.startswith("Traceback (most recent call last)")), None)
        if tb is not None:
            out += [line for line in self.held[tb:] if not _RUNTIME_LOG.match(line)]
        return out


def supervise(s: Settings, debug: bool = False) -> int:
    """Runs this command line as the worker child; returns the exit status.

    Forwards the worker's stdout (without the gloo library's connection
    notices) and its stderr through a :class:`StderrFilter`, so a runtime
    abort becomes one ``error:`` line saying what the runtime saw (a process
    without heartbeat, the coordinator lost). A worker killed by a signal is
    reported in one line too. Exit status: the worker's, 1 for an abort or a
    signal.
    """
    env = dict(os.environ, **{ENV_WORKER: "1"})
    argv = [sys.executable, *sys.orig_argv[1:]]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, errors="replace",
                             bufsize=1)

    def stop(signum, frame):
        del frame
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    errors = StderrFilter(debug)

    def pump_stdout():  # the gloo library prints its connections to stdout
        for line in child.stdout:
            if debug or not _NOISE.search(line):
                sys.stdout.write(line)
                sys.stdout.flush()

    def pump_stderr():
        for line in child.stderr:
            sys.stderr.writelines(errors.feed(line))
            sys.stderr.flush()

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_stdout, pump_stderr)]
    for r in readers:
        r.start()
    code = child.wait()
    for r in readers:
        r.join(timeout=5)
    sys.stderr.writelines(errors.finish(code, s))
    sys.stderr.flush()
    if code == 0:
        return 0
    return code if code > 0 else 1


def _reason(held: list[str], code: int, s: Settings) -> str:
    """One phrase for why the worker died, from the runtime's held-back log."""
    text = "".join(held)
    fatal = next((line for line in held if line.startswith("F")), "")
    m = re.search(r"tasks are unhealthy \(stopped sending heartbeats\):\s*\n([\d\s,]+)",
                  text)
    if m:
        ids = ", ".join(re.findall(r"\d+", m.group(1)))
        return (f"lost process {ids}: no heartbeat for {s.timeout_s} s (killed, "
                "crashed or hung); stopping")
    if "coordination service" in fatal or "leader task" in text:
        return ("lost the coordinator (process 0"
                + (f" at {s.coordinator_address}" if s.coordinator_address else "")
                + "): it stopped or cannot be reached; stopping")
    if fatal:
        status = fatal.split("absl::Status:", 1)[-1].strip() if "absl::Status:" in fatal \
            else fatal.split("] ", 1)[-1].strip()
        return f"the JAX distributed runtime stopped this process: {status[:300]}"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker was killed by {name}"
    return f"the worker exited with status {code}"
