"""The refined-schedules driver (experiments/schedules.py) end to end at smoke size."""

import math
import re

import pytest

from optim_lab import rundir

import binaries

STEPS = 100  # 10 logged gradient norms: enough left after trimming 2 at each end


def _row(text: str, first: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _mean(cell: str) -> float:
    mean, std = cell.split(" ± ")
    assert float(std) == 0.0, cell  # one seed
    return float(mean)


def test_driver_smoke_tables_match_the_runs(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    binaries.run_ok("experiments.schedules", f"--workdir={runs}", f"--out={out}",
                    "--problems=softmax_sgd", "--seeds=1", f"--steps={STEPS}", "--lrs=1")
    text = (out / "summary.md").read_text()
    assert (out / "softmax_sgd.png").stat().st_size > 10_000
    assert f"(steps overridden: {STEPS})" in text

    main, sweep = text.split("Seed-0 learning-rate sweep")
    for name in ("constant", "cosine", "linear", "wsd", "refined"):
        best, train_loss, test_loss, test_acc, vs_linear = _row(main, name)[1:6]
        assert best == "1"
        # the table's numbers are the seed-0 run's last record (the sweep run is reused)
        label = name
        if name == "refined":
            label = f"refined_from_linear_lr1_seed0_steps{STEPS}"
        last = rundir.read_metrics(runs / "softmax_sgd" / label / f"lr1_seed0_steps{STEPS}")[-1]
        assert last["step"] == STEPS
        assert _mean(train_loss) == round(last["train/loss"], 4)
        assert _mean(test_loss) == round(last["test/loss"], 4)
        assert _mean(test_acc) == round(last["test/accuracy"], 4)
        assert _row(sweep, name)[1] == train_loss.split(" ± ")[0]
        # it learnt: well below the chance loss log(10), well above chance accuracy
        assert _mean(train_loss) < 0.5 * math.log(10) and _mean(test_acc) > 0.5
        if name == "linear":
            assert vs_linear == "+0.00 %"

    # the refinement read the linear run's 10 logged L2 gradient norms
    m = re.search(r"Logged gradient norm: ([\d.e+-]+) in the first window", text)
    linear = rundir.read_metrics(runs / "softmax_sgd" / "linear" / f"lr1_seed0_steps{STEPS}")
    _, norms = rundir.metric_series(linear, "grads/global/l2")
    assert len(norms) == STEPS // 10
    assert float(m.group(1)) == float(f"{norms[0]:.3g}")


@pytest.mark.slow  # 5 schedules x 2-3 learning rates through the sweep engine
def test_grid_is_extended_until_every_best_lr_is_interior(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    binaries.run_ok("experiments.schedules", f"--workdir={runs}", f"--out={out}",
                    "--problems=softmax_sgd", "--seeds=1", f"--steps={STEPS}", "--lrs=0.3,1",
                    "--max_extensions=2")
    text = (out / "summary.md").read_text()
    main, sweep = text.split("Seed-0 learning-rate sweep")
    grid = [float(x) for x in _row(sweep, "schedule")[1:]]
    assert grid[:2] == [0.3, 1.0] and len(grid) > 2  # 1 is best at 100 steps: extended
    for name in ("constant", "cosine", "linear", "wsd", "refined"):
        cells = _row(sweep, name)[1:]
        losses = {lr: float(c) for lr, c in zip(grid, cells) if c != "–"}
        best = float(_row(main, name)[1])
        assert best == min(losses, key=losses.get)
        tried = sorted(losses)
        interior = tried[0] < best < tried[-1]
        assert _row(main, name)[-1] == ("yes" if interior else "**no**")
        assert interior or len(tried) == 4  # else both extensions were used
    assert "through the sweep engine" in text
