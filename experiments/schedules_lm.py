r"""Refined vs standard learning-rate schedules on the byte-level LM.

    python -m experiments.schedules_lm      # scaled-down default, see below

The digits studies of ``experiments/schedules.py`` on the LLaMA-style LM of
``experiments/configs/lm.py`` (AdamW β = (0.9, 0.95), weight decay 0.1), with
the schedules constant, cosine, linear, WSD (20 % 1-sqrt cool-down) and
refined. Each schedule's base learning rate is tuned on a grid with seed 0
(final validation loss); a grid whose best value sits at an edge is extended
by one more value (×3 or ÷3) on that side, up to ``--max_extensions`` times,
so that the reported best is interior. The best learning rate is then run
with ``--seeds`` seeds. The refined schedule is ``schedule.name=refined`` with
``schedule.refine_from`` = the seed-0 linear run at its best learning rate and
``schedule.norm=l1`` (Adam: the raw gradient's L1 norm, w = G⁻¹); it is swept
over its own grid.

Default size (CPU budget; stated in the report): 2 blocks, d 64, 4 heads,
SwiGLU 172, context 64, batch 16, ``--steps`` steps, gradient norms logged
every 10 steps. Writes ``lm.md`` and ``lm.png`` to ``--out``; run directories
under ``--workdir`` are reused (a finished run is not recomputed).

Runs go through the sweep engine (:func:`experiments._common.run_sweep`): each
tuning round trains every schedule's pending learning rates, one vmapped
program per schedule (its runs differ only in learning rate), and the extra
seeds at the best learning rates likewise; the report states the sweeps'
wall-clock beside that of the earlier one-process-per-run version.

Convention: ``linear`` is :math:`\eta(1 - t/T)` (0 at step T); the refined
schedule reaches 0 at the last step :math:`T-1`.
"""

from __future__ import annotations

import math
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import flags

from experiments import _cli
from experiments import _common
from experiments.configs import lm
from optim_lab import rundir
from optim_lab.schedules import norm_log
from optim_lab.schedules import refined
from optim_lab.schedules import registry as schedule_registry

FLAGS = flags.FLAGS
BASELINES = {"constant": {}, "cosine": {}, "linear": {}, "wsd": {"cooldown": "1-sqrt"}}
SCHEDULES = (*BASELINES, "refined")
NORM = "l1"  # AdamW: L1 norm, power 1
GRID = (3e-3, 1e-2, 3e-2)
# Model / data sizes: overrides of experiments/configs/lm.py ("spec": none).
SIZES = {
    "spec": {},
    "small": dict(num_layers=2, d_model=64, num_heads=4, mlp_hidden=172, context=64,
                  batch_size=16, eval_windows=256),
    "tiny": dict(num_layers=1, d_model=32, num_heads=2, mlp_hidden=64, context=16,
                 batch_size=4, max_bytes=2 ** 16, eval_windows=8),  # smoke tests
}


def define_flags() -> None:
    """The binary's flags (defined on demand, so tests can import this module)."""
    flags.DEFINE_string("workdir", "/tmp/optim_lab_schedules_lm", "Root of the run directories.")
    flags.DEFINE_string("out", "results/schedules", "Where lm.md and lm.png go.")
    flags.DEFINE_integer("seeds", 3, "Seeds at the best learning rate.", lower_bound=1)
    flags.DEFINE_integer("steps", 300, "Training steps per run.", lower_bound=20)
    flags.DEFINE_list("lrs", [str(x) for x in GRID], "Initial learning-rate grid.")
    flags.DEFINE_integer("max_extensions", 2, "Grid extensions per schedule when the "
                         "best value is at an edge.", lower_bound=0)
    flags.DEFINE_list("schedules", list(SCHEDULES), "Schedules to run (the report "
                      "needs all; 'refined' also runs 'linear'). A subset lets two "
                      "processes share the study.")
    _cli.check_choices("schedules", SCHEDULES)
    flags.DEFINE_enum("size", "small", list(SIZES), "Model size: 'spec' is "
                      "experiments/configs/lm.py, 'small' the scaled-down default, "
                      "'tiny' for smoke tests.")
    _cli.check_positive_floats("lrs")


def config_for(schedule: str, lr: float, seed: int, steps: int, size: str = "small",
               **schedule_kwargs):
    c = lm.get_config()
    _common.resize_lm(c, SIZES[size])
    c.seed, c.steps = seed, steps
    c.log_every = 10 if steps >= 200 and steps % 10 == 0 else 1  # >= 20 norms
    c.eval_every = c.checkpoint_every = steps
    c.optimizer.learning_rate = lr
    c.schedule.name = schedule
    c.schedule.update(schedule_kwargs)
    return c


def run_dir(root: pathlib.Path, schedule: str, lr: float, seed: int) -> pathlib.Path:
    return pathlib.Path(root) / schedule / f"lr{lr:g}_seed{seed}"


def _label(schedule: str, kw: dict[str, Any]) -> str:
    if "refine_from" in kw:  # one directory per source run
        return f"{schedule}_from_{pathlib.Path(kw['refine_from']).name}"
    return schedule


def run_all(root: pathlib.Path, runs: Sequence[tuple[str, float, int, dict[str, Any]]],
            steps: int, size: str, timings: list[dict[str, Any]], label: str
            ) -> dict[tuple[str, float, int], dict[str, float]]:
    """Trains ``(schedule, lr, seed, schedule kwargs)`` runs through the sweep engine.

    Runs of one schedule differ only in seed and learning rate, so they run as
    one vmapped program (one per schedule); finished runs are reused. Appends
    the sweep's timing to ``timings``; returns each run's final record.
    """
    configs, keys = {}, {}
    for schedule, lr, seed, kw in runs:
        name = f"{_label(schedule, kw)}/lr{lr:g}_seed{seed}"
        configs[name] = config_for(schedule, lr, seed, steps, size, **kw)
        keys[name] = (schedule, lr, seed)
    timing = _common.run_sweep(configs, root, label=label)
    if timing:
        timings.append(timing)
    return {keys[name]: rundir.read_metrics(pathlib.Path(root) / name)[-1]
            for name in configs}


def val_loss(record: dict[str, float]) -> float:
    v = float(record.get("test/loss", math.inf))
    return v if math.isfinite(v) else math.inf


def tune(root, kwargs: dict[str, dict[str, Any]], lrs, steps, size, max_extensions,
         timings: list[dict[str, Any]], phase: str
         ) -> tuple[dict[str, dict[float, dict]], dict[str, float]]:
    """Seed-0 sweeps over ``lrs`` of every schedule in ``kwargs``, each extended at
    an edge (×3 or ÷3) until its best is interior; all schedules' runs of a
    round go through one sweep."""
    sweeps: dict[str, dict[float, dict]] = {name: {} for name in kwargs}
    todo = [(name, lr) for name in kwargs for lr in sorted(lrs)]
    for round_ in range(max_extensions + 1):
        done = run_all(root, [(n, lr, 0, kwargs[n]) for n, lr in todo], steps, size,
                       timings, f"{phase}_round{round_}")
        for (name, lr, _), record in done.items():
            sweeps[name][lr] = record
        todo = []
        for name, sweep in sweeps.items():
            grid = sorted(sweep)
            best = min(grid, key=lambda lr: val_loss(sweep[lr]))
            if len(grid) >= 2 and best in (grid[0], grid[-1]):
                todo.append((name, best * 3 if best == grid[-1] else best / 3))
        if not todo or round_ == max_extensions:
            break
    best = {name: min(sweep, key=lambda lr: val_loss(sweep[lr]))
            for name, sweep in sweeps.items()}
    return {n: dict(sorted(sw.items())) for n, sw in sweeps.items()}, best


def study(root: pathlib.Path, seeds: int, steps: int, lrs: Sequence[float],
          size: str = "small", max_extensions: int = 2,
          schedules: Sequence[str] = SCHEDULES) -> dict[str, Any] | None:
    """Sweeps, then seeds at the best lr; None unless ``schedules`` is all of them."""
    names = [n for n in SCHEDULES if n in schedules or (n == "linear" and "refined"
                                                         in schedules)]
    timings: list[dict[str, Any]] = []
    kwargs = {n: dict(BASELINES[n]) for n in names if n in BASELINES}
    sweeps, best = tune(root, kwargs, lrs, steps, size, max_extensions, timings,
                        "baselines")
    if "refined" in names:
        kwargs["refined"] = dict(
            refine_from=str(run_dir(root, "linear", best["linear"], 0)), norm=NORM)
        more, more_best = tune(root, {"refined": kwargs["refined"]}, lrs, steps, size,
                               max_extensions, timings, "refined")
        sweeps.update(more)
        best.update(more_best)
    seeded = run_all(root, [(n, best[n], s, kwargs[n]) for n in names
                            for s in range(1, seeds)], steps, size, timings, "seeds")
    finals = {n: [sweeps[n][best[n]]] + [seeded[(n, best[n], s)]
                                         for s in range(1, seeds)] for n in names}
    if names != list(SCHEDULES):
        return None
    norms = norm_log.load_grad_norms(kwargs["refined"]["refine_from"], norm=NORM)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shape = refined.refine_schedule(norms, norm=NORM, total_steps=steps)
        raw = refined.refine_schedule(norms, norm=NORM, total_steps=steps, fallback=False)
    fell_back = any(issubclass(w.category, refined.LatePeakWarning) for w in caught)
    return dict(sweeps=sweeps, best=best, finals=finals, norms=norms, shape=shape,
                raw_shape=raw, fell_back=fell_back, steps=steps, size=size,
                timings=timings)


def _ms(xs: Sequence[float], fmt: str = ".4f") -> str:
    return f"{np.mean(xs):{fmt}} ± {np.std(xs):{fmt}}"


def interior(res: dict[str, Any], name: str) -> bool:
    grid = sorted(res["sweeps"][name])
    return grid[0] < res["best"][name] < grid[-1]


def markdown(res: dict[str, Any], command: str) -> str:
    c = config_for("constant", 1e-3, 0, res["steps"], res["size"])
    size = (f"{c.model.num_layers} blocks, d {c.model.d_model}, {c.model.num_heads} "
            f"heads, SwiGLU {c.model.mlp_hidden}, context {c.model.context}, batch "
            f"{c.batch_size}, {res['steps']} steps")
    seeds = len(res["finals"]["linear"])
    lin = np.mean([val_loss(r) for r in res["finals"]["linear"]])
    lines = [
        "# Refined learning-rate schedules on the byte-level LM", "",
        f"Regenerate: `{command}` (runs cached under `--workdir`). LLaMA-style "
        f"byte-level LM (`experiments/configs/lm.py`: pre-RMSNorm, SwiGLU, RoPE) on "
        f"the Python standard library's sources, {size}; AdamW β = (0.9, 0.95), "
        f"weight decay 0.1, no warm-up. Validation loss on {c.data.eval_windows} fixed "
        f"windows of the held-out last 10 % of the corpus. `linear` is η(1 − t/T); "
        "`refined` is `optim_lab.refine_schedule` (τ = 0.1, trim 2, 10 k grid, "
        "L1 norms, w = G⁻¹) of the seed-0 linear run's logged gradient L1 norms "
        "(window means over 10 steps), reaching 0 at step T − 1; `wsd`: 20 % 1-sqrt "
        "cool-down. Defazio et al., arXiv 2310.07831.", "",
        "**Scaled down** to fit the compute budget of a 2-core machine shared with "
        "other agents' jobs: 2 blocks, d 64, context 64, batch 16 and "
        f"{res['steps']} steps instead of the config's 4 blocks, d 128, context 128, "
        "batch 32 and 2 000 steps; the learning-rate grid starts at 3 values and is "
        "extended only where the best value sits at an edge.",
        "", f"Best learning rate per schedule (seed 0), then {seeds} seeds at it: "
        "final validation loss (nats / byte and bits / byte) and next-byte accuracy, "
        "mean ± std over seeds; the last column compares validation losses with "
        "linear decay.", "",
        "| schedule | grid | best lr | best interior? | val loss | val bits/byte | "
        "val accuracy | vs linear |", "|---|---|---|---|---|---|---|---|"]
    for name in SCHEDULES:
        rs = res["finals"][name]
        loss = [val_loss(r) for r in rs]
        grid = ", ".join(f"{lr:g}" for lr in res["sweeps"][name])
        lines.append(
            f"| {name} | {grid} | {res['best'][name]:g} | "
            f"{'yes' if interior(res, name) else '**no**'} | {_ms(loss)} | "
            f"{_ms([x / math.log(2) for x in loss])} | "
            f"{_ms([r['test/accuracy'] for r in rs], '.3f')} | "
            f"{100 * (np.mean(loss) / lin - 1):+.2f} % |")
    lines += ["", "Seed-0 sweep (final validation loss):", "",
              "| schedule | " + " | ".join(f"lr {lr:g}" for lr in _all_lrs(res)) + " |",
              "|---|" + "---|" * len(_all_lrs(res))]
    for name in SCHEDULES:
        cells = [f"{val_loss(res['sweeps'][name][lr]):.4f}" if lr in res["sweeps"][name]
                 else "–" for lr in _all_lrs(res)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", reading(res), "", timing_markdown(res.get("timings", [])), "",
              "![lm](lm.png)", ""]
    return "\n".join(lines)


# The study before it ran through the sweep engine: 32 separate processes of
# 300 steps at the "small" size on this shared 2-core machine, at most two at a
# time (first config.json to last metrics line of the run directories,
# 2026-12-01 23:47-00:39 UTC).
SEQUENTIAL_BEFORE = dict(steps=300, runs=32, wall_s=3107, run_s=4924)


def timing_markdown(timings: Sequence[dict[str, Any]]) -> str:
    """The sweeps' wall-clock (summed over the study's sweeps) vs one process per run."""
    b = SEQUENTIAL_BEFORE
    before = (f"one process per run (the earlier version of this driver): {b['runs']} "
              f"runs × {b['steps']} steps in {b['wall_s'] / 60:.0f} min wall-clock, up "
              "to two processes at a time")
    if not timings:
        return (f"**Wall-clock** (a 2-core machine shared with other jobs): {before}; "
                "through the sweep engine: not measured (every run was reused).")
    return (f"**Wall-clock** (a 2-core machine shared with other jobs): {before}; "
            "through the sweep engine (one vmapped program per schedule and "
            f"round): {_common.sweeps_text(timings)}.")


def _all_lrs(res) -> list[float]:
    return sorted({lr for s in res["sweeps"].values() for lr in s})


def reading(res: dict[str, Any]) -> str:
    """What the numbers say, computed from them."""
    means = {n: np.mean([val_loss(r) for r in res["finals"][n]]) for n in SCHEDULES}
    order = sorted(SCHEDULES, key=means.get)
    sd = {n: np.std([val_loss(r) for r in res["finals"][n]]) for n in SCHEDULES}
    g = res["norms"]
    shape = res["raw_shape"]
    n = len(shape)
    peak = float(np.argmax(shape)) / n
    at = lambda f: float(shape[min(n - 1, int(round(f * (n - 1))))])  # noqa: E731
    losses = {n: [val_loss(r) for r in res["finals"][n]] for n in SCHEDULES}

    def vs_linear(n: str) -> str:
        diff = means[n] - means["linear"]
        if len(losses[n]) < 2:
            return f"{n} {diff:+.4f}"
        noise = 2 * math.sqrt(np.var(losses[n], ddof=1) / len(losses[n])
                              + np.var(losses["linear"], ddof=1) / len(losses["linear"]))
        return (f"{n} {diff:+.4f} ± {noise:.4f} "
                f"({'within' if abs(diff) <= noise else 'beyond'} noise)")

    text = [f"Reading: ranking by mean validation loss: {' < '.join(order)}. "
            "Differences from linear decay (± 2 standard errors of the difference "
            "over seeds): " + "; ".join(vs_linear(n) for n in SCHEDULES
                                         if n != "linear") + " nats. "
            "Seed std at the best lr: " + ", ".join(
                f"{n} {sd[n]:.4f} (lr {res['best'][n]:g})" for n in SCHEDULES)
            + "." + _spread_note(res, sd) + " The logged gradient L1 norm "
            f"of the linear run goes {g[0]:.3g} (first window) → {np.min(g):.3g} (min) "
            f"→ {g[-1]:.3g} (last window); the refined shape starts at {shape[0]:.3f}, "
            f"peaks at {100 * peak:.1f} % of T and is {at(0.5):.3f} at 50 % and "
            f"{at(0.9):.3f} at 90 % (linear: 0.5, 0.1)."]
    if res["fell_back"]:
        text.append("The refinement peaked past 50 % of T, so `refine_schedule` fell "
                    "back to linear decay: the `refined` rows are linear decay ending "
                    "at T − 1 (dashed in the plot: the unused shape).")
    if not all(interior(res, n) for n in SCHEDULES):
        text.append("**Not every best learning rate is interior** (see the table): "
                    "the grid extensions ran out.")
    return " ".join(text)


def _spread_note(res: dict[str, Any], sd: dict[str, float]) -> str:
    """Whether seed spread tracks the best lr (noisy high-lr runs), computed."""
    lrs = sorted({res["best"][n] for n in SCHEDULES})
    if len(lrs) < 2:
        return ""
    low = [sd[n] for n in SCHEDULES if res["best"][n] == lrs[0]]
    high = [sd[n] for n in SCHEDULES if res["best"][n] == lrs[-1]]
    if min(high) <= 3 * max(low):
        return ""
    return (f" Schedules tuned to lr {lrs[-1]:g} have {min(high) / max(low):.0f}–"
            f"{max(high) / min(low):.0f}× the seed spread of those tuned to "
            f"{lrs[0]:g}: some seeds do much worse at the higher peak lr, started "
            "without warm-up [inferred], so their means are uncertain.")


def plot(res: dict[str, Any], out: pathlib.Path) -> pathlib.Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = res["steps"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    g = res["norms"]
    axes[0].plot(np.linspace(0, 100, len(g)), g, color="tab:orange")
    axes[0].set(title="gradient L1 norm (seed-0 linear run)", xlabel="% of training",
                yscale="log")
    t = np.arange(steps)
    for name in ("constant", "linear", "cosine", "wsd"):
        sched = schedule_registry.build(name, 1.0, steps, **BASELINES[name])
        axes[1].plot(100 * t / steps, [float(sched(s)) if callable(sched) else sched
                                       for s in t], label=name, alpha=0.7)
    if res["fell_back"]:
        axes[1].plot(100 * t / steps, res["raw_shape"], "k--",
                     label="refined (degenerate, not used)")
    axes[1].plot(100 * t / steps, res["shape"], label="refined", color="k", lw=2)
    axes[1].set(title="schedule shape (peak 1)", xlabel="% of training")
    axes[1].legend(fontsize=8)
    for name in SCHEDULES:
        lrs = sorted(res["sweeps"][name])
        line, = axes[2].plot(lrs, [val_loss(res["sweeps"][name][lr]) / math.log(2)
                                   for lr in lrs], marker="o", label=name)
        fin = [val_loss(r) / math.log(2) for r in res["finals"][name]]
        axes[2].errorbar([res["best"][name]], [np.mean(fin)], yerr=[np.std(fin)],
                         color=line.get_color(), capsize=4, marker="s")
    axes[2].set(title="final validation bits/byte vs base lr\n(line: seed 0; square: "
                "mean ± std over seeds)", xscale="log", xlabel="base learning rate")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    path = out / "lm.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str]) -> None:
    del argv  # _cli.run rejects positional arguments
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    res = study(pathlib.Path(FLAGS.workdir), FLAGS.seeds, FLAGS.steps,
                [float(x) for x in FLAGS.lrs], FLAGS.size, FLAGS.max_extensions,
                FLAGS.schedules)
    if res is None:
        print("ran a subset of the schedules; run them all to write the report")
        return
    given = [f"--{name}={FLAGS[name].serialize().split('=', 1)[1]}"
             for name in ("seeds", "steps", "lrs", "max_extensions", "size")
             if FLAGS[name].present]
    command = " ".join(["python -m experiments.schedules_lm", *given])
    print(f"wrote {plot(res, out)}")
    path = out / "lm.md"
    path.write_text(markdown(res, command))
    print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    _cli.run(main)
