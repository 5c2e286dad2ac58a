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
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from optim_lab import rundir
from optim_lab.training.errors import RunDataError

read_metrics = rundir.read_metrics  # the reader lives with the format


@struct.dataclass
class Packed:
    """Metric arrays packed in jit, one array per dtype (few leaves to fetch).

    ``arrays[g]`` holds the metrics named ``names[g]`` along its last axis
    (leading axes: e.g. the steps of a scanned call); ``order`` is the
    original key order, so an unpacked dict iterates as the packed one did.
    """

    arrays: tuple[jax.Array, ...]
    names: tuple[tuple[str, ...], ...] = struct.field(pytree_node=False)
    order: tuple[str, ...] = struct.field(pytree_node=False)


def pack(metrics: Mapping[str, jax.Array]) -> Packed:
    """Packs same-shaped metric arrays into one array per dtype (inside jit).

    Fetching a window costs a host transfer per leaf; a scanned call's dozen
    metrics become one or two leaves. :func:`fetch_window` unpacks the values
    exactly (stacking does not change them).
    """
    groups: dict[str, list[str]] = {}
    for k, v in metrics.items():
        groups.setdefault(jnp.result_type(v).name, []).append(k)
    names = tuple(tuple(ks) for ks in groups.values())
    arrays = tuple(jnp.stack([metrics[k] for k in ks], axis=-1) for ks in names)
    return Packed(arrays, names, tuple(metrics))


def unpack(p: Packed) -> dict[str, np.ndarray]:
    """The metric dict of a (fetched) :class:`Packed`, in its original key order."""
    columns = {k: a[..., j] for ks, a in zip(p.names, p.arrays) for j, k in enumerate(ks)}
    return {k: columns[k] for k in p.order}


def fetch_columns(window: Iterable[Mapping[str, jax.Array] | Packed],
                  step_ndim: int = 0) -> dict[str, np.ndarray]:
    """Fetches a window of device metrics in one host transfer, by key.

    Args:
        window: Each entry one step's metrics, or several steps' stacked along
            a leading axis (a scanned call), as a dict or :class:`Packed`.
        step_ndim: The rank of one step's value of a metric (0: scalars; 1: a
            sweep's ``[members]``); an entry of higher rank holds several steps.

    Returns:
        Per key (in the entries' key order), its float64 values with the
        window's steps along axis 0, followed by the ``step_ndim`` axes.
    """
    parts: dict[str, list[np.ndarray]] = {}
    for m in jax.device_get(list(window)):
        if isinstance(m, Packed):
            m = unpack(m)
        for k, v in m.items():
            v = np.asarray(v, np.float64)
            parts.setdefault(k, []).append(v[None] if v.ndim == step_ndim else v)
    return {k: np.concatenate(vs) for k, vs in parts.items()}


def rows(columns: Mapping[str, np.ndarray]) -> list[dict[str, float]]:
    """One dict of Python floats per step of 1-D ``columns`` (steps along axis 0)."""
    lists = [np.asarray(v).tolist() for v in columns.values()]
    return [dict(zip(columns, row)) for row in zip(*lists)]


def fetch_window(window: Iterable[Mapping[str, jax.Array] | Packed]
                 ) -> list[dict[str, float]]:
    """Fetches a window of device metric dicts in one host transfer, one per step.

    An entry is either one step's metrics (scalars) or several steps' stacked
    along a leading axis (a scanned call), as a dict or :class:`Packed`; all
    come back as one dict per step.
    """
    return rows(fetch_columns(window))


def column_means(columns: Mapping[str, np.ndarray], exclude: Sequence[str] = ()
                 ) -> dict[str, np.ndarray]:
    """Each key's float64 mean over the steps (axis 0), per trailing index.

    Every mean is bit for bit ``np.mean`` of that key's 1-D values at that
    index: the steps are moved to the last, contiguous axis, where NumPy sums
    pairwise as for a 1-D array (a sum along axis 0 would add row by row).
    """
    out = {}
    for k, v in columns.items():
        if k not in exclude:
            v = np.ascontiguousarray(np.moveaxis(np.asarray(v, np.float64), 0, -1))
            out[k] = np.mean(v, axis=-1)
    return out


def window_mean(host: Iterable[Mapping[str, float]],
                exclude: Sequence[str] = ()) -> dict[str, float]:
    """Averages each key of fetched per-step metrics in float64."""
    host = list(host)
    if not host:
        return {}
    columns = {k: np.array([m[k] for m in host], np.float64) for k in host[0]}
    return {k: float(v) for k, v in column_means(columns, exclude).items()}


def to_host(metrics: Mapping[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}


def _json_value(v: float):
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf


class MetricsWriter:
    """Appends records to ``metrics.jsonl``, cut back to ``resume_step`` first.

    On open, the log keeps only the records with ``step <= resume_step``
    (none when ``resume_step`` is 0: the run starts over), is rewritten
    atomically, and a torn last line (a crash mid-write) is dropped with a
    notice. A missing log on a resumed run is reported: its history before
    ``resume_step`` is gone. Steps written must strictly increase. Any
    failure to write (a full disk) raises :class:`RunDataError`.
    """

    def __init__(self, workdir: str | pathlib.Path, resume_step: int,
                 notify: Callable[[str], None] | None = None):
        self.path = pathlib.Path(workdir) / rundir.METRICS_FILE
        notify = notify or _stderr
        existed = self.path.exists()
        log = rundir.read_log(workdir)
        if log.torn_tail is not None:
            notify(f"notice: dropped a torn last line of {self.path} (a crash "
                   f"mid-write): {log.torn_tail[:60]!r}")
        kept = [r for r in log.records if resume_step and r["step"] <= resume_step]
        if resume_step and not existed:
            notify(f"warning: {self.path} is missing; the history before step "
                   f"{resume_step} is lost (resuming from its checkpoint)")
        elif resume_step and (not kept or kept[0]["step"] != 0):
            notify(f"warning: {self.path} has no record of step 0; part of the "
                   f"history before step {resume_step} is lost")
        self._last = kept[-1]["step"] if kept else -1
        try:
            rundir.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
            self._file = self.path.open("a")
        except OSError as e:
            raise RunDataError(f"cannot write {self.path}: {e.strerror or e}") from e

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if step <= self._last:
            raise RunDataError(f"{self.path}: step {step} written after step "
                               f"{self._last}; log steps must strictly increase")
        record = {"step": step, **{k: _json_value(v) for k, v in metrics.items()}}
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as e:
            raise RunDataError(f"cannot write {self.path} at step {step}: "
                               f"{e.strerror or e}") from e
        self._last = step

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # the write that failed already raised


class NullWriter:
    """The :class:`MetricsWriter` of a process that does not write the log
    (every process but process 0 of a multi-process run)."""

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        del step, metrics

    def close(self) -> None:
        pass


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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

    def line(self, step: int, metrics: Mapping[str, float], rejected: int = 0) -> str:
        rate = self.steps_per_second(step)
        eta = (self.total - step) / rate if rate and rate > 0 else float("nan")
        shown = " ".join(f"{k}={metrics[k]:.4g}" for k in self.KEYS if k in metrics)
        eta_s = _fmt_seconds(eta) if math.isfinite(eta) else "?"
        rej = f" | rejected {rejected} non-finite steps" if rejected else ""
        return (f"step {step}/{self.total} | {shown}{rej} | {rate:.1f} steps/s | "
                f"ETA {eta_s}")

    def report(self, step: int, metrics: Mapping[str, float], rejected: int = 0) -> None:
        print(self.line(step, metrics, rejected), file=self.stream or sys.stdout,
              flush=True)
