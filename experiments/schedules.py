r"""Linear decay vs refined schedules on digits: the closed loop at toy scale.

    python -m experiments.schedules            # both problems, ~5 min on 2 cores

For each problem (softmax regression + SGD with L2 norms; a 2-layer MLP +
Adam with L1 norms, power 1) and each schedule (constant, cosine, linear,
WSD with a 20 % 1-sqrt cool-down, refined), the base learning rate is tuned on
a grid with seed 0 (final full-batch training loss), then the best one is run
with ``--seeds`` seeds. The refined schedule is derived from the seed-0 linear
run at its best learning rate (``schedule.refine_from``) and swept over the
same grid. Writes ``results/schedules/summary.md`` and PNG plots; run
directories live under ``--workdir`` and are reused (a finished run is not
recomputed). ``--steps`` and ``--lrs`` shrink the study for smoke tests.

Convention: ``linear`` is :math:`\eta(1 - t/T)` (0 at step T); the refined
schedule reaches 0 at the last step :math:`T-1`.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np
from absl import flags

from experiments import _cli
from experiments import _common
from experiments.configs import schedules_mlp
from experiments.configs import schedules_softmax
from experiments.configs import schedules_softmax_l2
from optim_lab.schedules import norm_log
from optim_lab.schedules import refined
from optim_lab.schedules import registry as schedule_registry
from optim_lab.schedules.refined import refine_schedule
from optim_lab.training import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/optim_lab_schedules", "Root of the run directories.")
flags.DEFINE_string("out", "results/schedules", "Where summary.md and plots go.")
flags.DEFINE_list("problems", ["softmax_sgd", "softmax_sgd_l2", "mlp_adam"],
                  "Problems to run.")
flags.DEFINE_integer("seeds", 3, "Seeds at the best learning rate.", lower_bound=1)
flags.DEFINE_integer("steps", 0, "Override the configs' step counts (0: keep; smoke tests).",
                     lower_bound=0)
flags.DEFINE_list("lrs", [], "Override the learning-rate grids (default: per problem).")


@dataclasses.dataclass(frozen=True)
class Problem:
    title: str
    get_config: object
    lrs: tuple[float, ...]
    norm: str  # which logged norm the refinement uses (l2: SGD, l1: Adam)


PROBLEMS = {
    "softmax_sgd": Problem("Softmax regression on digits, SGD (L2 norms, w = G^-2)",
                           schedules_softmax.get_config, (0.3, 1.0, 3.0, 10.0), "l2"),
    "softmax_sgd_l2": Problem(
        "Softmax regression on digits, SGD + L2 regularisation 1e-3 (L2 norms, "
        "w = G^-2)", schedules_softmax_l2.get_config, (0.3, 1.0, 3.0, 10.0), "l2"),
    "mlp_adam": Problem("2-layer MLP (64 hidden) on digits, Adam (L1 norms, w = G^-1)",
                        schedules_mlp.get_config, (1e-3, 3e-3, 1e-2, 3e-2), "l1"),
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


def run(root: pathlib.Path, problem: str, schedule: str, lr: float, seed: int,
        steps: int | None = None, **schedule_kwargs) -> dict[str, float]:
    """One training run (reused if finished); returns its final record."""
    c = _common.override_steps(PROBLEMS[problem].get_config(), steps)
    c.seed = seed
    c.optimizer.learning_rate = lr
    c.schedule.name = schedule
    c.schedule.update(schedule_kwargs)
    label = schedule
    if "refine_from" in schedule_kwargs:  # one directory per source run
        src = pathlib.Path(schedule_kwargs["refine_from"])
        label = f"{schedule}_from_{src.parent.name}_{src.name}"
    return train.train_and_evaluate(c, run_dir(root, problem, label, lr, seed, steps),
                                    progress=False)


def _loss(record: dict[str, float]) -> float:
    return _common.finite(record.get("train/loss", math.inf))


def _sweep(root, problem, schedule, lrs, steps, **kw) -> dict[float, dict[str, float]]:
    return {lr: run(root, problem, schedule, lr, 0, steps, **kw) for lr in lrs}


def refine_kwargs(root: pathlib.Path, problem: str, linear_lr: float,
                  steps: int | None = None) -> dict:
    src = run_dir(root, problem, "linear", linear_lr, 0, steps)
    return dict(refine_from=str(src), norm=PROBLEMS[problem].norm)


def _schedule_kwargs(root, problem, name, best, steps) -> dict:
    if name in BASELINES:
        return BASELINES[name]
    return refine_kwargs(root, problem, best["linear"], steps)


def study(root: pathlib.Path, problem: str, seeds: int,
          lrs: Sequence[float] | None = None, steps: int | None = None) -> dict:
    """LR sweeps (seed 0), then every schedule at its best LR over ``seeds``.

    ``lrs`` and ``steps`` override the problem's grid and step count.
    """
    p = PROBLEMS[problem]
    lrs = tuple(lrs or p.lrs)
    sweeps, best = {}, {}
    for name in SCHEDULES:
        kw = _schedule_kwargs(root, problem, name, best, steps)
        sweeps[name] = _sweep(root, problem, name, lrs, steps, **kw)
        best[name] = min(lrs, key=lambda lr, s=sweeps[name]: _loss(s[lr]))
    finals = {}
    for name in SCHEDULES:
        kw = _schedule_kwargs(root, problem, name, best, steps)
        finals[name] = [run(root, problem, name, best[name], s, steps, **kw)
                        for s in range(seeds)]
    src = run_dir(root, problem, "linear", best["linear"], 0, steps)
    norms = norm_log.load_grad_norms(src, norm=p.norm)
    total = steps or p.get_config().steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shape = refine_schedule(norms, norm=p.norm, total_steps=total)
        raw = refine_schedule(norms, norm=p.norm, total_steps=total, fallback=False)
    fell_back = any(issubclass(w.category, refined.LatePeakWarning) for w in caught)
    return dict(sweeps=sweeps, best=best, finals=finals, norms=norms, shape=shape,
                raw_shape=raw, fell_back=fell_back, steps=total, source=src, lrs=lrs,
                steps_overridden=bool(steps))


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
             f"Best learning rate per schedule (grid {list(res['lrs'])}, seed 0), then "
             f"{len(res['finals']['linear'])} seeds; final full-batch training loss, "
             "test loss and test accuracy (mean ± std over seeds); the last "
             "column compares train losses.", "",
             "| schedule | best lr | train loss | test loss | test accuracy | vs linear |",
             "|---|---|---|---|---|---|"]
    for name in SCHEDULES:
        losses = [_loss(r) for r in res["finals"][name]]
        accs = [r["test/accuracy"] for r in res["finals"][name]]
        test = [r["test/loss"] for r in res["finals"][name]]
        rel = 100 * (np.mean(losses) / lin - 1)
        cells = [_common.mean_std(xs) for xs in (losses, test, accs)]
        lines.append(f"| {name} | {res['best'][name]:g} | " + " | ".join(cells)
                     + f" | {rel:+.2f} % |")
    lines += ["", "Seed-0 learning-rate sweep (final training loss):", "",
              "| schedule | " + " | ".join(f"{lr:g}" for lr in res["lrs"]) + " |",
              "|---|" + "---|" * len(res["lrs"])]
    for name in SCHEDULES:
        lines.append(f"| {name} | " + " | ".join(
            f"{_loss(res['sweeps'][name][lr]):.4f}" for lr in res["lrs"]) + " |")
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
                  "degenerate shape). This is the paper's known limitation "
                  "(spec §4)."]
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
        losses = [_loss(res["sweeps"][name][lr]) for lr in res["lrs"]]
        axes[2].plot(res["lrs"], losses, marker="o", label=name)
    axes[2].set(title="final train loss vs base lr (seed 0)", xscale="log",
                yscale="log", xlabel="base learning rate")
    axes[2].legend()
    fig.suptitle(p.title)
    return _common.save_figure(fig, out / f"{problem}.png")


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
            "Reading: on digits every problem here is in the *interpolating* "
            "regime (linearly separable data; an over-parameterised MLP), where "
            "the gradient norms keep falling and the best base lr sits at the "
            "top of the grid. The refinement then degenerates into a late peak "
            "and the guard falls back to linear decay, so `refined` = linear "
            "in all three tables; the emergent warm-up expected from the spec's "
            "noisy synthetic problem does not appear. Without regularisation the "
            "decays lose to constant in training loss (more lr mass drives the "
            "loss to 0 faster); with L2 regularisation (a positive loss floor) "
            "linear ≈ cosine, both better than constant, as in the spec.", ""]
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
                                 [float(x) for x in FLAGS.lrs], FLAGS.steps or None)
        print(f"wrote {plot_problem(problem, results[problem], out)}")
    print(f"wrote {write_summary(results, out)}")


if __name__ == "__main__":
    _cli.run(main)
