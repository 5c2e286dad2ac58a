"""Steps/s of the lab's training loop vs a bare hand-written jitted loop.

    python -m benchmarks.train_step [--steps=50] [--repeats=5]

Both train the grokking MLP (226-200-200-113, no bias, full batch of 5 107,
AdamW) in the same process, timed in interleaved blocks. The lab loop is the
real one: the jitted step of ``optim_lab.training`` (⊥-free AdamW through the
registry, NaN guard, per-step metrics kept on device) plus window averaging
every ``log_every`` steps. The bare loop is ``value_and_grad`` + ``optax.adamw``
+ ``apply_updates`` with nothing else. Writes the "train_step" section of
``results/benchmarks.md``.
"""

from __future__ import annotations

import jax
import optax
from absl import app
from absl import flags

from benchmarks import _report
from experiments.configs import grokking
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import train

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 50, "Steps per timed block.")
flags.DEFINE_integer("repeats", 5, "Interleaved timed blocks per loop.")


def lab_loop(config):
    data, fn, loss_fn, tx = train.setup(config)
    train_step, _ = train.compile_steps(config, fn, loss_fn, tx)
    state = [train.initial_state(fn, tx, config.seed)]
    xy = (data.train_x, data.train_y)

    def run(steps):
        window = []
        for s in range(1, steps + 1):
            state[0], m = train_step(state[0], xy)
            window.append(m)
            if s % config.log_every == 0:
                metrics_lib.column_means(metrics_lib.fetch_columns(window))
                window = []
        _report.block(state[0].params)
    return run


def bare_loop(config):
    data, fn, _, _ = train.setup(config)
    tx = optax.adamw(config.optimizer.learning_rate, b1=config.optimizer.b1,
                     b2=config.optimizer.b2, eps=config.optimizer.eps, weight_decay=0.0)
    kernels = [fn.params["layers"][i]["kernel"] for i in range(3)]

    def loss(ws, x, y):
        h = x
        for w in ws[:-1]:
            h = jax.nn.relu(h @ w)
        return optax.softmax_cross_entropy_with_integer_labels(h @ ws[-1], y).mean()

    @jax.jit
    def step(ws, opt_state, x, y):
        value, g = jax.value_and_grad(loss)(ws, x, y)
        u, opt_state = tx.update(g, opt_state, ws)
        return optax.apply_updates(ws, u), opt_state, value

    carry = [kernels, tx.init(kernels)]

    def run(steps):
        for _ in range(steps):
            carry[0], carry[1], _ = step(carry[0], carry[1], data.train_x, data.train_y)
        _report.block(carry[0])
    return run


def measure(steps: int, repeats: int) -> dict[str, float]:
    config = grokking.get_config()
    lab, bare = lab_loop(config), bare_loop(config)
    t = _report.time_interleaved({"lab": lambda: lab(steps), "bare": lambda: bare(steps)},
                                 repeats)
    return {k: v / steps for k, v in t.items()}


def main(argv):
    del argv
    per_step = measure(FLAGS.steps, FLAGS.repeats)
    ratio = per_step["lab"] / per_step["bare"]
    md = "\n".join([
        "## Training loop: lab vs bare jitted loop (grokking MLP, full batch)", "",
        f"Regenerate: `python -m benchmarks.train_step --steps={FLAGS.steps} "
        f"--repeats={FLAGS.repeats}` · {_report.machine()}", "",
        "| loop | ms / step | steps / s |", "|---|---|---|",
        f"| bare (value_and_grad + optax.adamw) | {per_step['bare'] * 1e3:.2f} | "
        f"{1 / per_step['bare']:.1f} |",
        f"| optim_lab (registry AdamW, NaN guard, metrics) | {per_step['lab'] * 1e3:.2f} | "
        f"{1 / per_step['lab']:.1f} |", "",
        f"**Ratio lab / bare: {ratio:.3f}×** (target ≤ 1.05×; median of "
        f"{FLAGS.repeats} interleaved blocks of {FLAGS.steps} steps).",
    ])
    print(md)
    _report.write_section("train_step", md)


if __name__ == "__main__":
    app.run(main)
