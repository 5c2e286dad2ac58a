"""Metric logging: window averages, the JSONL writer and the progress line.

Device metrics of each step are kept on device and fetched once per
``log_every`` window (one host transfer), averaged over the window in float64
and appended to ``workdir/metrics.jsonl`` as one JSON object per logged step.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from collections.abc import Iterable, Mapping

import jax
import numpy as np

from optim_lab import rundir

read_metrics = rundir.read_metrics  # the reader lives with the format


def window_mean(window: Iterable[Mapping[str, jax.Array]]) -> dict[str, float]:
    """Fetches a list of per-step metric dicts and averages each key."""
    host = jax.device_get(list(window))
    if not host:
        return {}
    return {k: float(np.mean([np.float64(m[k]) for m in host])) for k in host[0]}


def to_host(metrics: Mapping[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}


def _json_value(v: float):
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf


class MetricsWriter:
    """Appends records to ``metrics.jsonl``, truncated to ``resume_step``."""

    def __init__(self, workdir: str | pathlib.Path, resume_step: int):
        self.path = pathlib.Path(workdir) / rundir.METRICS_FILE
        kept = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a")

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        record = {"step": step, **{k: _json_value(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """One line per log: step, losses, accuracies, steps/s and ETA."""

    KEYS = ("train/loss", "test/loss", "train/accuracy", "test/accuracy")

    def __init__(self, total_steps: int, start_step: int, stream=None):
        self.total, self.stream = total_steps, stream  # None: sys.stdout at print time
        self._t0, self._s0 = time.perf_counter(), start_step

    def steps_per_second(self, step: int) -> float:
        dt = time.perf_counter() - self._t0
        return (step - self._s0) / dt if dt > 0 else float("nan")

    def line(self, step: int, metrics: Mapping[str, float]) -> str:
        rate = self.steps_per_second(step)
        eta = (self.total - step) / rate if rate and rate > 0 else float("nan")
        shown = " ".join(f"{k}={metrics[k]:.4g}" for k in self.KEYS if k in metrics)
        eta_s = _fmt_seconds(eta) if math.isfinite(eta) else "?"
        return (f"step {step}/{self.total} | {shown} | {rate:.1f} steps/s | "
                f"ETA {eta_s}")

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        print(self.line(step, metrics), file=self.stream or sys.stdout, flush=True)
