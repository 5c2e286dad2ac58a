r"""Weight rescaling (LIR + TVR) on a byte-level LM: the weight-rescaling spec's
smallest faithful CPU experiment.

    python -m experiments.rescaling          # the scaled-down default, see below

Variants (AdamW lr 3e-3, β = (0.9, 0.95), weight decay 0.1, constant lr):

* ``a``: every matrix N(0, 0.02²) (HF default);
* ``b``: init 0.006 + LIR (``model.init_std=0.006``, ``rescaling.lir_base_std=0.006``);
* ``c_i{1,50}_t{1.0,1.2}``: (b) + TVR, target 0.01, every 1 or 50 steps,
  threshold 1.0 or 1.2.

(a) and (b) run TVR in **monitor-only** mode: ``rescaling.tvr_threshold=1e9``
(interval 1) logs the same per-layer statistics (``tvr/<leaf>/{std,mean,ratio,
fired}``) every step but never fires — one-sided TVR rescales only when
std / target > threshold, and the parameters pass through bit-identical
otherwise (``tests/experiments/test_rescaling_driver.py`` checks both). Every
run logs every step (``log_every=1``), so the logged std is the exact
pre-rescale std at each step, check steps included. With TVR configured the
training step also logs max |x| of the residual stream of its own forward
pass on the training batch (``act/max_abs``, every step). The
validation-window probe (:mod:`optim_lab.dynamics.activations`: max |x| after
each block) runs on the initial params and on each kept checkpoint
(``checkpoint_every = steps // 2``: mid-run and end) and is cached in the run
directory as ``activations.json``.

All runs go through the sweep engine (:func:`experiments._common.run_sweep`):
runs that differ only in seed and TVR threshold run as one vmapped program
(3 programs: (a); (b) and every-step TVR; every-50 TVR), and the sweep's
wall-clock goes into the report.

Default size (CPU budget, see ``results/rescaling/summary.md``): the spec's
4 blocks, but d 64 (4 heads, SwiGLU 172), context 64, batch 16, ``--steps``
steps; ``--size=spec`` runs ``experiments/configs/lm.py`` unchanged (d 128,
context 128, batch 32). Writes ``summary.md``, ``std.png`` and
``loss_activations.png`` to ``--out``; run directories under ``--workdir``
are reused (a finished run is not recomputed; a killed study resumes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags
from absl import logging

from experiments import _cli
from experiments import _common
from experiments.configs import lm
from optim_lab import rundir
from optim_lab.dynamics import activations
from optim_lab.models import registry as model_registry
from optim_lab.training import checkpoint
from optim_lab.training import errors
from optim_lab.training import train

FLAGS = flags.FLAGS
TARGET = 0.01
MONITOR_THRESHOLD = 1e9  # std / target never exceeds it: statistics only
PLATEAU_TOLERANCE = 0.05  # "flat": late / mid block std within 5 %; overshoot <= 5 %


@dataclasses.dataclass(frozen=True)
class Variant:
    label: str
    init_std: float
    lir: bool
    interval: int
    threshold: float  # MONITOR_THRESHOLD: TVR never fires

    @property
    def tvr(self) -> bool:
        return self.threshold < MONITOR_THRESHOLD


VARIANTS = {
    "a": Variant("(a) init 0.02", 0.02, False, 1, MONITOR_THRESHOLD),
    "b": Variant("(b) init 0.006 + LIR", 0.006, True, 1, MONITOR_THRESHOLD),
    "c_i1_t1.0": Variant("(c) + TVR every 1, thr 1.0", 0.006, True, 1, 1.0),
    "c_i1_t1.2": Variant("(c) + TVR every 1, thr 1.2", 0.006, True, 1, 1.2),
    "c_i50_t1.0": Variant("(c) + TVR every 50, thr 1.0", 0.006, True, 50, 1.0),
    "c_i50_t1.2": Variant("(c) + TVR every 50, thr 1.2", 0.006, True, 50, 1.2),
}
# Model / data sizes: overrides of experiments/configs/lm.py ("spec": none).
SIZES = {
    "spec": {},
    "small": dict(d_model=64, num_heads=4, mlp_hidden=172, context=64, batch_size=16,
                  eval_windows=128),
    # the 2 000-step study on a loaded shared machine: 1/8 of small's matmul work
    "mini": dict(d_model=32, num_heads=4, mlp_hidden=86, context=32, batch_size=16,
                 eval_windows=128),
    "tiny": dict(num_layers=2, d_model=32, num_heads=2, mlp_hidden=64, context=16,
                 batch_size=4, max_bytes=2 ** 16, eval_windows=8),  # smoke tests
}


def define_flags() -> None:
    """The binary's flags (defined on demand, so tests can import this module)."""
    flags.DEFINE_string("workdir", "/tmp/optim_lab_rescaling", "Root of the run directories.")
    flags.DEFINE_string("out", "results/rescaling", "Where summary.md and the plots go.")
    flags.DEFINE_list("variants", list(VARIANTS), "Variants to run.")
    flags.DEFINE_integer("seeds", 3, "Seeds per variant.", lower_bound=1)
    flags.DEFINE_integer("steps", 500, "Training steps per run.", lower_bound=2)
    flags.DEFINE_enum("size", "small", list(SIZES), "Model size: 'spec' is "
                      "experiments/configs/lm.py (d 128, context 128, batch 32), "
                      "'small' the scaled-down default, 'mini' half its width and context, "
                      "'tiny' for smoke tests.")
    flags.DEFINE_integer("eval_every", 100, "Steps between validation evaluations.",
                         lower_bound=1)
    flags.DEFINE_integer("sweep_chunk", 0, "At most this many runs per vmapped "
                         "program (bounds memory); 0: a whole group at once.",
                         lower_bound=0)
    _cli.check_choices("variants", VARIANTS)


def config_for(variant: str, seed: int, steps: int, *, size: str = "small",
               eval_every: int = 100):
    """The run config of one (variant, seed) at one of :data:`SIZES`."""
    v = VARIANTS[variant]
    c = lm.get_config()
    _common.resize_lm(c, SIZES[size])
    c.seed, c.steps, c.log_every = seed, steps, 1
    c.eval_every = min(eval_every, steps)
    c.checkpoint_every = max(1, steps // 2)
    c.model.init_std = v.init_std
    if v.lir:
        c.rescaling.lir_base_std = v.init_std
    c.rescaling.tvr_target = TARGET
    c.rescaling.tvr_interval = v.interval
    c.rescaling.tvr_threshold = v.threshold
    return c


def run_dir(root: pathlib.Path, variant: str, seed: int) -> pathlib.Path:
    return pathlib.Path(root) / variant / f"seed{seed}"


# --- the residual-stream probe on checkpoints ------------------------------------


def _restore_step(workdir: pathlib.Path, template, step: int):
    """The checkpoint of ``step`` (verified against its manifest)."""
    path = pathlib.Path(workdir).resolve() / checkpoint.CHECKPOINT_DIR
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template._asdict())
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # orbax warns that read_only is read-only
    mngr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(
        create=False, read_only=True))
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), manifest=ocp.args.JsonRestore()))
    finally:
        mngr.close()
        logging.set_verbosity(verbosity)
    leaves = restored["manifest"].get("leaves")
    if leaves != checkpoint.digests(restored["state"]):
        raise errors.CheckpointError(f"checkpoint {path}/{step} does not match its "
                                     "manifest")
    return restored["state"]


def _checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    path = pathlib.Path(workdir) / checkpoint.CHECKPOINT_DIR
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) \
        if path.is_dir() else []


def probe_run(config, workdir: pathlib.Path) -> dict[str, Any]:
    """Residual max |x| at step 0 and at each kept checkpoint (cached on disk)."""
    cache = pathlib.Path(workdir) / "activations.json"
    steps = [0, *_checkpoint_steps(workdir)]
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("steps") == steps:
            return cached
    data, fn, _, tx = train.setup(config)
    kw = config.model.to_dict()
    model = model_registry.build(kw.pop("name"), data.spec, config.seed, **kw)
    probe = jax.jit(lambda p, t: activations.residual_max_abs(model, p, t))
    template = train.initial_state(fn, tx, config.seed)
    out = []
    for step in steps:
        params = fn.params if step == 0 else \
            _restore_step(workdir, template, step)["params"]
        out.append({k: float(v) for k, v in probe(params, data.test_x).items()})
    result = {"steps": steps, "probes": out}
    rundir.write_atomic(cache, json.dumps(result, indent=1))
    return result


# --- one run's numbers ------------------------------------------------------------

_STD_KEY = re.compile(r"^tvr/(layers_(\d+)/.+)/ratio$")


def summarize_run(workdir: pathlib.Path, config, probes: dict[str, Any]
                  ) -> dict[str, Any]:
    """Per-step pre-rescale std per layer, rescale counts, losses, probes."""
    records = [r for r in rundir.read_metrics(workdir) if r["step"] >= 1]
    records = [r for r in records if r["step"] <= config.steps]
    leaves = sorted({m.group(1): int(m.group(2)) for r in records[:1] for k in r
                     for m in [_STD_KEY.match(k)] if m}.items())
    if not leaves:
        raise ValueError(f"{workdir}: no tvr/<leaf>/ratio statistics logged")
    steps = np.array([r["step"] for r in records])
    std = np.array([[rundir.as_float(r[f"tvr/{leaf}/std"]) for leaf, _ in leaves]
                    for r in records])
    blocks = sorted({b for _, b in leaves})
    layer_std = np.stack([std[:, [j for j, (_, b) in enumerate(leaves) if b == i]].mean(1)
                          for i in blocks], axis=1)
    evals = [(r["step"], rundir.as_float(r["test/loss"])) for r in
             rundir.read_metrics(workdir) if "test/loss" in r and r["step"] <= config.steps]
    fired = np.array([[rundir.as_float(r[f"tvr/{leaf}/fired"]) > 0 for leaf, _ in leaves]
                      for r in records])
    act = np.array([rundir.as_float(r.get("act/max_abs", math.nan)) for r in records])
    return dict(steps=steps, std=std, layer_std=layer_std, leaves=[x for x, _ in leaves],
                eval_steps=np.array([s for s, _ in evals]),
                val_loss=np.array([v for _, v in evals]), fired_mask=fired,
                fired=int(fired.sum()), probes=probes, total_steps=config.steps,
                train_act=act)


def interval_growth(res: dict[str, Any], interval: int) -> np.ndarray:
    """Relative std growth of every matrix over one check interval (second half).

    ``std(k + interval) / post(k) - 1`` for consecutive checks ``k``, where
    ``post(k)`` is the std TVR left at check ``k`` (the target if it fired).
    """
    index = {int(s): i for i, s in enumerate(res["steps"])}
    checks = [int(s) for s in res["steps"] if s > res["total_steps"] / 2
              and s % interval == 0 and int(s) + interval in index]
    out = []
    for k in checks:
        i, j = index[k], index[k + interval]
        post = np.where(res["fired_mask"][i], TARGET, res["std"][i])
        out.append(res["std"][j] / post - 1)
    return np.concatenate(out) if out else np.zeros(0)


def plateau_stats(res: dict[str, Any], interval: int = 1) -> dict[str, float]:
    """Pre-rescale std over the second half of a run, in units of the target.

    ``max_ratio`` / ``mean_ratio`` are taken at the TVR check steps
    (multiples of ``interval``), where the reference logs its ``ori_std``.
    """
    late = (res["steps"] > res["total_steps"] / 2) & (res["steps"] % interval == 0)
    std = res["std"][late]
    block = res["std"].mean(1)
    n = len(block)
    early = block[int(0.4 * n):int(0.5 * n)].mean() if n >= 10 else block[0]
    return dict(max_ratio=float(std.max() / TARGET),
                mean_ratio=float(std.mean() / TARGET),
                first=float(block[0]), final=float(block[-1]),
                growth=float(block[-1] / block[0]),
                late_growth=float(block[-max(1, n // 10):].mean() / early))


# --- the study and its report --------------------------------------------------


def study(root: pathlib.Path, variants: Sequence[str], seeds: int, steps: int, *,
          size: str = "small", eval_every: int = 100, chunk: int = 0
          ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Trains every (variant, seed) through the sweep engine, then probes them.

    Runs that differ only in seed and float hyperparameters (here: the TVR
    threshold) run as one vmapped program: (a); (b) with every-step TVR at
    thresholds 1.0 and 1.2 (monitor-only (b) is threshold 1e9, interval 1);
    every-50 TVR. Finished runs are reused. Returns the per-variant results
    and the sweep's timing (``_common.run_sweep``).
    """
    configs = {f"{v}/seed{s}": config_for(v, s, steps, size=size, eval_every=eval_every)
               for s in range(seeds) for v in variants}
    timing = _common.run_sweep(configs, root, chunk=chunk, label=f"{size}_{steps}")
    timing = {**timing, "steps": steps} if timing else timing
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for s in range(seeds):
        for v in variants:
            c, workdir = configs[f"{v}/seed{s}"], run_dir(root, v, s)
            results[v].append(summarize_run(workdir, c, probe_run(c, workdir)))
    return results, timing


def _ms(xs: Sequence[float], fmt: str = ".4f") -> str:
    if len(xs) == 1:
        return f"{xs[0]:{fmt}}"
    return f"{np.mean(xs):{fmt}} ± {np.std(xs):{fmt}}"


def _ms_g(xs: Sequence[float]) -> str:
    """``mean ± std`` with 3 significant digits for the mean, 2 for the std."""
    return f"{xs[0]:.3g}" if len(xs) == 1 else f"{np.mean(xs):.3g} ± {np.std(xs):.2g}"


def _late_train_act(res: dict[str, Any]) -> float:
    """Mean of the per-step probe (training batch) over the last 10 % of steps."""
    act = res["train_act"]
    return float(np.mean(act[-max(1, len(act) // 10):]))


def _act(res: dict[str, Any], i: int) -> float:
    return res["probes"]["probes"][i]["act/max_abs"]


def _noise(a: Sequence[float], b: Sequence[float]) -> float:
    """Two standard errors of the difference of two seed means."""
    return 2 * math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)) \
        if min(len(a), len(b)) > 1 else math.nan


def table_markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| variant | seeds | block std at step 1 | final block std | growth "
             "(final / step 1) | 2nd half: max pre-rescale std at checks / target | rescales "
             "(matrix × check) | val loss (nats) | val bits/byte | max abs(act) "
             "init → mid → end | max abs(act), training batches, last 10 % of steps |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        p = [plateau_stats(r, VARIANTS[name].interval) for r in runs]
        loss = [r["val_loss"][-1] for r in runs]
        act = " → ".join(_ms_g([_act(r, i) for r in runs])
                         for i in range(len(runs[0]["probes"]["steps"])))
        lines.append(
            f"| {VARIANTS[name].label} | {len(runs)} | {_ms([x['first'] for x in p])} | "
            f"{_ms([x['final'] for x in p])} | {_ms([x['growth'] for x in p], '.2f')} | "
            f"{_ms([x['max_ratio'] for x in p], '.3f')} | "
            f"{_ms([r['fired'] for r in runs], '.0f')} | {_ms(loss)} | "
            f"{_ms([x / math.log(2) for x in loss])} | {act} | "
            f"{_ms_g([_late_train_act(r) for r in runs])} |")
    steps = results[next(iter(results))][0]["probes"]["steps"]
    lines += ["", "Block std: mean over the block matrices (q, k, v, o, gate, up, down "
              "of every block) of the std (ddof = 1) logged before TVR at that step. "
              f"max abs(act): the largest |x| of the residual stream (any block "
              f"output) on the validation windows, at steps {steps}; the last column "
              "is the same maximum logged by every training step on its own batch "
              "(the forward pass of the loss). Mean ± std over seeds."]
    return "\n".join(lines)


def findings_markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    """The spec's expectations, each checked against the runs."""
    out = ["## The spec's expected CPU-scale dynamics vs these runs", ""]
    for name in ("a", "b"):
        if name in results:
            g = [plateau_stats(r)["growth"] for r in results[name]]
            lg = [plateau_stats(r)["late_growth"] for r in results[name]]
            verdict = "reproduces" if min(g) > 1.0 else "does **not** reproduce"
            out.append(f"* **std grows in {VARIANTS[name].label}**: {verdict} — block "
                       f"std × {_ms(g, '.2f')} from step 1 to the end; still growing "
                       f"late (last 10 % vs 40–50 % of the run: × {_ms(lg, '.3f')}).")
    for name, runs in results.items():
        v = VARIANTS[name]
        if not v.tvr:
            continue
        p = [plateau_stats(r, v.interval) for r in runs]
        mx, lg = [x["max_ratio"] for x in p], [x["late_growth"] for x in p]
        flat = max(abs(x - 1) for x in lg) <= PLATEAU_TOLERANCE
        growth = np.concatenate([interval_growth(r, v.interval) for r in runs])
        under = max(mx) <= v.threshold
        level = ("every matrix stays ≤ thr·target at the checks" if under else
                 f"the largest matrix std at the checks is {_ms(mx, '.3f')} × target, "
                 f"{100 * (max(mx) / v.threshold - 1):.0f} % above thr·target in the "
                 "worst seed")
        out.append(
            f"* **{v.label}: pre-rescale std plateaus at ≤ thr·target = "
            f"{v.threshold * TARGET:g}**: "
            + ("reproduces: plateaus" if flat and under else
               "flat over the run but **not** at ≤ thr·target (see below)" if flat else
               "does **not** plateau")
            + f" (block-mean std over the last 10 % vs 40–50 % of the run × "
            f"{_ms(lg, '.3f')}; (b): growing, see above); {level}; mean pre-rescale "
            f"std at the checks {_ms([x['mean_ratio'] for x in p], '.3f')} × target. "
            f"The excess is one check interval of growth: over one interval a "
            f"matrix's std grows by a median {100 * np.median(growth):.1f} % "
            f"(max {100 * np.max(growth):.0f} %) from what TVR left.")
    if "b" in results:
        base = [r["val_loss"][-1] for r in results["b"]]
        for name, runs in results.items():
            if not VARIANTS[name].tvr:
                continue
            loss = [r["val_loss"][-1] for r in runs]
            diff, noise = float(np.mean(loss) - np.mean(base)), _noise(loss, base)
            within = ("within noise" if abs(diff) <= noise else
                      ("worse than (b)" if diff > 0 else "better than (b)")) \
                if math.isfinite(noise) else "noise unknown (1 seed)"
            end_b = np.mean([_act(r, -1) for r in results["b"]])
            end_c = np.mean([_act(r, -1) for r in runs])
            out.append(
                f"* **{VARIANTS[name].label} vs (b), expected within noise**: "
                f"{'reproduces' if within == 'within noise' else 'does **not** reproduce'}"
                " — final validation loss "
                f"{diff:+.4f} nats (2 standard errors of the difference: "
                f"{noise:.4f}) → {within}; end-of-run max abs(activation) "
                f"{end_c:.2f} vs {end_b:.2f} ({'lower' if end_c < end_b else 'not lower'}).")
    return "\n".join(out + [""])


def reading_markdown(results: dict[str, list[dict[str, Any]]], config) -> str:
    """How to read the findings at this scale (numbers from the runs and config)."""
    d = config.model.d_model
    lines = ["## Reading", ""]
    if "b" in results:
        final_b = float(np.mean([plateau_stats(r)["final"] for r in results["b"]]))
        lines.append(
            f"* **Scale of the target.** TVR's target 0.01 comes from LLaMA-1B "
            f"(d = 2048), where it is {0.01 * math.sqrt(2048):.2f}/√d. Here d = {d}: "
            f"0.01 = {TARGET * math.sqrt(d):.2f}/√d, while the unconstrained run (b) "
            f"ends at a block std of {final_b:.4f} = {final_b * math.sqrt(d):.2f}/√d "
            f"({final_b / TARGET:.1f}× the target). TVR thus holds these matrices far "
            "below the scale this model settles at, a much stronger constraint than "
            f"in the paper. The width-matched analogue, 0.01·√(2048/d) = "
            f"{TARGET * math.sqrt(2048 / d):.4f}, is "
            + ("about where (b) ends, so within these steps it would hardly ever "
               "fire" if TARGET * math.sqrt(2048 / d) > final_b / 1.2 else
               f"{final_b / (TARGET * math.sqrt(2048 / d)):.1f}× below where (b) ends: "
               "a far milder constraint than 0.01, reached only late in the run")
            + " [inferred; not run].")
    tvr = [n for n in results if VARIANTS[n].tvr]
    if tvr:
        g = {n: float(np.median(np.concatenate([interval_growth(r, VARIANTS[n].interval)
                                                for r in results[n]]))) for n in tvr}
        near = [n for n in tvr if g[n] <= 0.10]
        far = [n for n in tvr if g[n] > 0.10]
        lines.append(
            "* **Growth per check interval.** Between two checks a matrix's std grows "
            "by a median of " + ", ".join(f"{100 * g[n]:.1f} % ({VARIANTS[n].label})"
                                          for n in tvr)
            + ". The paper's std plot (pre-rescale std at each check) plateaus "
            "~5 % above its target, "
            "i.e. about 5 % growth per check interval of its run"
            + (f"; {', '.join(VARIANTS[n].label for n in near)} "
               f"{'is' if len(near) == 1 else 'are'} comparable" if near else "")
            + (f"; in {', '.join(VARIANTS[n].label for n in far)} the drift between "
               "checks is far larger (AdamW at lr 3e-3 — the paper's peak lr is 6e-4 — "
               "moves each weight by up to ~lr per step, a large fraction of a 0.01 "
               "std), so the std swings in a sawtooth between the target and several "
               "times it" if far else "") + ".")
    if "b" in results and tvr:
        first = lambda runs: float(np.mean([r["val_loss"][1] for r in runs]))  # noqa: E731
        last = lambda runs: float(np.mean([r["val_loss"][-1] for r in runs]))  # noqa: E731
        step = int(results["b"][0]["eval_steps"][1])
        lines.append(
            f"* **Early vs late.** Validation loss at step {step} / at the end: (b) "
            f"{first(results['b']):.3f} / {last(results['b']):.3f}; " + "; ".join(
                f"{VARIANTS[n].label} {first(results[n]):.3f} / {last(results[n]):.3f}"
                for n in tvr) + " nats.")
    if "a" in results and "b" in results:
        la = [r["val_loss"][-1] for r in results["a"]]
        lb = [r["val_loss"][-1] for r in results["b"]]
        better = "(a)" if np.mean(la) < np.mean(lb) else "(b)"
        noise = _noise(la, lb)
        within = ("within noise" if abs(np.mean(la) - np.mean(lb)) <= noise
                  else "beyond noise")
        lines.append(f"* **(a) vs (b).** Final validation loss (a) {_ms(la)} vs (b) "
                     f"{_ms(lb)} nats ({better} lower by "
                     f"{abs(np.mean(la) - np.mean(lb)):.4f}, {within}: 2 standard errors "
                     f"of the difference {noise:.4f}). The paper's LIR gain "
                     "(≈ +1 point of mean accuracy) is a 1 B-parameter, 100 B-token "
                     "effect; this run does not test it.")
    return "\n".join(lines + [""])


def plot_std(results, out: pathlib.Path) -> pathlib.Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows),
                             squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        runs, v = results[name], VARIANTS[name]
        steps = runs[0]["steps"]
        layer = np.mean([r["layer_std"] for r in runs], axis=0)
        for i in range(layer.shape[1]):
            ax.plot(steps, layer[:, i], lw=1, label=f"block {i + 1}")
        ax.axhline(TARGET, color="k", ls=":", lw=1, label="target 0.01")
        if v.tvr:
            ax.axhline(v.threshold * TARGET, color="r", ls="--", lw=1, label="thr·target")
        ax.set(title=v.label, xlabel="step", yscale="log")
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("pre-rescale kernel std\n(mean over the block's 7 matrices)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "std.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_activations(results, out: pathlib.Path) -> pathlib.Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, runs in results.items():
        loss = np.mean([r["val_loss"] for r in runs], axis=0)
        ax0.plot(runs[0]["eval_steps"], loss / math.log(2), marker="o", ms=3,
                 label=VARIANTS[name].label)
        steps = runs[0]["probes"]["steps"]
        act = np.array([[_act(r, i) for i in range(len(steps))] for r in runs])
        line = ax1.errorbar(steps, act.mean(0), yerr=act.std(0), marker="o", capsize=3,
                            ls="none", label=VARIANTS[name].label)
        train_act = np.mean([r["train_act"] for r in runs], axis=0)
        if np.isfinite(train_act).all():
            ax1.plot(runs[0]["steps"], train_act, lw=0.8, alpha=0.8,
                     color=line.lines[0].get_color())
    ax0.set(title="validation bits per byte (mean over seeds)", xlabel="step",
            yscale="log")
    ax1.set(title="max abs(residual-stream activation)\nlines: training batch, "
            "every step; markers: validation windows", xlabel="step", yscale="log")
    ax0.legend(fontsize=7)
    fig.tight_layout()
    path = out / "loss_activations.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_summary(results, out: pathlib.Path, *, steps: int, size: str,
                  command: str, timing: dict[str, Any] | None = None) -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    plot_std(results, out)
    plot_loss_activations(results, out)
    c = config_for(next(iter(results)), 0, steps, size=size)
    shape = (f"{c.model.num_layers} blocks, d {c.model.d_model}, {c.model.num_heads} "
             f"heads, SwiGLU {c.model.mlp_hidden}, context {c.model.context}, batch "
             f"{c.batch_size}, {steps} steps")
    text = [
        "# Weight rescaling (LIR + TVR) on a byte-level LM", "",
        f"Regenerate: `{command}` (runs are cached under `--workdir`). "
        "Byte-level LLaMA-style LM (`model=llama`, pre-RMSNorm, SwiGLU, RoPE) on the "
        "Python standard library's sources (`data=text`; validation = the last 10 % "
        f"of the corpus), {shape}; AdamW lr 3e-3, β = (0.9, 0.95), weight decay 0.1, "
        "constant lr. TVR target 0.01. (a) and (b) log the same per-layer statistics "
        "with TVR in monitor-only mode (threshold 1e9: it never fires and leaves the "
        "parameters bit-identical). Validation loss on "
        f"{c.data.eval_windows} fixed windows of the validation split.", "",
        f"**Scaled down** from the spec's d 128, context 128, batch 32, ~2 000 steps "
        f"(the 4 blocks kept; {32 * 128 / (c.batch_size * c.model.context):g}× fewer "
        + (f"tokens per step, {2000 / steps:g}× fewer steps)" if steps < 2000 else
           "tokens per step, the spec's step count)")
        + " to fit the "
        "compute budget of a 2-core machine shared with other agents' jobs. "
        + (MINI_NOTE if size == "mini" else "")
        + "`--size=spec --steps=2000` runs the spec's size." if size != "spec" else
        "Spec size (experiments/configs/lm.py).", "",
        timing_markdown(timing or {}, size), "",
        table_markdown(results), "",
        findings_markdown(results),
        reading_markdown(results, c),
        "![per-layer std](std.png)", "",
        "![validation loss and activations](loss_activations.png)", ""]
    path = out / "summary.md"
    path.write_text("\n".join(text))
    return path


# The study before it ran through the sweep engine: 18 separate processes of
# 500 steps at the "small" size, two at a time on this shared 2-core machine
# (first config.json to last metrics line of the run directories,
# 2026-12-01 23:28-00:44 UTC).
MINI_NOTE = (
    "At the earlier `small` size (d 64, context 64) the 2 000-step study did not "
    "fit: a 40-step probe of the 9-run program measured ~0.4 s per run-step on "
    "this machine at load average ~14 (its 2 cores shared with two long training "
    "runs and other jobs), i.e. ~4 h for 18 runs × 2 000 steps; `mini` (d 32, "
    "context 32: 1/8 of its matmul work) does. ")
SEQUENTIAL_BEFORE = dict(steps=500, runs=18, wall_s=4562, run_s=8623)


def timing_markdown(timing: dict[str, Any], size: str) -> str:
    b = SEQUENTIAL_BEFORE
    before = (f"before, one process per run at the `small` size: {b['runs']} runs × "
              f"{b['steps']} steps in "
              f"{b['wall_s'] / 60:.0f} min wall-clock, two processes at a time "
              f"({b['run_s'] / (b['runs'] * b['steps']):.2f} s per run-step summed "
              "over runs)")
    after = _common.timing_text(timing)
    per_step = ""
    if timing.get("wall_s") and timing.get("steps"):
        per_step = (f" ({timing['wall_s'] / (timing['trained'] * timing['steps']):.3f} s "
                    "per run-step)")
    same = "" if size == "small" else (
        f" — at the `{size}` size, so per run-step not comparable with the `small` "
        "runs before; at the `small` size a 40-step probe of the 9-run program took "
        "~0.4 s per run-step including its compilation, at a similar load")
    return (f"**Wall-clock** (a 2-core machine shared with other jobs, nice'd): "
            f"{before}; through the sweep engine: {after}{per_step}{same}.")


def main(argv: Sequence[str]) -> None:
    del argv  # _cli.run rejects positional arguments
    root = pathlib.Path(FLAGS.workdir)
    results, timing = study(root, FLAGS.variants, FLAGS.seeds, FLAGS.steps,
                            size=FLAGS.size, eval_every=FLAGS.eval_every,
                            chunk=FLAGS.sweep_chunk)
    given = [f"--{name}={FLAGS[name].serialize().split('=', 1)[1]}"
             for name in ("variants", "seeds", "steps", "size", "eval_every",
                          "sweep_chunk")
             if FLAGS[name].present]
    command = " ".join(["python -m experiments.rescaling", *given])
    path = write_summary(results, pathlib.Path(FLAGS.out), steps=FLAGS.steps,
                         size=FLAGS.size, command=command, timing=timing)
    print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    _cli.run(main)
