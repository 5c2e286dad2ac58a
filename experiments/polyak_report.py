"""The report of ``experiments/polyak.py``: tables, plots and ``summary.md``.

Flag-free. Each study's result dict carries the methods and grids it ran
(``methods``, ``betas``, ``grid``, caps), so the report needs nothing from
the study module.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import numpy as np

from experiments import _common

LABELS = {"sgdm": "SGDM / HB (fixed lr)", "polyak_sgd": "optax.polyak_sgd",
          "momo": "optax.contrib.momo", "alr_smag": "ALR-SMAG", "alr_hb": "ALR-HB (derived)"}
CURVE_BETAS = (0.5, 0.9, 0.99)  # quadratic: β of the plotted curves and the non-monotone table

HEADER = ["# Generalized Polyak step size with momentum", "",
          "Regenerate: `python -m experiments.polyak`. ALR-SMAG = "
          "`optim_lab.alr_smag` (step-back `AlrSmag` semantics); ALR-HB = "
          "`optim_lab.alr_hb`, **derived from the paper's principle, not verified "
          "against its text**. Baselines: `optax.sgd(lr, momentum=β)` (heavy ball, "
          "no dampening), `optax.polyak_sgd(max_learning_rate)`, "
          "`optax.contrib.momo(lr, beta)`; lower bound 0 everywhere.", ""]


def _fmt(x: float) -> str:
    return "div." if not math.isfinite(x) else f"{x:.2e}"


def _ms(xs: Sequence[float]) -> str:
    """Mean ± std over seeds, or ``div. (k/n)`` when k of n seeds diverged."""
    xs = np.asarray(xs, float)
    if not np.isfinite(xs).all():
        return f"div. ({int((~np.isfinite(xs)).sum())}/{len(xs)})"
    return _common.mean_std(xs, ".2e", ".1e")


def _plot_value(x: float, ceiling: float) -> float:
    return min(x, ceiling) if math.isfinite(x) else ceiling


def _table_head(first: str, methods: Sequence[str]) -> list[str]:
    """A markdown table's header: ``first`` then one column per method."""
    return ["| " + " | ".join([first, *(LABELS[m] for m in methods)]) + " |",
            "|---|" + "---|" * len(methods)]


def _row(first: str, cells: Sequence[str]) -> str:
    return f"| {first} | " + " | ".join(cells) + " |"


def _bold_if(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


# --------------------------------------------------------------- quadratic


def quadratic_markdown(q: dict) -> str:
    methods = q["methods"]
    lines = ["## 1. Ill-conditioned quadratic (d = 50, κ = 10³, f* = 0, deterministic)", "",
             f"f(x0) = {q['f0']:.3g}; final f after {q['steps']} steps. Heavy ball uses the "
             "fixed step 1/L = 1 (the largest step every β ∈ [0, 1) tolerates is "
             "2(1+β)/L, so 1/L is a safe, untuned default); Polyak-type methods are "
             f"uncapped (cap {q['cap']:g}) with f* = 0. polyak_sgd has no momentum "
             "(same number in every row). Polyak's optimally tuned heavy ball "
             f"(α = {q['tuned']['lr']:.3f}, β = {q['tuned']['beta']:.3f}) reaches "
             f"{_fmt(q['tuned']['curve'][-1])}.", "", *_table_head("β", methods)]
    for beta in q["betas"]:
        vals = [q["curves"][(m, beta)][-1] for m in methods]
        lines.append(_row(f"{beta:g}", [_bold_if(_fmt(v), v == min(vals)) for v in vals]))
    lines += ["", "Non-monotone steps (out of the last half, steps whose loss rose above "
              "the previous step's). Polyak-type steps are non-monotone by design (they "
              "shrink the distance to x*, not f), so this counts the heavy-ball "
              "oscillation only for the fixed-step column; the curves in the plot show "
              "its shape:", "", *_table_head("β", methods)]
    half = q["steps"] // 2
    for beta in CURVE_BETAS:
        ups = [int((np.diff(q["curves"][(m, beta)][half:]) > 0).sum()) for m in methods]
        lines.append(_row(f"{beta:g}", [str(u) for u in ups]))
    return "\n".join(lines + [""])


def plot_quadratic(q: dict, path: pathlib.Path) -> pathlib.Path:
    fig, axes = _common.pyplot().subplots(1, 4, figsize=(20, 4.2))
    ceiling = 10 * q["f0"]
    for m in q["methods"]:
        axes[0].semilogy(q["betas"], [_plot_value(q["curves"][(m, b)][-1], ceiling)
                                      for b in q["betas"]], "o-", label=LABELS[m])
    axes[0].axhline(q["tuned"]["curve"][-1], color="gray", ls=":",
                    label="HB, Polyak-tuned (α, β)")
    axes[0].set(xlabel="β", ylabel=f"f after {q['steps']} steps",
                title="β sensitivity (quadratic, κ=1e3)")
    axes[0].legend(fontsize=7)
    for ax, beta in zip(axes[1:], CURVE_BETAS):
        for m in q["methods"]:
            ax.semilogy(np.minimum(q["curves"][(m, beta)], ceiling), label=LABELS[m], lw=1)
        ax.set(xlabel="step", ylabel="f", title=f"β = {beta}")
    return _common.save_figure(fig, path)


# --------------------------------------------------------------- minibatch


def minibatch_markdown(mb: dict) -> str:
    methods = mb["methods"]
    lines = [f"## 2. Minibatch problems with f* = 0 (batch {mb['batch']}, {mb['steps']} "
             f"steps, {mb['seeds']} seeds, x0 = 0)", "",
             "Final full-batch loss, mean ± std over seeds (`div.` = non-finite in "
             "k/n seeds). lr is the step for SGDM and the cap for the Polyak-type "
             f"methods; β = {mb['beta']:g} (polyak_sgd: no momentum). **Bold**: best lr "
             "per method.", ""]
    for p in mb["problems"].values():
        lines += [f"### {p['title']} (f(x0) = {p['f0']:.3g})", "",
                  *_table_head("lr / cap", methods)]
        for lr in mb["grid"]:
            lines.append(_row(f"{lr:g}", [_bold_if(_ms(p["lr_sweep"][(m, lr)]),
                                                   lr == p["best"][m]) for m in methods]))
        lines += ["", "β sensitivity: SGDM at its best lr, the Polyak-type methods at "
                  f"cap {mb['beta_cap']:g} (a cap that binds makes them SGD(M) with lr = "
                  "cap, which would hide the adaptive step); lr / cap used: "
                  + ", ".join(f"{m} {p['beta_lr'][m]:g}" for m in methods) + ".", "",
                  *_table_head("β", methods)]
        for b in mb["betas"]:
            lines.append(_row(f"{b:g}", [_ms(p["beta_sweep"][(m, b)]) for m in methods]))
        lines.append("")
    return "\n".join(lines)


def plot_minibatch(mb: dict, path: pathlib.Path) -> pathlib.Path:
    probs = list(mb["problems"].values())
    fig, axes = _common.pyplot().subplots(2, len(probs), figsize=(6 * len(probs), 8.4),
                                          squeeze=False)
    for j, p in enumerate(probs):
        ceiling = 10 * p["f0"]
        for m in mb["methods"]:
            axes[0, j].loglog(mb["grid"], [_plot_value(np.mean(p["lr_sweep"][(m, lr)]),
                                                       ceiling) for lr in mb["grid"]],
                              "o-", label=LABELS[m])
            axes[1, j].semilogy(mb["betas"], [_plot_value(np.mean(p["beta_sweep"][(m, b)]),
                                                          ceiling) for b in mb["betas"]],
                                "o-", label=f"{LABELS[m]} (lr {p['beta_lr'][m]:g})")
        axes[0, j].set(xlabel="lr (SGDM) / cap (Polyak-type)", ylabel="final loss",
                       title=f"{p['title']}: β = {mb['beta']:g}")
        axes[1, j].set(xlabel="β", ylabel="final loss", title=f"{p['title']}: β sweep")
        axes[0, j].legend(fontsize=7)
        axes[1, j].legend(fontsize=7)
    return _common.save_figure(fig, path)


# --------------------------------------------------------------- digits


def _mean_of(runs: Sequence[dict], key: str) -> float:
    return np.mean([r[key] for r in runs])


def digits_markdown(dg: dict) -> str:
    methods, grid, cells = dg["methods"], dg["grid"], dg["cells"]
    lines = [f"## 3. Digits MLP 64-100-100-10 (batch 128, {dg['steps']} steps ≈ "
             f"{dg['steps'] * 128 / 1437:.1f} epochs, β = {dg['beta']:g}, {dg['seeds']} "
             "seeds, no schedule, no weight decay)", "",
             "Final full-batch train loss / test accuracy (mean over seeds); "
             "**bold**: best test accuracy per method.", "", *_table_head("lr / cap", methods)]
    best = {m: max(grid, key=lambda lr: _mean_of(cells[(m, lr)], "acc")) for m in methods}
    for lr in grid:
        lines.append(_row(f"{lr:g}", [
            _bold_if(f"{_fmt(_mean_of(cells[(m, lr)], 'loss'))} / "
                     f"{_mean_of(cells[(m, lr)], 'acc'):.3f}", lr == best[m])
            for m in methods]))
    smag = cells[("alr_smag", best["alr_smag"])][0]
    capped = float(np.mean(np.isclose(smag["taus"], best["alr_smag"])))
    lines += ["", f"ALR-SMAG at its best cap {best['alr_smag']:g} (seed 0): τ (logged as "
              f"`opt/tau` by the training step) is at the cap in {capped:.0%} of the "
              f"steps; median τ = {np.median(smag['taus']):.3g}, last τ = "
              f"{smag['taus'][-1]:.3g}.", ""]
    return "\n".join(lines)


def plot_digits(dg: dict, path: pathlib.Path) -> pathlib.Path:
    fig, axes = _common.pyplot().subplots(1, 3, figsize=(17, 4.2))
    grid = dg["grid"]
    for m in dg["methods"]:
        runs = [dg["cells"][(m, lr)] for lr in grid]
        axes[0].loglog(grid, [_plot_value(_mean_of(rs, "loss"), 10.0) for rs in runs],
                       "o-", label=LABELS[m])
        axes[1].semilogx(grid, [_mean_of(rs, "acc") for rs in runs], "o-", label=LABELS[m])
    axes[0].set(xlabel="lr / cap", ylabel="final train loss",
                title=f"Digits MLP, β = {dg['beta']:g}")
    axes[1].set(xlabel="lr / cap", ylabel="test accuracy", ylim=(0.5, 1.0))
    axes[0].legend(fontsize=7)
    for lr in grid:
        axes[2].semilogy(dg["cells"][("alr_smag", lr)][0]["taus"], lw=1, label=f"cap {lr:g}")
    axes[2].set(xlabel="step", ylabel="τ (opt/tau)", title="ALR-SMAG effective step")
    axes[2].legend(fontsize=7)
    return _common.save_figure(fig, path)


# --------------------------------------------------------------- summary

SECTIONS = {  # study -> (markdown, plot, png name)
    "quadratic": (quadratic_markdown, plot_quadratic, "quadratic_beta"),
    "minibatch": (minibatch_markdown, plot_minibatch, "minibatch"),
    "digits": (digits_markdown, plot_digits, "digits"),
}


def write(out: str | pathlib.Path, results: dict[str, dict]) -> pathlib.Path:
    """Writes ``out/summary.md`` and one PNG per study in ``results``; returns its path.

    Args:
        out: Output directory (created).
        results: ``{study: result}`` for studies among ``SECTIONS`` (the
            ``*_study`` functions of ``experiments/polyak.py``), in
            report order.
    """
    out = pathlib.Path(out)
    parts = list(HEADER)
    for study in SECTIONS:
        if study in results:
            markdown, plot, png = SECTIONS[study]
            plot(results[study], out / f"{png}.png")
            parts += [markdown(results[study]), f"![{study}]({png}.png)", ""]
    return _common.write_summary(out, "\n".join(parts))
