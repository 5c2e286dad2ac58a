"""What the study drivers share: numbers in tables, figures, run directories.

Flag-free, so tests and several drivers can import it in one process. Data
and model come from ``optim_lab.training.train.setup(config)``; run
directories are read through ``optim_lab.rundir``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import resource
import time
from collections.abc import Mapping
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


def resize_lm(config: ml_collections.ConfigDict, sizes: dict[str, Any]
              ) -> ml_collections.ConfigDict:
    """Applies model / data size overrides to an LM config (``configs/lm.py``).

    ``batch_size`` sets ``config.batch_size``; ``context`` sets both the
    model's and the data's context; ``max_bytes`` and ``eval_windows`` go to
    ``config.data``; every other key to ``config.model``.

    Examples:
        >>> from experiments.configs import lm
        >>> c = resize_lm(lm.get_config(), dict(d_model=64, context=32, batch_size=8))
        >>> c.model.d_model, c.model.context, c.data.context, c.batch_size
        (64, 32, 32, 8)
    """
    for key, value in sizes.items():
        if key == "batch_size":
            config.batch_size = value
        elif key in ("context", "max_bytes", "eval_windows"):
            if key == "context":
                config.model.context = value
            config.data[key] = value
        else:
            config.model[key] = value
    return config


def sweeps_text(timings: Sequence[Record]) -> str:
    """One clause summing several sweeps' timings (``run_sweep`` results).

    Examples:
        >>> t = dict(wall_s=90.0, trained=6, load_start=(3.0, 0, 0), load_end=(5.0, 0, 0))
        >>> sweeps_text([t, {**t, "trained": 4}])
        '3.0 min for 10 runs in 2 sweeps, 1-minute load average 3.0–5.0 during them'
    """
    wall = sum(t["wall_s"] for t in timings)
    runs = sum(t["trained"] for t in timings)
    loads = [t["load_start"][0] for t in timings] + [t["load_end"][0] for t in timings]
    return (f"{wall / 60:.1f} min for {runs} runs in {len(timings)} sweeps, 1-minute "
            f"load average {min(loads):.1f}–{max(loads):.1f} during them")


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


# --- studies through the sweep engine ----------------------------------------------

TIMING_FILE = "sweep_timing.json"


def run_sweep(configs: Mapping[str, ml_collections.ConfigDict], root: str | pathlib.Path,
              *, chunk: int = 0, label: str = "sweep") -> Record:
    """Trains every config in ``root/<name>/`` through the sweep engine, timed.

    Each ``name`` (a relative path, so a driver keeps its run-directory
    layout) is an ordinary run directory. Configs that differ only in seed and
    float hyperparameters run as one vmapped program
    (``optim_lab.training.sweep``); finished runs are skipped.

    Args:
        configs: Run directory name (relative to ``root``) -> full config.
        root: The study's work directory.
        chunk: Members per vmapped program (0: a whole group at once).
        label: The key under which the timing is kept in ``root/sweep_timing.json``.

    Returns:
        The timing of the invocation that trained the runs: ``wall_s``,
        ``cpu_s`` (this process's user + system CPU time, less sensitive to
        other jobs on a shared machine than wall-clock), ``trained`` /
        ``members`` counts, the program ``groups`` sizes, the 1/5/15-minute
        load averages ``load_start`` / ``load_end`` and the start ``date``
        (UTC). When every run was already finished, the timing stored by the
        invocation that trained them (``reused=True``), or ``{}`` if none was
        stored.
    """
    from optim_lab.training import sweep

    root = pathlib.Path(root)
    members = [sweep.Member(name, {}, config) for name, config in configs.items()]
    pending = sum(not finished(root / m.name, m.config.steps) for m in members)
    path = root / TIMING_FILE
    stored = json.loads(path.read_text()) if path.exists() else {}
    if not pending:
        return {**stored.get(label, {}), "reused": True} if label in stored else {}
    load_start = list(os.getloadavg())
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    groups = sweep.plan(members, root)
    sweep.run(members, root, chunk=chunk, progress=False, groups=groups)
    timing = dict(wall_s=time.perf_counter() - start, cpu_s=_cpu_seconds() - cpu_start,
                  trained=pending,
                  members=len(members), groups=[len(g.members) for g in groups],
                  chunk=chunk, load_start=load_start, load_end=list(os.getloadavg()),
                  date=date)
    rundir.write_atomic(path, json.dumps({**stored, label: timing}, indent=1) + "\n")
    return timing


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timing_text(timing: Record) -> str:
    """One sentence for a summary: the sweep's wall-clock and the machine load.

    Examples:
        >>> text_timing = dict(wall_s=61.0, cpu_s=80.0, trained=12, members=12,
        ...                    groups=[6, 6], chunk=0, load_start=(4.1, 3.0, 2.9),
        ...                    load_end=(4.5, 4.0, 3.1), date="2026-12-02 03:00 UTC")
        >>> text = timing_text(text_timing)
        >>> text.split(" started ")[0]
        '61 s (CPU 80 s) for 12 runs in 2 vmapped programs (6 + 6 members)'
        >>> text.split(", ")[-1]
        'load average 4.1 at the start and 4.5 at the end (1-minute)'
        >>> timing_text({**text_timing, "chunk": 1}).split(" started ")[0]
        '61 s (CPU 80 s) for 12 runs in 2 compiled programs (6 + 6 members, run in turn)'
    """
    if not timing:
        return "not measured (every run was already finished and no timing was stored)"
    chunk = {0: "", 1: ", run in turn"}.get(
        timing["chunk"], f", at most {timing['chunk']} members at once")
    partial = (f" ({timing['trained']} of {timing['members']} runs trained, the rest "
               "reused)" if timing["trained"] != timing["members"] else "")
    reused = "; runs reused from that invocation" if timing.get("reused") else ""
    sizes = " + ".join(map(str, timing["groups"]))
    return (f"{timing['wall_s']:.0f} s (CPU {timing['cpu_s']:.0f} s) for "
            f"{timing['members']} runs in "
            f"{len(timing['groups'])} {'compiled' if timing['chunk'] == 1 else 'vmapped'} "
            f"program{'s' * (len(timing['groups']) > 1)} "
            f"({sizes} members{chunk}){partial} "
            f"started {timing['date']}, load average {timing['load_start'][0]:.1f} at the "
            f"start and {timing['load_end'][0]:.1f} at the end (1-minute){reused}")
