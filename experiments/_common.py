"""What the study drivers share: numbers in tables, figures, run directories.

Flag-free, so tests and several drivers can import it in one process. Data
and model come from ``optim_lab.training.train.setup(config)``; run
directories are read through ``optim_lab.rundir``.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from optim_lab import rundir

Record = dict[str, Any]


def finite(x: Any) -> float:
    """``x`` as a float, ``inf`` when it is not finite (a diverged run sorts last).

    Examples:
        >>> finite(0.5), finite(float("nan")), finite("-inf")
        (0.5, inf, inf)
    """
    x = float(x)
    return x if math.isfinite(x) else math.inf


def mean_std(xs: Sequence[float], fmt: str = ".4f", std_fmt: str | None = None) -> str:
    """``"mean ± std"`` over seeds (population std), the std in ``std_fmt`` or ``fmt``.

    Examples:
        >>> mean_std([1.0, 2.0])
        '1.5000 ± 0.5000'
        >>> mean_std([1.0, 2.0], ".2e", ".1e")
        '1.50e+00 ± 5.0e-01'
    """
    return f"{np.mean(xs):{fmt}} ± {np.std(xs):{std_fmt or fmt}}"


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (imported on first use)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_summary(out: str | pathlib.Path, text: str) -> pathlib.Path:
    """Writes ``text`` to ``out/summary.md`` (``out`` created); returns the path."""
    path = pathlib.Path(out) / "summary.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def save_figure(fig, path: str | pathlib.Path, dpi: int = 110) -> pathlib.Path:
    """Lays out ``fig``, writes it to ``path`` (parents created) and closes it."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


# --- run directories ---------------------------------------------------------------


def override_steps(config: ml_collections.ConfigDict, steps: int | None
                   ) -> ml_collections.ConfigDict:
    """Shortens ``config`` to ``steps`` (smoke runs; ``None`` / 0: unchanged).

    Checkpoints at the end only; logs and evaluates every
    ``gcd(steps, log_every)`` steps so every boundary divides the run.
    """
    if steps:
        config.steps = config.checkpoint_every = steps
        config.log_every = config.eval_every = math.gcd(steps, config.log_every)
    return config


def finished(workdir: str | pathlib.Path, steps: int) -> bool:
    """Whether the run in ``workdir`` has logged its last step ``steps``."""
    records = rundir.read_metrics(workdir)
    return bool(records) and records[-1]["step"] == steps


def evals(records: Sequence[Record]) -> list[Record]:
    """The records with evaluation metrics (``test/accuracy``)."""
    return [r for r in records if "test/accuracy" in r]


def first_step(records: Sequence[Record], key: str, threshold: float) -> int | None:
    """First step whose ``key`` is >= ``threshold`` (None if never).

    Examples:
        >>> first_step([{"step": 0, "a": 0.1}, {"step": 5, "a": 0.7}], "a", 0.5)
        5
    """
    return next((r["step"] for r in records if r.get(key, -1) >= threshold), None)
