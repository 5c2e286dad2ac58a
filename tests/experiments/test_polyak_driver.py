"""The Polyak-momentum driver: its report on given results, and the binary at smoke size."""

import math

import numpy as np
import pytest

from experiments import polyak_report

import binaries

METHODS = ("sgdm", "polyak_sgd", "momo", "alr_smag", "alr_hb")
LABELS = [polyak_report.LABELS[m] for m in METHODS]


def _table(text: str, heading: str, first: str) -> dict[str, list[str]]:
    """``{row key: cells}`` of the first table whose header starts with ``| first |``
    after ``heading``."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f"| {first} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    assert lines[start] == "| " + " | ".join([first, *LABELS]) + " |"
    return rows


def _num(cell: str) -> float:
    return float(cell.strip("*").split(" ± ")[0])


def _bold_columns(rows: dict[str, list[str]]) -> list[int]:
    """How many cells of each column are bold."""
    return [sum(r[j].startswith("**") for r in rows.values()) for j in range(len(METHODS))]


# --- the report, on hand-made results (no training) -----------------------------------


def _results():
    grid, betas = (0.1, 1.0), (0.0, 0.5, 0.9, 0.99)
    curve = np.array([4.0, 2.0, 3.0, 1.0], np.float32)
    quadratic = dict(curves={(m, b): curve * (1 + i + b) for i, m in enumerate(METHODS)
                             for b in betas},
                     f0=4.0, steps=3, tuned=dict(lr=3.7, beta=0.88, curve=curve),
                     methods=METHODS, betas=betas, cap=1e6)
    problem = dict(title="Toy", f0=0.5, best={m: 1.0 for m in METHODS},
                   beta_lr={m: 1.0 for m in METHODS},
                   lr_sweep={(m, lr): [lr, 2 * lr] for m in METHODS for lr in grid},
                   beta_sweep={(m, b): [b, math.inf] for m in METHODS for b in betas[1:]})
    minibatch = dict(problems={"toy": problem}, steps=5, batch=2, seeds=2, methods=METHODS,
                     grid=grid, beta=0.9, betas=betas[1:], beta_cap=1.0)
    cells = {(m, lr): [dict(loss=lr, acc=0.5 + lr / 4, taus=np.full(3, lr))]
             for m in METHODS for lr in grid}
    digits = dict(cells=cells, seeds=1, steps=3, methods=METHODS, grid=grid, beta=0.9)
    return dict(quadratic=quadratic, minibatch=minibatch, digits=digits)


def test_report_tables_and_plots(tmp_path):
    path = polyak_report.write(tmp_path, _results())
    text = path.read_text()
    for png in ("quadratic_beta", "minibatch", "digits"):
        assert (tmp_path / f"{png}.png").stat().st_size > 10_000
        assert f"({png}.png)" in text
    quad = _table(text, "## 1.", "β")
    assert list(quad) == ["0", "0.5", "0.9", "0.99"]
    assert quad["0.5"] == ["**1.50e+00**", "2.50e+00", "3.50e+00", "4.50e+00", "5.50e+00"]
    assert _table(text, "Non-monotone", "β")["0.9"] == ["1"] * 5
    lr_rows = _table(text, "### Toy", "lr / cap")
    assert lr_rows["1"][0] == "**1.50e+00 ± 5.0e-01**"  # mean ± std over 2 seeds, best lr
    assert lr_rows["0.1"][0] == "1.50e-01 ± 5.0e-02"
    assert _table(text, "β sensitivity", "β")["0.5"] == ["div. (1/2)"] * 5
    dg = _table(text, "## 3.", "lr / cap")
    assert dg["1"] == ["**1.00e+00 / 0.750**"] * 5
    assert "is at the cap in 100% of the steps" in text


# --- the binary, at smoke size ----------------------------------------------------------


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("polyak")
    binaries.run_ok("experiments.polyak", f"--out={out}", "--studies=quadratic,digits",
                    "--scale=0.02", "--seeds=1")
    return out, (out / "summary.md").read_text()


def _quadratic():
    """The study's quadratic in float64: eigenvalues and x0."""
    lam = np.logspace(-3.0, 0.0, 50)
    x0 = np.random.default_rng(0).standard_normal(50).astype(np.float32).astype(np.float64)
    return lam, x0


def test_quadratic_matches_closed_forms(summary):
    _, text = summary
    lam, x0 = _quadratic()
    assert f"f(x0) = {0.5 * np.sum(lam * x0 ** 2):.3g}; final f after 10 steps" in text
    rows = _table(text, "## 1.", "β")
    assert len(rows) == 8
    assert all(any(c.startswith("**") for c in cells) for cells in rows.values())  # best per β
    # β = 0, lr 1/L = 1: gradient descent, x_10 = (1 - λ)^10 x0
    assert _num(rows["0"][0]) == pytest.approx(
        0.5 * np.sum(lam * ((1 - lam) ** 10 * x0) ** 2), rel=5e-3)
    # optax.polyak_sgd, uncapped: x -= f(x) / ‖∇f‖² ∇f, the same in every row (no momentum)
    x = x0.copy()
    for _ in range(10):
        g = lam * x
        x = x - 0.5 * np.sum(lam * x * x) / np.sum(g * g) * g
    polyak = {row[1].strip("*") for row in rows.values()}
    assert len(polyak) == 1
    assert _num(polyak.pop()) == pytest.approx(0.5 * np.sum(lam * x * x), rel=5e-3)
    # without momentum, MoMo, ALR-SMAG and ALR-HB are the Polyak step too
    for cell in rows["0"][2:]:
        assert _num(cell) == pytest.approx(_num(rows["0"][1]), rel=5e-3)


def test_digits_accuracies_and_tau(summary):
    out, text = summary
    assert (out / "digits.png").stat().st_size > 10_000
    assert "## 3. Digits MLP 64-100-100-10 (batch 128, 5 steps" in text
    rows = _table(text, "## 3.", "lr / cap")
    assert list(rows) == ["0.03", "0.1", "0.3", "1", "3"]
    assert _bold_columns(rows) == [1] * len(METHODS)  # one best cap per method
    cells = {lr: [_loss_acc(c) for c in row] for lr, row in rows.items()}
    for row in cells.values():
        for loss, acc in row:
            assert loss > 0 and 0 <= acc <= 1
    # at the start of training Polyak's step f/‖g‖² is far above a small cap, so the cap
    # binds and ALR-SMAG / ALR-HB take SGDM's heavy-ball steps with lr = cap
    for lr in ("0.03", "0.1"):
        sgdm, _, _, smag, hb = cells[lr]
        for loss, acc in (smag, hb):
            assert loss == pytest.approx(sgdm[0], rel=1e-2)
            assert acc == pytest.approx(sgdm[1], abs=2 / 360)  # 360 test digits
    frac = float(text.split("is at the cap in ")[1].split("%")[0])
    assert 0 <= frac <= 100


def _loss_acc(cell: str) -> tuple[float, float]:
    loss, acc = cell.strip("*").split(" / ")
    return (math.inf if loss == "div." else float(loss)), float(acc)
