"""The LM schedules driver (experiments/schedules_lm.py) end to end at smoke size."""

import math
import pathlib
import re

import pytest

from experiments import schedules_lm
from optim_lab import rundir

import binaries

STEPS = 20  # 20 logged gradient norms (log_every = 1 below 200 steps)


def _cells(text: str, first: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _driver(runs: pathlib.Path, out: pathlib.Path) -> None:
    binaries.run_ok("experiments.schedules_lm", f"--workdir={runs}", f"--out={out}",
                    "--size=tiny", f"--steps={STEPS}", "--seeds=2", "--lrs=0.003,0.03",
                    "--max_extensions=1", timeout=1800)


@pytest.mark.slow  # ~20 tiny runs in ~15 vmapped programs: minutes on 2 loaded cores
def test_driver_tables_match_the_run_directories(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    _driver(runs, out)
    text = (out / "lm.md").read_text()
    assert (out / "lm.png").stat().st_size > 10_000
    assert "through the sweep engine (one vmapped program per schedule" in text
    assert re.search(r"\d+\.\d min for \d+ runs in \d+ sweeps", text)
    for name in schedules_lm.SCHEDULES:
        grid, best = _cells(text, name)[1:3]
        lrs = [float(x) for x in grid.split(", ")]
        assert lrs == sorted(lrs) and 2 <= len(lrs) <= 3  # at most one extension
        label = name if name != "refined" else next(
            p.name for p in runs.iterdir() if p.name.startswith("refined_from_"))
        # each run of the grid is an ordinary run directory of its own config
        losses = {}
        for lr in lrs:
            d = schedules_lm.run_dir(runs, label, lr, 0)
            assert rundir.load_config(d)["optimizer"]["learning_rate"] == lr
            records = rundir.read_metrics(d)
            assert records[-1]["step"] == STEPS
            losses[lr] = records[-1]["test/loss"]
        assert float(best) == min(losses, key=losses.get)
        # the mean over seeds in the table is that of the seed runs' last records
        seeds = [rundir.read_metrics(schedules_lm.run_dir(runs, label, float(best), s))
                 [-1]["test/loss"] for s in range(2)]
        mean = float(_cells(text, name)[4].split(" ± ")[0])
        assert math.isclose(mean, sum(seeds) / 2, abs_tol=1e-4)
    # a rerun reuses every run (and the stored timing)
    _driver(runs, out)
    assert (out / "lm.md").read_text() == text


def test_timing_sentence_sums_the_sweeps():
    t = dict(wall_s=90.0, trained=6, load_start=(3.0, 0, 0), load_end=(5.0, 0, 0))
    text = schedules_lm.timing_markdown([t, {**t, "trained": 4}])
    assert "3.0 min for 10 runs in 2 sweeps, 1-minute load average 3.0–5.0" in text
    assert "not measured" in schedules_lm.timing_markdown([])
