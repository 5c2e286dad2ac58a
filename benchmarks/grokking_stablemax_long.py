"""The paper's full StableMax grokking run (Fig. 1b) — a manual benchmark, not CI.

    python -m benchmarks.grokking_stablemax_long [--workdir=runs/stablemax_long] [--steps=80000]

Trains ``experiments/configs/grokking_stablemax_long.py`` (AdamW lr 1e-2,
β2 0.999, ε 1e-25, no weight decay, StableMax, addition mod 113, 40 %, full
batch), resuming if the workdir exists, then writes
``results/grokking/stablemax_long.png`` and ``stablemax_long.md``: the steps at
which test accuracy first passes 10 / 50 / 90 / 95 %, the final accuracies,
the weight norm and throughput. Paper: test passes 50 % near 45 k steps and
reaches about 97 % near 75 k. ``--loss_dtype=32`` writes ``stablemax_long_f32.*``:
in float32 StableMax itself collapses once logits reach ~1e5.
"""

from __future__ import annotations

import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from experiments.grokking_summary import report
from experiments.configs import grokking_stablemax_long
from optim_lab import rundir
from optim_lab.training import plotting
from optim_lab.training import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/stablemax_long", "Run directory (resumed).")
flags.DEFINE_integer("steps", 80_000, "Total full-batch steps.")
flags.DEFINE_string("results", "results/grokking", "Output directory.")
flags.DEFINE_enum("loss_dtype", "64", ["32", "64"],
                  "StableMax precision: 64 as the reference; 32 shows its collapse.")

def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    config = grokking_stablemax_long.get_config()
    config.steps = FLAGS.steps
    config.loss_dtype = int(FLAGS.loss_dtype)
    config.enable_x64 = FLAGS.loss_dtype == "64"
    name = "stablemax_long" + ("" if FLAGS.loss_dtype == "64" else "_f32")
    t0 = time.perf_counter()
    train.train_and_evaluate(config, FLAGS.workdir)
    seconds = time.perf_counter() - t0
    out = pathlib.Path(FLAGS.results)
    plotting.plot_runs([FLAGS.workdir], out / f"{name}.png",
                       labels=[f"AdamW + StableMax (float{FLAGS.loss_dtype} loss)"],
                       log_x=True, extra_keys=("params/global/norm", "probe/zero_loss"),
                       title="StableMax, addition mod 113, 40 % train, no weight decay")
    text = report(rundir.read_metrics(FLAGS.workdir), FLAGS.steps, seconds,
                  FLAGS.loss_dtype).replace("stablemax_long.png", f"{name}.png")
    (out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
