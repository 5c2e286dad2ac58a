r"""Generalized Polyak steps with momentum (ALR-SMAG, ALR-HB) vs SGDM, Polyak-SGD, MoMo (issue 5).

    python -m experiments.polyak             # all three studies, a few minutes on 2 cores

1. **Ill-conditioned quadratic** f(x) = ½ Σ λ_i x_i², d = 50, λ log-spaced in
   [1e-3, 1] (κ = 10³, L = 1, f* = 0), x0 ~ N(0, I), deterministic, 500
   steps: fixed-step heavy ball (``optax.sgd(1/L, momentum=β)``) vs ALR-HB and
   ALR-MAG (``alr_smag`` with full-batch loss; uncapped: cap 1e6) vs
   ``optax.polyak_sgd`` (no momentum) vs ``optax.contrib.momo`` (cap 1e6),
   across β.
2. **Minibatch, f* = 0**: interpolating least squares (A ∈ R^{256×32},
   b = A x*) and separable logistic regression (labels sign(A w*)), batch 16,
   400 steps, 3 seeds; final full-batch loss vs lr / cap at β = 0.9, and vs β
   at a fixed lr / cap.
3. **Digits MLP** 64-100-100-10 (``experiments/configs/polyak_digits.py``),
   batch 128, 120 steps, lr / cap sweep, 2 seeds, with the lab's jitted
   training step (``optim_lab.training``), which logs τ as ``opt/tau``.

Writes ``results/polyak/summary.md`` and PNG plots there.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from absl import flags

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments import _cli  # noqa: E402
from experiments.configs import polyak_digits  # noqa: E402
from optim_lab.data import registry as data_registry  # noqa: E402
from optim_lab.models import functional  # noqa: E402
from optim_lab.models import registry as model_registry  # noqa: E402
from optim_lab.optimizers import polyak  # noqa: E402
from optim_lab.training import metrics as metrics_lib  # noqa: E402
from optim_lab.training import train  # noqa: E402
from optim_lab.training.minimise import minimise  # noqa: E402
from optim_lab.training.state import TrainState  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "results/polyak", "Where summary.md and the plots go.")
flags.DEFINE_list("studies", ["quadratic", "minibatch", "digits"], "Studies to run.")
flags.DEFINE_integer("seeds", 3, "Seeds per minibatch cell (digits: min(seeds, 2)).",
                     lower_bound=1)
flags.DEFINE_float("scale", 1.0, "Multiplies every step count (smoke tests: small).",
                   lower_bound=0.0)
_cli.check_choices("studies", ("quadratic", "minibatch", "digits"))

METHODS = ("sgdm", "polyak_sgd", "momo", "alr_smag", "alr_hb")
LABELS = {"sgdm": "SGDM / HB (fixed lr)", "polyak_sgd": "optax.polyak_sgd",
          "momo": "optax.contrib.momo", "alr_smag": "ALR-SMAG", "alr_hb": "ALR-HB (derived)"}
QUAD_BETAS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
MB_BETAS = (0.0, 0.5, 0.7, 0.9, 0.95, 0.99)
DIGITS_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
UNCAPPED = 1e6
BETA_CAP = 1.0  # minibatch β sweep: cap of the Polyak-type methods (adaptive regime)


OPTAX_METHODS = ("sgdm", "polyak_sgd", "momo")  # accept traced lr and β


def make_tx(method: str, lr, beta) -> optax.GradientTransformationExtraArgs:
    """``lr`` is the step for SGDM and the cap for every Polyak-type method.

    ``lr`` may be a traced scalar (the lab's transforms then get it as a
    constant "schedule"), so a whole lr grid runs under one ``vmap``; ``beta``
    may be traced only for the optax methods (the lab validates β eagerly).
    """
    if not isinstance(lr, (int, float)):
        traced_lr = lr
        cap = lambda count: traced_lr  # noqa: E731
    else:
        cap = lr
    if method == "sgdm":
        return optax.with_extra_args_support(optax.sgd(lr, momentum=beta))
    if method == "polyak_sgd":  # no momentum: beta ignored
        return optax.polyak_sgd(max_learning_rate=lr)
    if method == "momo":
        return optax.with_extra_args_support(optax.contrib.momo(lr, beta=beta))
    if method == "alr_smag":
        return polyak.alr_smag(cap, beta=beta)
    if method == "alr_hb":
        return polyak.alr_hb(cap, beta=beta)
    raise ValueError(f"unknown method {method!r}")


def _finite(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else math.inf


# --------------------------------------------------------------- quadratic


def quadratic(dim: int = 50, kappa: float = 1e3, seed: int = 0):
    lam = jnp.logspace(-math.log10(kappa), 0.0, dim)
    x0 = jnp.asarray(np.random.default_rng(seed).standard_normal(dim), jnp.float32)
    return (lambda x: 0.5 * jnp.sum(lam * x * x)), x0


def run_deterministic(tx, loss_fn, x0, steps: int) -> np.ndarray:
    """Loss before each step and after the last (``steps + 1`` values)."""
    @jax.jit
    def run(x0):
        out = minimise(tx, loss_fn, x0, steps)
        return jnp.append(out.values, loss_fn(out.params))
    return np.asarray(run(x0))


def quadratic_study(steps: int = 500) -> dict:
    loss_fn, x0 = quadratic()
    curves = {}
    for beta in QUAD_BETAS:
        for method in METHODS:
            lr = 1.0 if method == "sgdm" else UNCAPPED  # 1/L for heavy ball
            if method == "polyak_sgd" and beta != QUAD_BETAS[0]:
                curves[(method, beta)] = curves[(method, QUAD_BETAS[0])]
                continue
            curves[(method, beta)] = run_deterministic(make_tx(method, lr, beta),
                                                       loss_fn, x0, steps)
    # Polyak's optimally tuned heavy ball for this (μ, L), as a reference line.
    mu, big_l = 1e-3, 1.0
    a_opt = 4 / (math.sqrt(big_l) + math.sqrt(mu)) ** 2
    b_opt = ((math.sqrt(big_l / mu) - 1) / (math.sqrt(big_l / mu) + 1)) ** 2
    tuned = run_deterministic(make_tx("sgdm", a_opt, b_opt), loss_fn, x0, steps)
    return dict(curves=curves, f0=float(loss_fn(x0)), steps=steps,
                tuned=dict(lr=a_opt, beta=b_opt, curve=tuned))


# --------------------------------------------------------------- minibatch


@dataclasses.dataclass(frozen=True)
class Problem:
    title: str
    batch_loss: Callable  # (x, rows) -> loss
    full_loss: Callable  # x -> loss
    dim: int
    rows: int


def least_squares(n: int = 256, d: int = 32, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    b = a @ jnp.asarray(rng.standard_normal(d), jnp.float32)

    def batch_loss(x, rows):
        return 0.5 * jnp.mean((a[rows] @ x - b[rows]) ** 2)

    return Problem("Interpolating least squares (256×32)", batch_loss,
                   lambda x: batch_loss(x, jnp.arange(n)), d, n)


def logistic(n: int = 256, d: int = 32, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    y = jnp.sign(a @ jnp.asarray(rng.standard_normal(d), jnp.float32))

    def batch_loss(x, rows):
        return jnp.mean(jax.nn.softplus(-y[rows] * (a[rows] @ x)))

    return Problem("Separable logistic regression (256×32)", batch_loss,
                   lambda x: batch_loss(x, jnp.arange(n)), d, n)


def final_loss(method: str, problem: Problem, steps: int, batch: int, lr, beta, seed):
    """Full-batch loss after ``steps`` minibatch steps from 0 (traceable in lr, seed)."""
    tx = make_tx(method, lr, beta)
    idx = jax.random.randint(jax.random.key(seed), (steps, batch), 0, problem.rows)
    x0 = jnp.zeros(problem.dim, jnp.float32)
    return problem.full_loss(minimise(tx, problem.batch_loss, x0, batches=idx).params)


def sweep(method: str, problem: Problem, steps: int, batch: int, seeds: int,
          lrs: Sequence[float], betas: Sequence[float]) -> dict:
    """``{(lr, β): [final loss per seed]}`` over the (lr, β) pairs given by zip.

    One compile for the optax methods (lr, β and seed traced); for the lab's
    transforms one compile per distinct β (validated eagerly, so concrete).
    """
    lrs, betas = list(lrs), list(betas)
    seed_ids = jnp.arange(seeds)
    if method in OPTAX_METHODS:
        groups = {None: list(range(len(lrs)))}
    else:
        groups = {}
        for i, b in enumerate(betas):
            groups.setdefault(b, []).append(i)
    out = {}
    for beta, ids in groups.items():
        def one(lr, b, seed, beta=beta):
            return final_loss(method, problem, steps, batch, lr,
                              b if beta is None else beta, seed)
        run = jax.jit(jax.vmap(jax.vmap(one, (None, None, 0)), (0, 0, None)))
        vals = np.asarray(run(jnp.asarray([lrs[i] for i in ids], jnp.float32),
                              jnp.asarray([betas[i] for i in ids], jnp.float32),
                              seed_ids))
        for i, row in zip(ids, vals):
            out[(lrs[i], betas[i])] = [_finite(v) for v in row]
    return out


def minibatch_study(steps: int = 400, batch: int = 16, seeds: int = 3) -> dict:
    """lr sweep at β = 0.9, then a β sweep (SGDM at its best lr, the rest at cap 1).

    A cap that binds turns every Polyak-type method into SGD(M) with lr = cap,
    so the β sweep uses a cap (1) at which the adaptive step is active.
    """
    out = {}
    for key, problem in (("ls", least_squares()), ("logreg", logistic())):
        lr_sweep, beta_sweep = {}, {}
        for m in METHODS:
            res = sweep(m, problem, steps, batch, seeds, GRID, [0.9] * len(GRID))
            lr_sweep.update({(m, lr): res[(lr, 0.9)] for lr in GRID})
        best = {m: min(GRID, key=lambda lr: np.mean(lr_sweep[(m, lr)])) for m in METHODS}
        beta_lr = {m: best[m] if m == "sgdm" else BETA_CAP for m in METHODS}
        for m in METHODS:
            res = sweep(m, problem, steps, batch, seeds, [beta_lr[m]] * len(MB_BETAS),
                        MB_BETAS)
            beta_sweep.update({(m, b): res[(beta_lr[m], b)] for b in MB_BETAS})
        out[key] = dict(title=problem.title, lr_sweep=lr_sweep, best=best,
                        beta_lr=beta_lr, beta_sweep=beta_sweep,
                        f0=float(problem.full_loss(jnp.zeros(problem.dim))))
    return dict(problems=out, steps=steps, batch=batch, seeds=seeds)


# --------------------------------------------------------------- digits


def digits_runs(method: str, lrs: Sequence[float], seed: int,
                steps: int | None = None) -> dict[float, dict]:
    """Digits runs for every lr through the lab's jitted train / eval steps.

    The lr is injected (``optax.inject_hyperparams``), so the train step is
    compiled once per (method, seed) and reused for every lr; τ comes from the
    step's ``opt/tau`` metric (``config.log_state_fields``).
    """
    c = polyak_digits.get_config()
    c.seed = seed
    if steps:
        c.steps = steps
    data_kw, model_kw = c.data.to_dict(), c.model.to_dict()
    data = data_registry.build(data_kw.pop("name"), **data_kw)
    fn = functional.functionalize(
        model_registry.build(model_kw.pop("name"), data.spec, seed, **model_kw))
    make = optax.inject_hyperparams(lambda learning_rate: make_tx(method, learning_rate, 0.9))
    train_step, eval_step = train.compile_steps(c, fn, train.build_loss(c), make(lrs[0]))
    xy = (jnp.asarray(data.train_x), jnp.asarray(data.train_y))
    out = {}
    for lr in lrs:
        params = jax.tree.map(jnp.array, fn.params)  # fresh copies (the step donates)
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                           model_state=jax.tree.map(jnp.array, fn.model_state),
                           opt_state=make(lr).init(params), rng=jax.random.PRNGKey(seed))
        taus = []
        for _ in range(c.steps):
            state, m = train_step(state, xy)
            taus.append(m.get("opt/tau", jnp.full((), jnp.nan)))
        ev = metrics_lib.to_host(eval_step(state.params, state.model_state,
                                           (*xy, data.test_x, data.test_y)))
        out[lr] = dict(loss=_finite(ev["train/loss"]), acc=float(ev["test/accuracy"]),
                       taus=np.asarray(jnp.stack(taus)))
    return out


def digits_study(seeds: int = 2, steps: int | None = None) -> dict:
    cells = {(m, lr): [] for m in METHODS for lr in DIGITS_GRID}
    for m in METHODS:
        for s in range(seeds):
            for lr, rec in digits_runs(m, DIGITS_GRID, s, steps).items():
                cells[(m, lr)].append(rec)
    return dict(cells=cells, seeds=seeds,
                steps=steps or polyak_digits.get_config().steps)


# --------------------------------------------------------------- report


def _fmt(x: float) -> str:
    return "div." if not math.isfinite(x) else f"{x:.2e}"


def _ms(xs: Sequence[float]) -> str:
    xs = np.asarray(xs, float)
    if not np.isfinite(xs).all():
        return f"div. ({int((~np.isfinite(xs)).sum())}/{len(xs)})"
    return f"{xs.mean():.2e} ± {xs.std():.1e}"


def _plot_value(x: float, ceiling: float) -> float:
    return min(x, ceiling) if math.isfinite(x) else ceiling


def quadratic_markdown(q: dict) -> str:
    lines = ["## 1. Ill-conditioned quadratic (d = 50, κ = 10³, f* = 0, deterministic)", "",
             f"f(x0) = {q['f0']:.3g}; final f after {q['steps']} steps. Heavy ball uses the "
             "fixed step 1/L = 1 (the largest step every β ∈ [0, 1) tolerates is "
             "2(1+β)/L, so 1/L is a safe, untuned default); Polyak-type methods are "
             f"uncapped (cap {UNCAPPED:g}) with f* = 0. polyak_sgd has no momentum "
             "(same number in every row). Polyak's optimally tuned heavy ball "
             f"(α = {q['tuned']['lr']:.3f}, β = {q['tuned']['beta']:.3f}) reaches "
             f"{_fmt(q['tuned']['curve'][-1])}.", "",
             "| β | " + " | ".join(LABELS[m] for m in METHODS) + " |",
             "|---|" + "---|" * len(METHODS)]
    for beta in QUAD_BETAS:
        vals = [q["curves"][(m, beta)][-1] for m in METHODS]
        best = min(vals)
        cells = [f"**{_fmt(v)}**" if v == best else _fmt(v) for v in vals]
        lines.append(f"| {beta:g} | " + " | ".join(cells) + " |")
    lines += ["", "Non-monotone steps (out of the last half, steps whose loss rose above "
              "the previous step's). Polyak-type steps are non-monotone by design (they "
              "shrink the distance to x*, not f), so this counts the heavy-ball "
              "oscillation only for the fixed-step column; the curves in the plot show "
              "its shape:", "",
              "| β | " + " | ".join(LABELS[m] for m in METHODS) + " |",
              "|---|" + "---|" * len(METHODS)]
    half = q["steps"] // 2
    for beta in (0.5, 0.9, 0.99):
        ups = [int((np.diff(q["curves"][(m, beta)][half:]) > 0).sum()) for m in METHODS]
        lines.append(f"| {beta:g} | " + " | ".join(map(str, ups)) + " |")
    return "\n".join(lines + [""])


def plot_quadratic(q: dict, path: pathlib.Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    ceiling = 10 * q["f0"]
    for m in METHODS:
        axes[0].semilogy(QUAD_BETAS, [_plot_value(q["curves"][(m, b)][-1], ceiling)
                                      for b in QUAD_BETAS], "o-", label=LABELS[m])
    axes[0].axhline(q["tuned"]["curve"][-1], color="gray", ls=":",
                    label="HB, Polyak-tuned (α, β)")
    axes[0].set(xlabel="β", ylabel=f"f after {q['steps']} steps",
                title="β sensitivity (quadratic, κ=1e3)")
    axes[0].legend(fontsize=7)
    for ax, beta in zip(axes[1:], (0.5, 0.9, 0.99)):
        for m in METHODS:
            ax.semilogy(np.minimum(q["curves"][(m, beta)], ceiling), label=LABELS[m], lw=1)
        ax.set(xlabel="step", ylabel="f", title=f"β = {beta}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def minibatch_markdown(mb: dict) -> str:
    lines = [f"## 2. Minibatch problems with f* = 0 (batch {mb['batch']}, {mb['steps']} "
             f"steps, {mb['seeds']} seeds, x0 = 0)", "",
             "Final full-batch loss, mean ± std over seeds (`div.` = non-finite in "
             "k/n seeds). lr is the step for SGDM and the cap for the Polyak-type "
             "methods; β = 0.9 (polyak_sgd: no momentum). **Bold**: best lr per method.", ""]
    for p in mb["problems"].values():
        lines += [f"### {p['title']} (f(x0) = {p['f0']:.3g})", "",
                  "| lr / cap | " + " | ".join(LABELS[m] for m in METHODS) + " |",
                  "|---|" + "---|" * len(METHODS)]
        for lr in GRID:
            cells = []
            for m in METHODS:
                s = _ms(p["lr_sweep"][(m, lr)])
                cells.append(f"**{s}**" if lr == p["best"][m] else s)
            lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
        lines += ["", "β sensitivity: SGDM at its best lr, the Polyak-type methods at "
                  f"cap {BETA_CAP:g} (a cap that binds makes them SGD(M) with lr = cap, "
                  "which would hide the adaptive step); lr / cap used: "
                  + ", ".join(f"{m} {p['beta_lr'][m]:g}" for m in METHODS) + ".", "",
                  "| β | " + " | ".join(LABELS[m] for m in METHODS) + " |",
                  "|---|" + "---|" * len(METHODS)]
        for b in MB_BETAS:
            lines.append(f"| {b:g} | " + " | ".join(
                _ms(p["beta_sweep"][(m, b)]) for m in METHODS) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_minibatch(mb: dict, path: pathlib.Path) -> None:
    probs = list(mb["problems"].values())
    fig, axes = plt.subplots(2, len(probs), figsize=(6 * len(probs), 8.4))
    for j, p in enumerate(probs):
        ceiling = 10 * p["f0"]
        for m in METHODS:
            axes[0, j].loglog(GRID, [_plot_value(np.mean(p["lr_sweep"][(m, lr)]), ceiling)
                                     for lr in GRID], "o-", label=LABELS[m])
            axes[1, j].semilogy(MB_BETAS, [_plot_value(np.mean(p["beta_sweep"][(m, b)]),
                                                       ceiling) for b in MB_BETAS],
                                "o-", label=f"{LABELS[m]} (lr {p['beta_lr'][m]:g})")
        axes[0, j].set(xlabel="lr (SGDM) / cap (Polyak-type)", ylabel="final loss",
                       title=f"{p['title']}: β = 0.9")
        axes[1, j].set(xlabel="β", ylabel="final loss", title=f"{p['title']}: β sweep")
        axes[0, j].legend(fontsize=7)
        axes[1, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def digits_markdown(dg: dict) -> str:
    lines = [f"## 3. Digits MLP 64-100-100-10 (batch 128, {dg['steps']} steps ≈ "
             f"{dg['steps'] * 128 / 1437:.1f} epochs, β = 0.9, {dg['seeds']} seeds, "
             "no schedule, no weight decay)", "",
             "Final full-batch train loss / test accuracy (mean over seeds); "
             "**bold**: best test accuracy per method.", "",
             "| lr / cap | " + " | ".join(LABELS[m] for m in METHODS) + " |",
             "|---|" + "---|" * len(METHODS)]
    best = {m: max(DIGITS_GRID, key=lambda lr: np.mean([r["acc"] for r in
                                                        dg["cells"][(m, lr)]]))
            for m in METHODS}
    for lr in DIGITS_GRID:
        cells = []
        for m in METHODS:
            runs = dg["cells"][(m, lr)]
            loss = np.mean([r["loss"] for r in runs])
            s = f"{_fmt(loss)} / {np.mean([r['acc'] for r in runs]):.3f}"
            cells.append(f"**{s}**" if lr == best[m] else s)
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    smag = dg["cells"][("alr_smag", best["alr_smag"])][0]
    capped = float(np.mean(np.isclose(smag["taus"], best["alr_smag"])))
    lines += ["", f"ALR-SMAG at its best cap {best['alr_smag']:g} (seed 0): τ (logged as "
              f"`opt/tau` by the training step) is at the cap in {capped:.0%} of the "
              f"steps; median τ = {np.median(smag['taus']):.3g}, last τ = "
              f"{smag['taus'][-1]:.3g}.", ""]
    return "\n".join(lines)


def plot_digits(dg: dict, path: pathlib.Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2))
    for m in METHODS:
        runs = [dg["cells"][(m, lr)] for lr in DIGITS_GRID]
        axes[0].loglog(DIGITS_GRID, [_plot_value(np.mean([r["loss"] for r in rs]), 10.0)
                                     for rs in runs], "o-", label=LABELS[m])
        axes[1].semilogx(DIGITS_GRID, [np.mean([r["acc"] for r in rs]) for rs in runs],
                         "o-", label=LABELS[m])
    axes[0].set(xlabel="lr / cap", ylabel="final train loss", title="Digits MLP, β = 0.9")
    axes[1].set(xlabel="lr / cap", ylabel="test accuracy", ylim=(0.5, 1.0))
    axes[0].legend(fontsize=7)
    for lr in DIGITS_GRID:
        axes[2].semilogy(dg["cells"][("alr_smag", lr)][0]["taus"], lw=1, label=f"cap {lr:g}")
    axes[2].set(xlabel="step", ylabel="τ (opt/tau)", title="ALR-SMAG effective step")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv  # _cli.run rejects positional arguments
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    scale = FLAGS.scale
    parts = ["# Generalized Polyak step size with momentum (issue 5)", "",
             "Regenerate: `python -m experiments.polyak`. ALR-SMAG = "
             "`optim_lab.alr_smag` (step-back `AlrSmag` semantics); ALR-HB = "
             "`optim_lab.alr_hb`, **derived from the paper's principle, not verified "
             "against its text**. Baselines: `optax.sgd(lr, momentum=β)` (heavy ball, "
             "no dampening), `optax.polyak_sgd(max_learning_rate)`, "
             "`optax.contrib.momo(lr, beta)`; lower bound 0 everywhere.", ""]
    if "quadratic" in FLAGS.studies:
        q = quadratic_study(max(int(500 * scale), 10))
        plot_quadratic(q, out / "quadratic_beta.png")
        parts += [quadratic_markdown(q), "![quadratic](quadratic_beta.png)", ""]
    if "minibatch" in FLAGS.studies:
        mb = minibatch_study(max(int(400 * scale), 10), seeds=FLAGS.seeds)
        plot_minibatch(mb, out / "minibatch.png")
        parts += [minibatch_markdown(mb), "![minibatch](minibatch.png)", ""]
    if "digits" in FLAGS.studies:
        dg = digits_study(min(FLAGS.seeds, 2), max(int(120 * scale), 5))
        plot_digits(dg, out / "digits.png")
        parts += [digits_markdown(dg), "![digits](digits.png)", ""]
    (out / "summary.md").write_text("\n".join(parts))
    print(f"wrote {out / 'summary.md'}")


if __name__ == "__main__":
    _cli.run(main)
