"""The paper's full StableMax grokking run (Fig. 1b) — a manual benchmark, not CI.

    python -m benchmarks.grokking_stablemax_long --config=ref       # the reference's start
    python -m benchmarks.grokking_stablemax_long --seed=7           # the lab's seed-7 start
    python -m benchmarks.grokking_stablemax_long --report_only      # tables from the runs

Trains ``experiments/configs/grokking_stablemax_long.py`` (AdamW lr 1e-2,
β2 0.999, ε 1e-25, no weight decay, StableMax in float64, float64 Adam state,
addition mod 113, 40 %, full batch; ``--config=ref``: ``..._long_ref.py``, the
reference's seed-42 split and initial weights) for ``--steps`` steps in
``--workdir`` (default ``runs/stablemax_long/<ref|seed<N>>``), resuming if it
exists, then rewrites the reports from *all* run directories under
``--runs_root``:

- ``results/grokking/stablemax_long.md`` / ``.png``: per run, the step and the
  wall-clock at which test accuracy first reaches 50 / 90 / 95 / 99 %, beside
  the reference's figures and the float32-state run
  (``stablemax_long_f32state.md``);
- ``--state_dtype=32`` (float32 Adam state, which flush-to-zero destabilises)
  writes ``stablemax_long_f32state.*``; ``--loss_dtype=32`` (StableMax itself
  in float32, which collapses) ``stablemax_long_f32.*``.

Wall-clock: a thread of this process notes, whenever ``metrics.jsonl`` gains a
line, the step, the training seconds so far (summed over sessions; a resumed
session continues from the checkpoint's step), the process CPU seconds and
the 1-minute load average, in ``<workdir>/wallclock.jsonl``. On a shared
machine the load column says how contended the clock was.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import time

import jax
import numpy as np
from absl import flags
from absl import logging
from flax import nnx

from benchmarks import _report
from benchmarks import sweep as bench_sweep
from experiments import _cli
from experiments import grokking_summary as summary
from experiments.configs import grokking_stablemax_long_ref
from optim_lab import rundir
from optim_lab.models.functional import functionalize
from optim_lab.models.mlp import MLP
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import plotting
from optim_lab.training import train

FLAGS = flags.FLAGS
flags.DEFINE_enum("config", "long", ["long", "ref"],
                  "long: the lab's split (split_seed 0), init of --seed; ref: the reference's "
                  "seed-42 split and initial weights (tests/golden/grokking_start.npz).")
flags.DEFINE_integer("seed", None,
                     "Init seed of --config=long (the split is data.split_seed 0); default 42.")
flags.DEFINE_string("workdir", None, "Run directory (resumed); default "
                    "<runs_root>/<ref|seed<N>>[_f32state|_f32loss].")
flags.DEFINE_string("runs_root", "runs/stablemax_long",
                    "Where the reports look for run directories.")
flags.DEFINE_integer("steps", 80_000, "Total full-batch steps.")
flags.DEFINE_string("results", "results/grokking", "Output directory.")
flags.DEFINE_enum("loss_dtype", "64", ["32", "64"],
                  "StableMax precision: 64 as the reference; 32 shows its collapse.")
flags.DEFINE_enum("state_dtype", "64", ["32", "64"],
                  "Adam state precision: 64 avoids XLA:CPU's flush-to-zero; 32 shows it.")
flags.DEFINE_bool("gather", False, "The MLP's first layer as a row gather of its one-hot "
                  "inputs (model.one_hot_groups=2): a third fewer FLOPs, not the same "
                  "trajectory (run name suffix _gather).")
flags.DEFINE_bool("report_only", False, "Only rewrite the reports from the run directories.")
flags.DEFINE_bool("levers", False, "Instead of training: time the speed levers (interleaved "
                  "blocks of one log window each) -> stablemax_long_speed.md.")
flags.DEFINE_integer("lever_rounds", 5, "Interleaved timed blocks per lever.", lower_bound=1)


def train_one(config, workdir: pathlib.Path) -> None:
    with summary.Clock(workdir):
        train.train_and_evaluate(config, workdir)


FIRST_STEPS = 20


def first_losses(workdir: pathlib.Path) -> dict:
    """The reference-start config's first 20 logged losses vs the reference's.

    Trains (or reuses) ``workdir`` for 21 steps with a log every step; the
    lab's loss at step s is the loss before the s-th update, as the golden's
    ``losses[s - 1]``. (The record of an evaluation step holds the
    evaluation's train loss, after the update: the only evaluation here is
    at step 21.)
    """
    config = summary.build_config("ref", None, FIRST_STEPS + 1, 64, 64)
    config.log_every = config.steps_per_call = 1
    config.eval_every = config.checkpoint_every = FIRST_STEPS + 1
    train.train_and_evaluate(config, workdir, progress=False)
    with np.load(grokking_stablemax_long_ref.START_FILE) as arrays:
        want = arrays["losses"][:FIRST_STEPS]
        want64 = arrays["losses_train64"][:FIRST_STEPS]
    lab = np.array([r["train/loss"] for r in rundir.read_metrics(workdir)
                    if 0 < r["step"] <= FIRST_STEPS])
    rel = np.abs(lab - want) / np.abs(want)
    return {"steps": FIRST_STEPS, "workdir": str(workdir), "max_rel": float(rel.max()),
            "rel_step1": float(rel[0]), "max_rel_10": float(rel[:10].max()),
            "own_gap": float(np.max(np.abs(want - want64) / np.abs(want)))}


def write_reports(runs_root: pathlib.Path, results: pathlib.Path) -> str:
    """Rewrites stablemax_long.md / .png (and the per-variant pages) from the runs.

    Each run directory under ``runs_root`` is archived first
    (``summary.archive_run`` into ``results/stablemax_long_runs/``); the
    reports are written from the archive, which also holds the runs whose
    directories are gone. A run row of the previous ``stablemax_long.md``
    with neither (reported before the archive existed) is carried over,
    marked, rather than dropped.
    """
    archive = results / summary.ARCHIVE
    for wd in summary.find_runs(runs_root):
        summary.archive_run(wd, archive)
    runs = summary.find_runs(archive)
    for suffix, kind in (("_f32state", "f32state"), ("_f32loss", "f32")):
        variant = [r for r in runs if r.name.endswith(suffix)]
        if variant:
            wd = variant[0]
            name = f"stablemax_long_{kind}"
            records = rundir.read_metrics(wd)
            cfg = rundir.load_config(wd)
            plotting.plot_runs([wd], results / f"{name}.png", labels=[wd.name], log_x=True,
                               extra_keys=("params/global/norm", "probe/zero_loss"),
                               title="StableMax, addition mod 113, 40 % train, no weight decay")
            text = summary.report(records, records[-1]["step"], None,
                                  "32" if kind == "f32" else "64", png=f"{name}.png",
                                  state_dtype="32" if kind == "f32state" else "64",
                                  command=summary.command_for(wd.name, cfg))
            (results / f"{name}.md").write_text(text)
    main = [r for r in runs if not r.name.endswith(("_f32state", "_f32loss"))]
    if main:
        plotting.plot_runs(main, results / "stablemax_long.png",
                           labels=[summary.label(r.name) for r in main], log_x=False,
                           extra_keys=("params/global/norm",),
                           title="StableMax (float64), float64 Adam state, addition mod 113, 40 %")
    page = results / "stablemax_long.md"
    carried = summary.carried_rows(page.read_text() if page.exists() else "",
                                   {r.name for r in main})
    names = {r.name for r in main} | {r["name"] for r in carried}
    first = first_losses(runs_root / "_first20") if "ref" in names else None
    text = summary.milestone_report(main, results, first,
                                    summary.onset_analysis(main, carried), carried)
    page.write_text(text)
    return text


# --- speed levers ------------------------------------------------------------------

LEVERS = (  # (label, Adam state bits, steps per jitted call, first layer as a row gather)
    ("float32 Adam state, 1 step per call (the earlier long run)", 32, 1, False),
    ("float64 Adam state, 1 step per call", 64, 1, False),
    ("float64 state, 100 steps per call (lax.scan)", 64, 100, False),
    ("float64 state, 100 steps per call, one-hot row gather", 64, 100, True),
)


class _Lever:
    """One lever setting: the training loop's own jitted step (or scan) and eval."""

    def __init__(self, state_bits: int, per_call: int, gather: bool, steps: int):
        config = summary.build_config("long", None, 80_000, 64, state_bits)
        config.steps_per_call = per_call
        data, fn, loss_fn, tx = train.setup(config)
        if gather:  # the same init, first layer gathered (needs model.one_hot_groups)
            model = MLP(data.spec.num_features, tuple(config.model.hidden),
                        data.spec.num_classes, use_bias=config.model.use_bias,
                        one_hot_groups=2, rngs=nnx.Rngs(config.seed))
            fn = functionalize(model)._replace(params=fn.params)
        sampler = data.train_sampler()
        self.train_step, self.eval_step = train.compile_steps(
            config, fn, loss_fn, tx, sampler_fn=sampler.fn, pack_metrics=True)
        self.many = train.scan_steps(self.train_step) if per_call > 1 else None
        self.per_call, self.steps, self.source = per_call, steps, sampler.source
        self.eval_data = (data.train_x, data.train_y, data.test_x, data.test_y)
        self.state = train.initial_state(fn, tx, config.seed)
        self.flops = summary.step_flops(int(data.train_x.shape[0]),
                                [data.spec.num_features, *config.model.hidden,
                                 data.spec.num_classes], gather)

    def window(self) -> None:
        """One log window of ``steps`` steps, fetched and averaged as the loop does."""
        window, done = [], 0
        while done < self.steps:
            n = min(self.per_call, self.steps - done)
            if self.many is None:
                self.state, m = self.train_step(self.state, self.source)
            else:
                self.state, m = self.many(self.state, self.source, n)
            window.append(m)
            done += n
        metrics_lib.column_means(metrics_lib.fetch_columns(window))

    def evaluate(self) -> None:
        metrics_lib.to_host(self.eval_step(self.state.params, self.state.model_state,
                                           self.eval_data))


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def measure_levers(rounds: int, window: int = 100) -> list[dict]:
    """Median wall / CPU seconds per step and per eval of each lever, interleaved."""
    with jax.enable_x64(True):
        levers = [_Lever(bits, k, g, window) for _, bits, k, g in LEVERS]
        for lever in levers:  # compile and warm up
            lever.window()
            lever.evaluate()
        samples = [{"step": [], "eval": []} for _ in levers]
        loads = []
        for _ in range(rounds):
            for lever, s in zip(levers, samples):
                wall, cpu = _timed(lever.window)
                s["step"].append((wall / window, cpu / window))
                s["eval"].append(_timed(lever.evaluate))
            loads.append(os.getloadavg()[0])
    # The step's matmuls alone, each form at its best measured rate (CPU s).
    floor = bench_sweep.matmul_floor(rounds, members=1)
    out = []
    for (label, bits, k, g), lever, s in zip(LEVERS, levers, samples):
        out.append({"label": label, "flops": lever.flops,
                    "step_wall": statistics.median(w for w, _ in s["step"]),
                    "step_wall_min": min(w for w, _ in s["step"]),
                    "step_cpu": statistics.median(c for _, c in s["step"]),
                    "eval_wall": statistics.median(w for w, _ in s["eval"]),
                    "eval_cpu": statistics.median(c for _, c in s["eval"]),
                    "load": statistics.mean(loads), "matmul_floor_cpu": floor})
    return out


def levers_report(rows: list[dict], rounds: int) -> str:
    ref = rows[1]  # float64 state, 1 step per call: the long configs before the levers
    lines = [
        "# Long StableMax run: speed levers", "",
        f"Regenerate: `python -m benchmarks.grokking_stablemax_long --levers "
        f"--lever_rounds={rounds}` · {_report.machine()}", "",
        "The long run's step (MLP 226-200-200-113, full batch of 5 107, StableMax "
        "in float64, AdamW) timed inside the training loop's own jitted step, "
        f"{rounds} interleaved blocks of one 100-step log window per lever (fetch and "
        "window averages included). Eval: one full evaluation (train and test forward, "
        "full training gradient for the cosines, probes), median. The machine was "
        f"shared: mean 1-minute load average {rows[0]['load']:.1f} on {os.cpu_count()} "
        "cores during the measurement, so wall-clock is inflated and noisy; the process "
        "CPU seconds per step (both XLA threads) measure the work and are the column to "
        "compare, the fastest block (min wall) the least disturbed wall-clock.", "",
        "| lever | matmul GFLOP/step | CPU ms/step (median) | CPU vs float64 baseline "
        "| wall ms/step min / median | eval wall ms |",
        "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['flops'] / 1e9:.2f} | {1e3 * r['step_cpu']:.1f} | "
            f"{r['step_cpu'] / ref['step_cpu']:.2f}× | {1e3 * r['step_wall_min']:.0f} / "
            f"{1e3 * r['step_wall']:.0f} | {1e3 * r['eval_wall']:.0f} |")
    best = rows[-1]
    lines += ["", "Evaluation cost spread over the steps between evaluations (median eval "
              "wall / median step wall, last lever): "
              + ", ".join(f"every {e}: {100 * best['eval_wall'] / e / best['step_wall']:.1f} %"
                          for e in (100, 500, 2000))
              + ". The long configs evaluate every 500 steps.", ""]
    floor, cores = rows[0]["matmul_floor_cpu"], os.cpu_count()
    steps95 = 51_500  # the reference start's 95 % step (stablemax_long.md)
    best_cpu = min(r["step_cpu"] for r in rows)
    lines += [
        "**Floor.** The step's matmuls alone (the forward and both gradients of each "
        "layer over the full batch, each timed on its own at its best rate here, "
        "`benchmarks.sweep.matmul_floor`) take "
        f"{1e3 * floor:.1f} CPU ms per step, {100 * floor / best_cpu:.0f} % of the "
        f"fastest lever's {1e3 * best_cpu:.1f}. With all {cores} cores busy that is "
        f"≥ {1e3 * floor / cores:.1f} ms wall per step: the {steps95:,} steps the "
        f"reference start needs to 95 % test cannot take less than "
        f"{floor / cores * steps95 / 60:.1f} min on this machine (the fastest lever: "
        f"{best_cpu / cores * steps95 / 60:.1f} min at {cores} busy cores).", ""]
    return "\n".join(lines)


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    loss_dtype, state_dtype = int(FLAGS.loss_dtype), int(FLAGS.state_dtype)
    runs_root, results = pathlib.Path(FLAGS.runs_root), pathlib.Path(FLAGS.results)
    results.mkdir(parents=True, exist_ok=True)
    if FLAGS.levers:
        text = levers_report(measure_levers(FLAGS.lever_rounds), FLAGS.lever_rounds)
        (results / "stablemax_long_speed.md").write_text(text)
        print(text)
        return
    if not FLAGS.report_only:
        config = summary.build_config(FLAGS.config, FLAGS.seed, FLAGS.steps, loss_dtype,
                                      state_dtype, FLAGS.gather)
        workdir = pathlib.Path(FLAGS.workdir) if FLAGS.workdir else runs_root / summary.run_name(
            FLAGS.config, config.seed, loss_dtype, state_dtype, FLAGS.gather)
        train_one(config, workdir)
    print(write_reports(runs_root, results))


if __name__ == "__main__":
    _cli.run(main)
