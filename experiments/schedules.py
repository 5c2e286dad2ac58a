r"""Linear decay vs refined schedules on digits: the closed loop at toy scale.

    python -m experiments.schedules            # all three problems

For each problem (softmax regression + SGD with L2 norms; a 2-layer MLP +
Adam with L1 norms, power 1) and each schedule (constant, cosine, linear,
WSD with a 20 % 1-sqrt cool-down, refined), the base learning rate is tuned on
a grid with seed 0 (final full-batch training loss), then the best one is run
with ``--seeds`` seeds. The refined schedule is derived from the seed-0 linear
run at its best learning rate (``schedule.refine_from``) and swept over the
same grid. A schedule whose best learning rate sits at an edge of its grid
gets one more value on that side (the 1-3-10 sequence continued), up to
``--max_extensions`` times (default 4), so the reported best is interior
where one exists. Writes ``results/schedules/summary.md`` and PNG plots; run
directories live under ``--workdir`` and are reused (a finished run is not
recomputed). ``--steps`` and ``--lrs`` shrink the study for smoke tests.

Runs go through the sweep engine (:func:`experiments._common.run_sweep`): a
tuning round trains every schedule's pending learning rates, one vmapped
program per schedule (runs that differ only in learning rate and seed), and
the seeds at the best learning rates likewise; the summary states the
sweeps' wall-clock.

Convention: ``linear`` is :math:`\eta(1 - t/T)` (0 at step T); the refined
schedule reaches 0 at the last step :math:`T-1`.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
import warnings
from collections.abc import Sequence

import numpy as np
from absl import flags

from experiments import _cli
from experiments import _common
from experiments.configs import schedules_mlp
from experiments.configs import schedules_softmax
from experiments.configs import schedules_softmax_l2
from optim_lab import rundir
from optim_lab.schedules import norm_log
from optim_lab.schedules import refined
from optim_lab.schedules import registry as schedule_registry
from optim_lab.schedules.refined import refine_schedule
from optim_lab.training.errors import Diverged

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/optim_lab_schedules", "Root of the run directories.")
flags.DEFINE_string("out", "results/schedules", "Where summary.md and plots go.")
flags.DEFINE_list("problems", ["softmax_sgd", "softmax_sgd_l2", "mlp_adam"],
                  "Problems to run.")
flags.DEFINE_integer("seeds", 3, "Seeds at the best learning rate.", lower_bound=1)
flags.DEFINE_integer("steps", 0, "Override the configs' step counts (0: keep; smoke tests).",
                     lower_bound=0)
flags.DEFINE_list("lrs", [], "Override the learning-rate grids (default: per problem).")
flags.DEFINE_integer("max_extensions", 4, "Grid extensions per schedule when its best "
                     "learning rate is at an edge.", lower_bound=0)


@dataclasses.dataclass(frozen=True)
class Problem:
    title: str
    get_config: object
    lrs: tuple[float, ...]
    norm: str  # which logged norm the refinement uses (l2: SGD, l1: Adam)


PROBLEMS = {
    "softmax_sgd": Problem("Softmax regression on digits, SGD (L2 norms, w = G^-2)",
                           schedules_softmax.get_config,
                           (0.3, 1.0, 3.0, 10.0, 30.0, 100.0), "l2"),
    "softmax_sgd_l2": Problem(
        "Softmax regression on digits, SGD + L2 regularisation 1e-3 (L2 norms, "
        "w = G^-2)", schedules_softmax_l2.get_config, (0.3, 1.0, 3.0, 10.0, 30.0),
        "l2"),
    "mlp_adam": Problem("2-layer MLP (64 hidden) on digits, Adam (L1 norms, w = G^-1)",
                        schedules_mlp.get_config, (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3),
                        "l1"),
}
_cli.check_choices("problems", PROBLEMS)
_cli.check_positive_floats("lrs")
BASELINES = {"constant": {}, "cosine": {}, "linear": {},
             "wsd": {"cooldown": "1-sqrt"}}
SCHEDULES = (*BASELINES, "refined")


def run_dir(root: pathlib.Path, problem: str, schedule: str, lr: float,
            seed: int, steps: int | None = None) -> pathlib.Path:
    tail = f"_steps{steps}" if steps else ""
    return root / problem / schedule / f"lr{lr:g}_seed{seed}{tail}"


def config_for(problem: str, schedule: str, lr: float, seed: int,
               steps: int | None = None, **schedule_kwargs):
    c = _common.override_steps(PROBLEMS[problem].get_config(), steps)
    c.seed = seed
    c.optimizer.learning_rate = lr
    c.schedule.name = schedule
    c.schedule.update(schedule_kwargs)
    return c


def _label(schedule: str, schedule_kwargs: dict) -> str:
    if "refine_from" in schedule_kwargs:  # one directory per source run
        src = pathlib.Path(schedule_kwargs["refine_from"])
        return f"{schedule}_from_{src.parent.name}_{src.name}"
    return schedule


def run_all(root: pathlib.Path, problem: str, runs, steps: int | None,
            timings: list, label: str) -> dict[tuple[str, float, int], dict[str, float]]:
    """Trains ``(schedule, lr, seed, schedule kwargs)`` runs through the sweep
    engine (finished runs reused); returns each run's last record.

    A run that diverged (``max_nonfinite_steps``) stops with its checkpoint
    while the others finish; its last record then has no evaluation, so it
    ranks last.
    """
    configs, keys = {}, {}
    for schedule, lr, seed, kw in runs:
        d = run_dir(root, problem, _label(schedule, kw), lr, seed, steps)
        configs[str(d.relative_to(root))] = config_for(problem, schedule, lr, seed,
                                                        steps, **kw)
        keys[str(d.relative_to(root))] = (schedule, lr, seed)
    try:
        timing = _common.run_sweep(configs, root, label=f"{problem}_{label}")
    except Diverged as e:
        print(f"note: {e}", file=sys.stderr)
        timing = {}
    if timing:
        timings.append(timing)
    return {keys[name]: rundir.read_metrics(root / name)[-1] for name in configs}


def _loss(record: dict[str, float]) -> float:
    if "test/loss" not in record:  # stopped before its final evaluation: diverged
        return math.inf
    return _common.finite(record.get("train/loss", math.inf))


def next_lr(lr: float, up: bool) -> float:
    """The 1-3-10 sequence continued from ``lr`` (a grid-edge extension).

    Examples:
        >>> next_lr(10.0, True), next_lr(30.0, True), next_lr(0.3, False), next_lr(1.0, False)
        (30.0, 100.0, 0.1, 0.3)
    """
    mantissa = lr / 10 ** math.floor(math.log10(lr) + 1e-9)
    factor = 3.0 if mantissa < 2 else 10 / 3
    if not up:
        factor = 10 / 3 if mantissa < 2 else 3.0
    return float(f"{(lr * factor if up else lr / factor):.3g}")


def tune(root, problem, kwargs: dict[str, dict], lrs, steps, max_extensions,
         timings, phase) -> tuple[dict[str, dict[float, dict]], dict[str, float]]:
    """Seed-0 sweeps of every schedule in ``kwargs`` over ``lrs``, each extended at
    an edge until its best is interior (at most ``max_extensions`` times)."""
    sweeps: dict[str, dict[float, dict]] = {name: {} for name in kwargs}
    todo = [(name, lr) for name in kwargs for lr in lrs]
    for round_ in range(max_extensions + 1):
        done = run_all(root, problem, [(n, lr, 0, kwargs[n]) for n, lr in todo],
                       steps, timings, f"{phase}_round{round_}")
        for (name, lr, _), record in done.items():
            sweeps[name][lr] = record
        todo = []
        for name, sweep in sweeps.items():
            grid = sorted(sweep)
            best = min(grid, key=lambda lr, sw=sweep: _loss(sw[lr]))
            if len(grid) >= 2 and best in (grid[0], grid[-1]):
                todo.append((name, next_lr(best, best == grid[-1])))
        if not todo or round_ == max_extensions:
            break
    best = {n: min(sw, key=lambda lr, sw=sw: _loss(sw[lr])) for n, sw in sweeps.items()}
    return {n: dict(sorted(sw.items())) for n, sw in sweeps.items()}, best


def refine_kwargs(root: pathlib.Path, problem: str, linear_lr: float,
                  steps: int | None = None) -> dict:
    src = run_dir(root, problem, "linear", linear_lr, 0, steps)
    return dict(refine_from=str(src), norm=PROBLEMS[problem].norm)


def study(root: pathlib.Path, problem: str, seeds: int,
          lrs: Sequence[float] | None = None, steps: int | None = None,
          max_extensions: int = 2) -> dict:
    """LR sweeps (seed 0), then every schedule at its best LR over ``seeds``.

    ``lrs`` and ``steps`` override the problem's grid and step count.
    """
    p = PROBLEMS[problem]
    lrs = tuple(sorted(lrs or p.lrs))
    timings: list = []
    kwargs = {name: dict(kw) for name, kw in BASELINES.items()}
    sweeps, best = tune(root, problem, kwargs, lrs, steps, max_extensions, timings,
                        "baselines")
    kwargs["refined"] = refine_kwargs(root, problem, best["linear"], steps)
    more, more_best = tune(root, problem, {"refined": kwargs["refined"]}, lrs, steps,
                           max_extensions, timings, "refined")
    sweeps.update(more)
    best.update(more_best)
    seeded = run_all(root, problem, [(n, best[n], s, kwargs[n]) for n in SCHEDULES
                                     for s in range(1, seeds)], steps, timings, "seeds")
    finals = {n: [sweeps[n][best[n]]] + [seeded[(n, best[n], s)]
                                         for s in range(1, seeds)] for n in SCHEDULES}
    src = run_dir(root, problem, "linear", best["linear"], 0, steps)
    norms = norm_log.load_grad_norms(src, norm=p.norm)
    total = steps or p.get_config().steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shape = refine_schedule(norms, norm=p.norm, total_steps=total)
        raw = refine_schedule(norms, norm=p.norm, total_steps=total, fallback=False)
    fell_back = any(issubclass(w.category, refined.LatePeakWarning) for w in caught)
    all_lrs = sorted({lr for sw in sweeps.values() for lr in sw})
    return dict(sweeps=sweeps, best=best, finals=finals, norms=norms, shape=shape,
                raw_shape=raw, fell_back=fell_back, steps=total, source=src, lrs=lrs,
                all_lrs=all_lrs, steps_overridden=bool(steps), timings=timings)


def interior(res: dict, name: str) -> bool:
    grid = sorted(res["sweeps"][name])
    return len(grid) < 2 or grid[0] < res["best"][name] < grid[-1]


def shape_facts(shape: np.ndarray) -> dict[str, float]:
    n = len(shape)
    at = lambda f: float(shape[min(n - 1, int(round(f * (n - 1))))])  # noqa: E731
    return {"start": float(shape[0]), "peak_at": float(np.argmax(shape)) / n,
            "at_50": at(0.5), "at_90": at(0.9)}


def problem_markdown(problem: str, res: dict) -> str:
    p = PROBLEMS[problem]
    lin = np.mean([_loss(r) for r in res["finals"]["linear"]])
    title = p.title + (f" (steps overridden: {res['steps']})"
                       if res["steps_overridden"] else "")
    lines = [f"## {title}", "",
             f"Best learning rate per schedule (grid {list(res['lrs'])}, extended at an "
             f"edge where the best value sat there, seed 0), then "
             f"{len(res['finals']['linear'])} seeds; final full-batch training loss, "
             "test loss and test accuracy (mean ± std over seeds); `vs linear` "
             "compares train losses.", "",
             "| schedule | best lr | train loss | test loss | test accuracy | vs linear "
             "| best interior? |",
             "|---|---|---|---|---|---|---|"]
    for name in SCHEDULES:
        losses = [_loss(r) for r in res["finals"][name]]
        accs = [r["test/accuracy"] for r in res["finals"][name]]
        test = [r["test/loss"] for r in res["finals"][name]]
        rel = 100 * (np.mean(losses) / lin - 1)
        cells = [_common.mean_std(xs) for xs in (losses, test, accs)]
        lines.append(f"| {name} | {res['best'][name]:g} | " + " | ".join(cells)
                     + f" | {rel:+.2f} % | "
                     + ("yes" if interior(res, name) else "**no**") + " |")
    lrs = res["all_lrs"]
    lines += ["", "Seed-0 learning-rate sweep (final training loss; inf: diverged, "
              "–: not run):", "",
              "| schedule | " + " | ".join(f"{lr:g}" for lr in lrs) + " |",
              "|---|" + "---|" * len(lrs)]
    for name in SCHEDULES:
        sweep = res["sweeps"][name]
        lines.append(f"| {name} | " + " | ".join(
            f"{_loss(sweep[lr]):.4f}" if lr in sweep else "–" for lr in lrs) + " |")
    f = shape_facts(res["raw_shape"])
    g = res["norms"]
    lines += ["", f"Refined schedule (from the seed-0 linear run at lr "
              f"{res['best']['linear']:g}, {p.norm} norms): starts at "
              f"{f['start']:.3f}, peaks at {100 * f['peak_at']:.1f} % of T, "
              f"{f['at_50']:.3f} at 50 %, {f['at_90']:.3f} at 90 % (linear: 0.5, "
              f"0.1). Logged gradient norm: {g[0]:.3g} in the first window, "
              f"{np.median(g[len(g) // 2:]):.3g} median over the second half."]
    if res["fell_back"]:
        lines += ["", "**The refinement degenerated** (peak past 50 % of T: the "
                  "logged gradient norms fall through most of training, so "
                  "w = G^-p grows late), so `refine_schedule` warned and fell back "
                  "to linear decay: the `refined` rows above are linear decay "
                  "ending at T − 1 (dashed curve in the plot: the unused "
                  "degenerate shape). This is the method's known limitation: "
                  "it needs gradient norms that stop falling."]
    lines.append("")
    return "\n".join(lines)


def plot_problem(problem: str, res: dict, out: pathlib.Path) -> pathlib.Path:
    p, steps = PROBLEMS[problem], res["steps"]
    fig, axes = _common.pyplot().subplots(1, 3, figsize=(13, 3.6))
    g = res["norms"]
    axes[0].plot(np.linspace(0, 100, len(g)), g, color="tab:orange")
    axes[0].set(title=f"gradient {p.norm} norm (linear run)", xlabel="% of training",
                yscale="log")
    t = np.arange(steps)
    for name in ("linear", "cosine", "wsd"):
        kw = dict(BASELINES[name])
        sched = schedule_registry.build(name, 1.0, steps, **kw)
        axes[1].plot(100 * t / steps, [float(sched(s)) for s in t], label=name,
                     alpha=0.7)
    if res["fell_back"]:
        axes[1].plot(100 * t / steps, res["raw_shape"], "k--",
                     label="refined (degenerate, not used)")
    axes[1].plot(100 * t / steps, res["shape"], label="refined", color="k", lw=2)
    axes[1].set(title="schedule shape (peak 1)", xlabel="% of training")
    axes[1].legend()
    for name in SCHEDULES:
        lrs = sorted(res["sweeps"][name])
        losses = [_loss(res["sweeps"][name][lr]) for lr in lrs]
        axes[2].plot(lrs, losses, marker="o", label=name)
    axes[2].set(title="final train loss vs base lr (seed 0)", xscale="log",
                yscale="log", xlabel="base learning rate")
    axes[2].legend()
    fig.suptitle(p.title)
    return _common.save_figure(fig, out / f"{problem}.png")


def reading(results: dict) -> str:
    """What the tables say, computed from them."""
    fell = [p for p, r in results.items() if r["fell_back"]]
    edge = [f"{p}/{n}" for p, r in results.items() for n in SCHEDULES
            if not interior(r, n)]

    def order(p: str) -> str:
        means = {n: np.mean([_loss(x) for x in results[p]["finals"][n]])
                 for n in SCHEDULES}
        return " < ".join(sorted(SCHEDULES, key=means.get))

    text = ["Reading: "
            + ("every best learning rate is interior to its grid. " if not edge else
               f"**best learning rate still at a grid edge**: {', '.join(edge)} "
               "(the extensions ran out). ")
            + f"The refinement fell back to linear decay (a late peak: the gradient "
            f"norms keep falling) in {len(fell)} of {len(results)} problems"
            + (f" ({', '.join(fell)})" if fell else "") + ". Ranking by mean final "
            "training loss: " + "; ".join(f"{p}: {order(p)}" for p in results) + "."]
    if edge:
        def at_edge(p: str, n: str) -> str:
            sweep, best = results[p]["sweeps"][n], results[p]["best"][n]
            test = min(sweep, key=lambda lr: _common.finite(sweep[lr].get("test/loss")))
            return (f"{p}/{n}: train {_loss(sweep[best]):.1e}, test "
                    f"{sweep[best]['test/loss']:.3f} at lr {best:g} vs "
                    f"{sweep[test]['test/loss']:.3f} at lr {test:g}")
        cases = [(p, n) for p, r in results.items() for n in SCHEDULES
                 if not interior(r, n)]
        zero = [f"{p}/{n}" for p, n in cases
                if _loss(results[p]["sweeps"][n][results[p]["best"][n]]) < 1e-4]
        text.append("At those edges the final training loss is still falling with the "
                    "learning rate (seed 0; test loss at that lr vs at the grid's "
                    "lowest test loss: " + "; ".join(at_edge(p, n) for p, n in cases)
                    + ")." + (f" Where it is ~0 ({', '.join(zero)}), the problem is "
                              "separable: a larger step drives the margins, and the "
                              "cross-entropy, toward float32 zero faster, so a "
                              "training-loss optimum need not exist at any finite lr "
                              "[inferred]." if zero else "")
                    + (" Where it is not (a loss floor from L2), a decaying schedule "
                       "still gains from a larger peak within 2 000 steps, and the "
                       "edge has not been reached [inferred]."
                       if len(zero) < len(cases) else ""))
    ties = [f"{p}/{n}" for p, r in results.items() for n in SCHEDULES
            if abs(_loss(r["sweeps"][n][r["best"][n]])) < 1e-6]
    if ties:
        text.append(f"**Ties at zero**: for {', '.join(ties)} the training loss reaches "
                    "float32 zero (|loss| < 1e-6; `-0.0000` in the sweep tables is a "
                    "cross-entropy that rounds just below 0) over a range of learning "
                    "rates, so the 'best' lr among them is decided by rounding, and "
                    "`vs linear` percentages of a ~0 loss mean nothing there; compare "
                    "those rows by test loss (the test-loss column).")
    text.append("On digits the unregularised problems interpolate (linearly "
                "separable data; an over-parameterised MLP), so the gradient norms "
                "fall throughout and the refinement has nothing to shape; the "
                "emergent warm-up expected on a noisy problem with a loss floor "
                "cannot appear here [inferred].")
    return " ".join(text)


def timing_markdown(results: dict) -> str:
    timings = [t for r in results.values() for t in r["timings"]]
    if not timings:
        return ("**Wall-clock**: not measured (every run was reused). Before the "
                "sweep engine (one process per run) it was not recorded.")
    return ("**Wall-clock** through the sweep engine (one vmapped program per "
            "schedule and tuning round), on a 2-core machine shared with other "
            f"jobs: {_common.sweeps_text(timings)}. Before (one process per run, "
            "4-value grids): not recorded; the earlier docstring said ~5 min on "
            "2 cores.")


def write_summary(results: dict, out: pathlib.Path) -> pathlib.Path:
    text = ["# Refined learning-rate schedules on digits", "",
            "Regenerate: `python -m experiments.schedules` (configs "
            "`experiments/configs/schedules_softmax.py`, `schedules_softmax_l2.py`, "
            "`schedules_mlp.py`). "
            "T = 2 000 steps, batch 32. `linear` is η(1 − t/T) (0 at step T); "
            "`refined` is the shape from `optim_lab.refine_schedule` of the "
            "linear run's logged gradient norms (τ = 0.1, trim 2, 10 k grid), "
            "reaching 0 at step T − 1, times a re-tuned base lr. `wsd`: 20 % "
            "1-sqrt cool-down. Defazio et al., arXiv 2310.07831. The logged "
            "norm is that of the raw loss gradient (before the coupled L2 term "
            "and before Adam).", "",
            reading(results), "", timing_markdown(results), ""]
    for problem, res in results.items():
        text.append(problem_markdown(problem, res))
        text.append(f"![{problem}]({problem}.png)\n")
    return _common.write_summary(out, "\n".join(text))


def main(argv):
    del argv  # _cli.run rejects positional arguments
    root, out = pathlib.Path(FLAGS.workdir), pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for problem in FLAGS.problems:
        results[problem] = study(root, problem, FLAGS.seeds,
                                 [float(x) for x in FLAGS.lrs], FLAGS.steps or None,
                                 FLAGS.max_extensions)
        print(f"wrote {plot_problem(problem, results[problem], out)}")
    print(f"wrote {write_summary(results, out)}")


if __name__ == "__main__":
    _cli.run(main)
