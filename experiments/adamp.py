r"""AdamP / SGDP experiments: the 2-D toy and a BN-CNN on digits.

    python -m experiments.adamp                      # both parts, a few minutes on 2 cores
    python -m experiments.adamp --parts=toy          # the toy only, seconds

**Toy** (project page of Heo et al.): minimise :math:`-\cos(w, w^*)` over
:math:`w \in \mathbb{R}^2` from :math:`\|w_0\| = 1` at 2.5 rad from
:math:`w^*`, lr 0.1, 200 steps. The loss is scale-invariant, so the gradient
is orthogonal to ``w``; momentum makes ``‖w‖`` grow (and the effective step
shrink), SGDP removes the radial part of the update. Runs: GD, momentum SGD
(0.9, 0.99) and SGDP with the same momenta, with the reference's momentum-buffer
quirk and with paper semantics (``dims=AdamPDims(project=True)``: the 1-d vector is
eligible; it is decided through the layer view).

**Digits**: ``experiments/configs/adamp_digits.py`` (BN-CNN 16-32-32 on 8x8
digits, batch 64, lr 1e-2) with AdamW and AdamP, weight decay 0 and 0.1,
``--seeds`` seeds, trained through the sweep engine
(``optim_lab.training.sweep``): the runs of one optimizer differ only in seed
and weight decay, so one compiled program serves them all; by default
(``--sweep_chunk=1``) they go through it in turn, since vmapping them costs
more CPU time on this conv net (``--sweep_chunk=0``: one vmapped program).
Each is an ordinary run directory
``--workdir/<optimizer>_wd<λ>_s<seed>_n<steps>/``. Reported: final
test / train accuracy, the mean norm of the three BN-preceded conv kernels and
their mean effective step ``‖Δw‖/‖w‖`` over training, and the wall-clock of
the training against the sequential driver's. Writes
``results/adamp/summary.md`` and PNG plots; run directories under
``--workdir`` are reused (a finished run is not recomputed).
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from experiments import _cli
from experiments import _common
from experiments.configs import adamp_digits
from optim_lab import rundir
from optim_lab.optimizers import adamp as adamp_lib
from optim_lab.training.minimise import minimise

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/optim_lab_adamp", "Root of the run directories.")
flags.DEFINE_string("out", "results/adamp", "Where summary.md and the plots go.")
flags.DEFINE_list("parts", ["toy", "digits"], "Which experiments to run.")
flags.DEFINE_integer("seeds", 3, "Seeds per digits cell.", lower_bound=1)
flags.DEFINE_integer("steps", 400, "Training steps per digits run.", lower_bound=1)
flags.DEFINE_integer("sweep_chunk", 1, "At most this many runs per vmapped program; 0: all "
                     "runs of an optimizer at once. Default 1: the runs of an optimizer go "
                     "in turn through one compiled program, since vmapped convolutions "
                     "(grouped convolutions on XLA:CPU) cost ~1.8x the CPU time per run.",
                     lower_bound=0)
_cli.check_choices("parts", ("toy", "digits"))

# name -> (momentum, SGDP?, project_momentum_buffer)
TOY_RUNS = {"GD": (0.0, False, True),
            "SGD m=0.9": (0.9, False, True), "SGDP m=0.9 (reference)": (0.9, True, True),
            "SGDP m=0.9 (paper)": (0.9, True, False),
            "SGD m=0.99": (0.99, False, True), "SGDP m=0.99 (reference)": (0.99, True, True),
            "SGDP m=0.99 (paper)": (0.99, True, False)}
DIGITS_OPTIMIZERS = ("adamw", "adamp")
DIGITS_WEIGHT_DECAYS = (0.0, 0.1)
KERNELS = ("convs/0/kernel", "convs/1/kernel", "convs/2/kernel")


# --- 2-D toy -------------------------------------------------------------------

def toy_loss(w: jax.Array, target: jax.Array) -> jax.Array:
    """``-cos(w, target)``: invariant to the scale of ``w``."""
    return -jnp.vdot(w, target) / (jnp.linalg.norm(w) * jnp.linalg.norm(target))


def toy_run(momentum: float, project: bool, project_momentum_buffer: bool = True, *,
            steps: int = 200, lr: float = 0.1, angle: float = 2.5) -> dict[str, np.ndarray]:
    """Norm, loss and angle to the target after each step of SGD or SGDP."""
    target = jnp.array([1.0, 0.0])
    w = jnp.array([math.cos(angle), math.sin(angle)])
    if project:
        tx = adamp_lib.sgdp(lr, momentum=momentum, dims=adamp_lib.AdamPDims(project=True),
                            project_momentum_buffer=project_momentum_buffer)
    else:
        tx = optax.sgd(lr, momentum=momentum or None)

    out = minimise(tx, lambda w: toy_loss(w, target), w, steps,
                   record=lambda w, _: (jnp.linalg.norm(w), toy_loss(w, target)))
    norms, losses = (np.asarray(r) for r in out.records)
    return {"norm": norms, "loss": losses,
            "angle": np.arccos(np.clip(-losses, -1.0, 1.0))}


def toy_experiment(out: pathlib.Path) -> list[str]:
    runs = {name: toy_run(*args) for name, args in TOY_RUNS.items()}
    lines = ["## 2-D scale-invariant toy", "",
             "Minimise −cos(w, w*) in ℝ² from ‖w₀‖ = 1 at 2.5 rad from w*, lr 0.1, "
             "200 steps (the toy of the AdamP project page: momentum SGD grows ‖w‖, SGDP "
             "does not). "
             "*reference* = `adamp==0.3.0` semantics (the default, "
             "`project_momentum_buffer=True`: the stored momentum buffer is the projected "
             "one); *paper* = Algorithm 1 (`project_momentum_buffer=False`). The JAX "
             "reference runs match `adamp.SGDP` on a (1, 2) torch tensor to 1e-6 "
             "(1.5556 / 2.6752); the paper-semantics runs give the 1.31 / 1.32 expected "
             "for SGDP in this setting.",
             "", "| optimizer | final ‖w‖ | max ‖w‖ | final angle (rad) | "
             "first step with angle < 0.1 |", "|---|---|---|---|---|"]
    for name, r in runs.items():
        hit = np.nonzero(r["angle"] < 0.1)[0]
        lines.append(f"| {name} | {r['norm'][-1]:.2f} | {r['norm'].max():.2f} | "
                     f"{r['angle'][-1]:.3f} | {hit[0] + 1 if hit.size else '—'} |")
    _toy_plot(runs, out / "toy.png")
    return lines + ["", "![toy](toy.png)", ""]


def _toy_plot(runs, path):
    fig, axes = _common.pyplot().subplots(1, 2, figsize=(10, 3.6))
    for name, r in runs.items():
        style = "--" if name.startswith("SGDP") else "-"
        axes[0].plot(np.arange(1, len(r["norm"]) + 1), r["norm"], style, label=name)
        axes[1].plot(np.arange(1, len(r["angle"]) + 1), r["angle"], style, label=name)
    axes[0].set(yscale="log", xlabel="step", ylabel="‖w‖", title="weight norm")
    axes[1].set(xlabel="step", ylabel="angle to w* (rad)", title="distance to optimum")
    axes[0].legend(fontsize=8)
    _common.save_figure(fig, path)


# --- digits BN-CNN ---------------------------------------------------------------

def digits_config(optimizer: str, weight_decay: float, seed: int, steps: int):
    c = adamp_digits.get_config()
    c.optimizer.name = optimizer
    c.optimizer.weight_decay = weight_decay
    c.seed = seed
    c.steps = steps
    c.checkpoint_every = steps
    return c


def _kernel_mean(records, template: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, mean over KERNELS)`` of the metric ``template.format(kernel)``."""
    series = [rundir.metric_series(records, template.format(k)) for k in KERNELS]
    return series[0][0], np.mean([values for _, values in series], axis=0)


def read_run(workdir: pathlib.Path) -> dict[str, np.ndarray | float]:
    """Series of the BN-preceded kernels' mean norm and effective step."""
    records = rundir.read_metrics(workdir)
    step, norm = _kernel_mean(records, "params/{}/norm")
    eff_step, eff = _kernel_mean(records, "effective_step/{}")
    last = records[-1]
    return {
        "step": step, "norm": norm, "eff_step": eff_step, "eff": eff,
        "test_acc": float(last["test/accuracy"]), "train_acc": float(last["train/accuracy"]),
        "train_loss": float(last["train/loss"]),
    }


def run_name(optimizer: str, weight_decay: float, seed: int, steps: int) -> str:
    """The run directory of one digits run, relative to ``--workdir``."""
    return f"{optimizer}_wd{weight_decay:g}_s{seed}_n{steps}"


def run_digits(root: pathlib.Path, seeds: int, steps: int, chunk: int = 0,
               optimizers: tuple[str, ...] = DIGITS_OPTIMIZERS):
    """Every (optimizer, weight decay, seed) run through one sweep; their series
    and the sweep's timing (see ``_common.run_sweep``)."""
    cells = [(opt, wd, seed) for opt in optimizers for wd in DIGITS_WEIGHT_DECAYS
             for seed in range(seeds)]
    configs = {run_name(*cell, steps): digits_config(*cell, steps) for cell in cells}
    timing = _common.run_sweep(configs, root, chunk=chunk, label=f"digits_n{steps}")
    return {cell: read_run(root / run_name(*cell, steps)) for cell in cells}, timing


def digits_experiment(results, seeds: int, steps: int, out: pathlib.Path,
                      timing: dict | None = None) -> list[str]:
    ms = _common.mean_std
    lines = ["## BN-CNN on digits: AdamW vs AdamP", "",
             f"`experiments/configs/adamp_digits.py`: BN-CNN 16-32-32 (bias-free 3x3 convs → "
             f"BatchNorm → ReLU; the three conv kernels are scale-invariant), 8x8 digits "
             f"(1 437 train / 360 test), batch 64, lr 1e-2 constant, {steps} steps, "
             f"{seeds} seeds (mean ± std). ‖w‖ = mean L2 norm of the three conv kernels "
             f"(init ≈ {_init_norm(results):.2f}; logged at each eval, every 100 steps); "
             "effective step = mean ‖Δw‖/‖w‖ of those kernels, averaged over the last "
             "logging window and over the whole run.", "",
             "| optimizer | weight decay | test acc | train acc | final ‖w‖ | ‖w‖ growth | "
             "eff. step (last) | eff. step (mean) |", "|---|---|---|---|---|---|---|---|"]
    for opt in DIGITS_OPTIMIZERS:
        for wd in DIGITS_WEIGHT_DECAYS:
            rs = [results[(opt, wd, s)] for s in range(seeds)]
            cells = [ms([r["test_acc"] for r in rs]), ms([r["train_acc"] for r in rs]),
                     ms([r["norm"][-1] for r in rs], ".2f"),
                     ms([r["norm"][-1] / r["norm"][0] for r in rs], ".2f") + "×",
                     ms([r["eff"][-1] for r in rs], ".2e"),
                     ms([np.mean(r["eff"]) for r in rs], ".2e")]
            lines.append(f"| {opt} | {wd:g} | " + " | ".join(cells) + " |")
    _digits_plot(results, seeds, out / "digits.png")
    lines += ["", "![digits](digits.png)", ""]
    if timing is not None:
        lines += wall_clock_markdown(timing, seeds, steps)
    return lines


# The driver before sweeps (one train_and_evaluate per run, one after another),
# timed once for the default study around the whole process.
SEQUENTIAL = ("491 s (CPU 166 s) for the 12 runs, the whole `python -m experiments.adamp "
              "--parts=digits` process of the sequential driver, fresh workdir, on "
              "2026-12-02 02:20 UTC, load average 5.3 at the start and 13.9 at the end "
              "(1-minute), on the code of commit 599a3a8; again on today's single-run code "
              "(identical metrics logs): 212 s (CPU 154 s), started 2026-12-02 "
              "03:36 UTC at load 9.2 → 10.8")
# How the sweep's table compares with the sequential driver's (default study).
SEQUENTIAL_COMPARISON = (
    "every run has the config, initialisation and batches of its sequential run, but the "
    "compiled program differs and may order float sums differently: after 2 steps the "
    "parameters of a one-member program are within 1e-6 (relative, normwise) of the "
    "single run's, those of a 2-member vmapped program within 1e-3 (Adam's "
    "per-coordinate normalisation amplifies the vmapped convolutions' summation order, "
    "which SGD keeps within ~5 float32 eps). Over 400 steps at lr 1e-2 this BN-CNN "
    "amplifies such differences further: against a fresh sequential run of the same "
    "configs the final training loss is within ±15 % for 9 of the 12 runs (one "
    "sequential run, AdamP λ 0 seed 0, was in a loss spike at step 400: test accuracy "
    "0.81). The table agrees with the sequential driver's committed before this change "
    "within seed noise: |Δ mean| ≤ 0.6 seed std in all 24 mean ± std cells (median "
    "0.09); the fresh sequential run differs from that committed table as much (≤ 1.0 "
    "std, median 0.18). All 6 runs of an optimizer vmapped at once (`--sweep_chunk=0`) "
    "took 359 s (CPU 178 s), started 2026-12-02 02:53 UTC at load 13.8 → 11.9: vmapped "
    "convolutions run as grouped convolutions, which cost XLA:CPU ~1.8× the CPU time "
    "per run (100 steps, 12 runs, load 12: 69 s vs 38 s of CPU), hence the default "
    "`--sweep_chunk=1`.")


def wall_clock_markdown(timing: dict, seeds: int, steps: int) -> list[str]:
    lines = ["### Wall-clock", "",
             f"* After (the sweep call): {_common.timing_text(timing)}."]
    if (seeds, steps) == (3, 400):
        lines += [f"* Before (sequential runs): {SEQUENTIAL}.",
                  f"* Sweep vs sequential: {SEQUENTIAL_COMPARISON}"]
    lines.append("* The machine (2 cores) is shared with other jobs; the load averages "
                 "say how busy it was.")
    return lines + [""]


def _init_norm(results) -> float:
    return float(np.mean([r["norm"][0] for r in results.values()]))


def _digits_plot(results, seeds, path):
    fig, axes = _common.pyplot().subplots(1, 2, figsize=(10, 3.6))
    for opt in DIGITS_OPTIMIZERS:
        for wd in DIGITS_WEIGHT_DECAYS:
            rs = [results[(opt, wd, s)] for s in range(seeds)]
            style = "-" if opt == "adamp" else "--"
            label = f"{opt}, wd {wd:g}"
            axes[0].plot(rs[0]["step"], np.mean([r["norm"] for r in rs], 0), style,
                         label=label)
            axes[1].plot(rs[0]["eff_step"], np.mean([r["eff"] for r in rs], 0), style,
                         label=label)
    axes[0].set(xlabel="step", ylabel="mean ‖w‖ (BN-preceded convs)", title="kernel norm")
    axes[1].set(xlabel="step", ylabel="‖Δw‖/‖w‖", yscale="log", title="effective step")
    axes[0].legend(fontsize=8)
    _common.save_figure(fig, path)


def main(argv):
    del argv  # _cli.run rejects positional arguments
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    text = ["# AdamP / SGDP experiments", "",
            "Regenerate: `python -m experiments.adamp` (toy only: `--parts=toy`). "
            f"Machine: {jax.default_backend()}, jax {jax.__version__}.", ""]
    if "toy" in FLAGS.parts:
        text += toy_experiment(out)
    if "digits" in FLAGS.parts:
        results, timing = run_digits(pathlib.Path(FLAGS.workdir), FLAGS.seeds, FLAGS.steps,
                                     FLAGS.sweep_chunk)
        text += digits_experiment(results, FLAGS.seeds, FLAGS.steps, out, timing)
    print(_common.write_summary(out, "\n".join(text) + "\n").read_text())


if __name__ == "__main__":
    _cli.run(main)
