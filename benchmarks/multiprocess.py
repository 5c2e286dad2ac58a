"""Communication overhead of multi-process data parallelism on one machine.

    python -m benchmarks.multiprocess [--steps=30] [--rounds=3]

Times the jitted training step of the tiny LM (``experiments/configs/lm.py``
with 2 layers, d 32, 2 heads, SwiGLU 64, context 32, batch 8; replicated
state) on the same 2 CPU devices arranged two ways: **2 processes x 1 device**
(``jax.distributed`` + gloo over localhost TCP) and **1 process x 2 devices**
(XLA's in-process collectives). Both must start processes, so the two
arrangements alternate over ``--rounds`` rounds (each a fresh launch: compile,
3 warm-up steps, then ``--steps`` steps each timed to completion); the report
gives the median over rounds of each launch's median step time, and their
ratio. Writes the "multiprocess" section of ``results/benchmarks.md``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

from benchmarks import _report

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 30, "Timed steps per launch.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Alternating launches of each arrangement.",
                     lower_bound=1)
flags.DEFINE_string("worker", None, "Internal: COORDINATOR,NUM_PROCESSES,PROCESS_ID.")

ARRANGEMENTS = {"2 processes x 1 device": (2, 1), "1 process x 2 devices": (1, 2)}


def tiny_lm():
    from experiments.configs import lm  # noqa: PLC0415
    c = lm.get_config()
    c.model.num_layers, c.model.d_model, c.model.num_heads = 2, 32, 2
    c.model.mlp_hidden, c.model.context, c.data.context = 64, 32, 32
    c.batch_size = 8
    return c


def worker(spec: str, steps: int) -> None:
    """One process of a timed launch; process 0 prints ``{"step_s": median}``."""
    coordinator, n, pid = spec.split(",")
    if int(n) > 1:
        from experiments import _distributed  # noqa: PLC0415
        _distributed.initialize(coordinator, int(n), int(pid), timeout_s=120)
    import jax  # noqa: PLC0415

    from optim_lab.training import parallel  # noqa: PLC0415
    from optim_lab.training import train  # noqa: PLC0415
    config = tiny_lm()
    data, fn, loss_fn, tx = train.setup(config)
    mesh = train.build_mesh(config)
    state = train.initial_state(fn, tx, config.seed)
    shardings = train.state_shardings(config, state, mesh)
    state = parallel.place(state, shardings)
    sampler = data.train_sampler()
    step, _ = train.compile_steps(config, fn, loss_fn, tx, (), mesh, sampler.fn, shardings)
    source = parallel.replicate(sampler.source, mesh)
    for _ in range(3):
        state, metrics = step(state, source)
    jax.block_until_ready((state, metrics))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, source)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    if jax.process_index() == 0:
        print(json.dumps({"step_s": statistics.median(times),
                          "devices": jax.device_count(),
                          "processes": jax.process_count()}), flush=True)


def launch(processes: int, devices: int, steps: int) -> float:
    """Median step time (s) of one launch of ``processes`` x ``devices``."""
    from experiments import launch_local  # noqa: PLC0415
    port = launch_local.free_port()
    env = launch_local.process_env(devices)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "benchmarks.multiprocess", f"--steps={steps}",
         f"--worker=localhost:{port},{processes},{i}"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(processes)]
    outs = [p.communicate(timeout=1800) for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"worker failed ({p.returncode}): {err[-2000:]}")
    result = json.loads(outs[0][0].strip().splitlines()[-1])
    assert (result["processes"], result["devices"]) == (processes, processes * devices)
    return result["step_s"]


def main(argv):
    del argv
    if FLAGS.worker:
        return worker(FLAGS.worker, FLAGS.steps)
    samples = {name: [] for name in ARRANGEMENTS}
    for _ in range(FLAGS.rounds):
        for name, (processes, devices) in ARRANGEMENTS.items():
            samples[name].append(launch(processes, devices, FLAGS.steps))
    med = {k: statistics.median(v) for k, v in samples.items()}
    multi, single = med["2 processes x 1 device"], med["1 process x 2 devices"]
    rows = "\n".join(f"| {name} | {1e3 * med[name]:.2f} | {1 / med[name]:.1f} | "
                     + ", ".join(f"{1e3 * t:.2f}" for t in samples[name]) + " |"
                     for name in ARRANGEMENTS)
    command = f"python -m benchmarks.multiprocess --steps={FLAGS.steps} --rounds={FLAGS.rounds}"
    markdown = f"""
## Multi-process data parallelism on one machine (tiny LM)

Regenerate: `{command}` · {_report.machine()}

The jitted training step of the tiny LM (2 layers, d 32, 2 heads, SwiGLU 64, context 32,
batch 8, AdamW, replicated state) on 2 CPU devices: 2 processes with 1 device each
(`jax.distributed`, gloo collectives over localhost TCP) vs 1 process with 2 devices (XLA's
in-process collectives). Each launch compiles, warms up 3 steps and times {FLAGS.steps} steps
one by one; the arrangements alternate over {FLAGS.rounds} rounds (median of the launches'
medians).

| arrangement | ms / step | steps / s | per launch (ms) |
|---|---|---|---|
{rows}

**Ratio 2 processes / 1 process: {multi / single:.2f}×**. On a model this small the step is
dominated by its collectives: with 2 processes every all-reduce goes through gloo over localhost
TCP, and two processes with their own thread pools share the cores, where one process reduces
in memory. This is the overhead of the multi-process machinery on one box, not a prediction
for separate machines (there the network replaces localhost and each process has its own
cores). The machine is shared with other jobs, so launches vary (listed); the ratio is of
medians.
"""
    path = _report.write_section("multiprocess", markdown)
    print(markdown)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
