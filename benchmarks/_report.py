"""Shared pieces of the benchmarks: timing and the results/benchmarks.md writer.

Machines are shared and noisy, so every benchmark times its subject and its
baseline *in the same process*, interleaved, and reports the ratio of medians.
Each benchmark owns one section of ``results/benchmarks.md``, delimited by
HTML comments, and rewrites only that section.
"""

from __future__ import annotations

import os
import pathlib
import platform
import re
import statistics
import time
from collections.abc import Callable

import jax

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPORT = ROOT / "results" / "benchmarks.md"


def block(x):
    """Waits for every array in ``x``."""
    return jax.block_until_ready(x)


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                     inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each ``fn``, round-robin over ``repeats``.

    Each ``fn`` must run its work and block until it is done; ``inner`` calls
    are timed together and divided out.
    """
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up / compile
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def machine() -> str:
    """One line describing where the numbers were measured."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, jax {jax.__version__}, "
            f"backend {jax.default_backend()}")


def write_section(name: str, markdown: str) -> pathlib.Path:
    """Replaces (or appends) the ``name`` section of results/benchmarks.md."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    text = REPORT.read_text() if REPORT.exists() else (
        "# Benchmarks\n\nRegenerate each section with the command it names. "
        "Ratios compare the subject with a baseline timed in the same process.\n")
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    section = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + section + "\n")
    REPORT.write_text(text)
    return REPORT
