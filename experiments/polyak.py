r"""Generalized Polyak steps with momentum (ALR-SMAG, ALR-HB) vs SGDM, Polyak-SGD, MoMo.

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

Writes ``results/polyak/summary.md`` and PNG plots there
(``experiments/polyak_report.py``: the tables and plots).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from experiments import _cli
from experiments import _common
from experiments import polyak_report
from experiments.configs import polyak_digits
from optim_lab.optimizers import polyak
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import train
from optim_lab.training.minimise import minimise

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "results/polyak", "Where summary.md and the plots go.")
flags.DEFINE_list("studies", ["quadratic", "minibatch", "digits"], "Studies to run.")
flags.DEFINE_integer("seeds", 3, "Seeds per minibatch cell (digits: min(seeds, 2)).",
                     lower_bound=1)
flags.DEFINE_float("scale", 1.0, "Multiplies every step count (smoke tests: small).",
                   lower_bound=0.0)
_cli.check_choices("studies", ("quadratic", "minibatch", "digits"))

METHODS = ("sgdm", "polyak_sgd", "momo", "alr_smag", "alr_hb")
QUAD_BETAS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
MB_BETAS = (0.0, 0.5, 0.7, 0.9, 0.95, 0.99)
DIGITS_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
UNCAPPED = 1e6
BETA_CAP = 1.0  # minibatch β sweep: cap of the Polyak-type methods (adaptive regime)
BETA = 0.9  # β of the lr / cap sweeps (minibatch, digits)


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
                tuned=dict(lr=a_opt, beta=b_opt, curve=tuned),
                methods=METHODS, betas=QUAD_BETAS, cap=UNCAPPED)


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
            out[(lrs[i], betas[i])] = [_common.finite(v) for v in row]
    return out


def minibatch_study(steps: int = 400, batch: int = 16, seeds: int = 3) -> dict:
    """lr sweep at β = BETA, then a β sweep (SGDM at its best lr, the rest at cap 1).

    A cap that binds turns every Polyak-type method into SGD(M) with lr = cap,
    so the β sweep uses a cap (1) at which the adaptive step is active.
    """
    out = {}
    for key, problem in (("ls", least_squares()), ("logreg", logistic())):
        lr_sweep, beta_sweep = {}, {}
        for m in METHODS:
            res = sweep(m, problem, steps, batch, seeds, GRID, [BETA] * len(GRID))
            lr_sweep.update({(m, lr): res[(lr, BETA)] for lr in GRID})
        best = {m: min(GRID, key=lambda lr: np.mean(lr_sweep[(m, lr)])) for m in METHODS}
        beta_lr = {m: best[m] if m == "sgdm" else BETA_CAP for m in METHODS}
        for m in METHODS:
            res = sweep(m, problem, steps, batch, seeds, [beta_lr[m]] * len(MB_BETAS),
                        MB_BETAS)
            beta_sweep.update({(m, b): res[(beta_lr[m], b)] for b in MB_BETAS})
        out[key] = dict(title=problem.title, lr_sweep=lr_sweep, best=best,
                        beta_lr=beta_lr, beta_sweep=beta_sweep,
                        f0=float(problem.full_loss(jnp.zeros(problem.dim))))
    return dict(problems=out, steps=steps, batch=batch, seeds=seeds, methods=METHODS,
                grid=GRID, beta=BETA, betas=MB_BETAS, beta_cap=BETA_CAP)


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
    data, fn, loss_fn, _ = train.setup(c)
    make = optax.inject_hyperparams(lambda learning_rate: make_tx(method, learning_rate, BETA))
    train_step, eval_step = train.compile_steps(c, fn, loss_fn, make(lrs[0]))
    xy = (jnp.asarray(data.train_x), jnp.asarray(data.train_y))
    out = {}
    for lr in lrs:
        fresh = fn._replace(params=jax.tree.map(jnp.array, fn.params),  # the step donates
                            model_state=jax.tree.map(jnp.array, fn.model_state))
        state = train.initial_state(fresh, make(lr), seed)
        taus = []
        for _ in range(c.steps):
            state, m = train_step(state, xy)
            taus.append(m.get("opt/tau", jnp.full((), jnp.nan)))
        ev = metrics_lib.to_host(eval_step(state.params, state.model_state,
                                           (*xy, data.test_x, data.test_y)))
        out[lr] = dict(loss=_common.finite(ev["train/loss"]), acc=float(ev["test/accuracy"]),
                       taus=np.asarray(jnp.stack(taus)))
    return out


def digits_study(seeds: int = 2, steps: int | None = None) -> dict:
    cells = {(m, lr): [] for m in METHODS for lr in DIGITS_GRID}
    for m in METHODS:
        for s in range(seeds):
            for lr, rec in digits_runs(m, DIGITS_GRID, s, steps).items():
                cells[(m, lr)].append(rec)
    return dict(cells=cells, seeds=seeds, steps=steps or polyak_digits.get_config().steps,
                methods=METHODS, grid=DIGITS_GRID, beta=BETA)


# --------------------------------------------------------------- binary


def main(argv):
    del argv  # _cli.run rejects positional arguments
    scale = FLAGS.scale
    results = {}
    if "quadratic" in FLAGS.studies:
        results["quadratic"] = quadratic_study(max(int(500 * scale), 10))
    if "minibatch" in FLAGS.studies:
        results["minibatch"] = minibatch_study(max(int(400 * scale), 10), seeds=FLAGS.seeds)
    if "digits" in FLAGS.studies:
        results["digits"] = digits_study(min(FLAGS.seeds, 2), max(int(120 * scale), 5))
    print(f"wrote {polyak_report.write(FLAGS.out, results)}")


if __name__ == "__main__":
    _cli.run(main)
