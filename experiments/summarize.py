"""Summarises a sweep: final and best metrics, mean ± std over seeds, per group.

    python -m experiments.summarize runs/sweep [--metrics=test/accuracy,train/loss]

Reads every run directory in the sweep directory DIR (the first argument, or
``--workdir``), groups runs whose configs differ only in ``seed``, and prints a markdown table
(also written to ``DIR/summary.md``, or ``--out``): per group, the number of
seeds, the last logged step, and for each metric its final value and its best
value over the run (highest for accuracies, lowest otherwise), as mean ± sample
standard deviation over the seeds. A NaN (a diverged seed) shows as ``nan``.
"""

from __future__ import annotations

import math
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import flags

from experiments import _cli
from optim_lab import rundir
from optim_lab.training import plotting

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Sweep directory (also accepted as the first "
                    "argument).")
flags.DEFINE_list("metrics", ["train/loss", "test/loss", "test/accuracy"],
                  "Metric keys to summarise.")
flags.DEFINE_string("out", None, "Markdown file (default: WORKDIR/summary.md).")


def best_is_max(key: str) -> bool:
    """Accuracies are better high; every other metric (losses) low."""
    return "accuracy" in key


def final_and_best(records: Sequence[dict[str, Any]], key: str) -> tuple[float, float]:
    """The last logged value of ``key`` and its best over the run (NaN if never logged).

    The best ignores NaN records unless all are NaN.
    """
    _, values = rundir.metric_series(records, key)
    if not len(values):
        return math.nan, math.nan
    finite = values[~np.isnan(values)]
    if not len(finite):
        return float(values[-1]), math.nan
    return float(values[-1]), float(finite.max() if best_is_max(key) else finite.min())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for one value)."""
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan


def _cell(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "nan"
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def summary_table(groups: Sequence[plotting.RunGroup], metrics: Sequence[str]) -> str:
    """The markdown table (see the module docstring)."""
    head = ["group", "seeds", "step"]
    for key in metrics:
        head += [f"final {key}", f"best {key} ({'max' if best_is_max(key) else 'min'})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        runs = [rundir.read_metrics(w) for w in g.workdirs]
        steps = sorted({r[-1]["step"] if r else 0 for r in runs})
        row = [g.label, f"{len(runs)} ({', '.join(map(str, g.seeds))})",
               "/".join(map(str, steps))]
        for key in metrics:
            pairs = [final_and_best(r, key) for r in runs]
            row += [_cell([p[0] for p in pairs]), _cell([p[1] for p in pairs])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _workdir_from_argument(argv: list[str]) -> list[str]:
    """``summarize DIR ...`` -> ``summarize --workdir=DIR ...`` (binaries take flags)."""
    if len(argv) > 1 and not argv[1].startswith("-"):
        return [argv[0], f"--workdir={argv[1]}", *argv[2:]]
    return argv


def main(argv):
    del argv  # _cli.run rejects further positional arguments
    if not FLAGS.workdir:
        raise _cli.ConfigError("give the sweep directory: summarize DIR (or --workdir=DIR)")
    workdirs = plotting.find_runs([FLAGS.workdir])
    for wd in workdirs:
        if not (wd / rundir.CONFIG_FILE).is_file():
            raise _cli.ConfigError(f"{wd} is not a run directory (no {rundir.CONFIG_FILE}) "
                                   "and holds none")
    table = summary_table(plotting.group_by_seed(workdirs), FLAGS.metrics)
    print(table)
    out = pathlib.Path(FLAGS.out or pathlib.Path(FLAGS.workdir) / "summary.md")
    rundir.write_atomic(out, table + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.argv = _workdir_from_argument(sys.argv)
    _cli.run(main)
