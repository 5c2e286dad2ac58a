"""The run-directory format, readable without JAX or the training stack.

A run directory holds ``config.json`` (the run's config as JSON) and
``metrics.jsonl`` (one JSON object per logged step, with an integer
``"step"``; NaN / inf values are stored as the strings ``"nan"``, ``"inf"``).
Training writes it (``optim_lab.training``); plots and schedule refinement
read it through these functions.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import numpy as np

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


class Log(NamedTuple):
    """The parsed ``metrics.jsonl``: its records and a dropped torn last line."""
    records: list[dict[str, Any]]
    torn_tail: str | None  # the unparsable last line a crash mid-write left


def read_log(workdir: str | pathlib.Path) -> Log:
    """Parses ``workdir/metrics.jsonl`` (an empty log if absent).

    A last line that is not valid JSON is what a crash mid-write leaves: it is
    returned as ``torn_tail`` instead of a record. Anything else malformed is
    corruption.

    Raises:
        ValueError: a line before the last is not JSON, a record has no
            integer ``"step"``, or steps do not strictly increase.
    """
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return Log([], None)
    lines = path.read_text(errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records, torn = [], None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                torn = line
                break
            raise ValueError(f"{path}: corrupt line {i} ({e}); this run "
                             "directory cannot be resumed or read") from e
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ValueError(f"{path}: line {i} has no integer 'step'; this is "
                             "not an optim_lab metrics file")
        if records and record["step"] <= records[-1]["step"]:
            raise ValueError(f"{path}: line {i} has step {record['step']} after "
                             f"step {records[-1]['step']} (steps must strictly "
                             "increase); the log is corrupt")
        records.append(record)
    return Log(records, torn)


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    """All complete records of ``workdir/metrics.jsonl`` ([] if absent).

    A torn last line (a live or crashed writer) is skipped.

    Raises:
        ValueError: the log is corrupt (see :func:`read_log`).
    """
    return read_log(workdir).records


def write_atomic(path: str | pathlib.Path, text: str) -> None:
    """Replaces ``path`` by ``text`` atomically (temp file, fsync, rename)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_config(workdir: str | pathlib.Path) -> dict[str, Any]:
    """The JSON config of a run directory.

    Raises:
        ValueError: no ``config.json`` (not a run directory) or a corrupt one.
    """
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise ValueError(f"{workdir} is not an optim_lab run directory (no "
                         f"{CONFIG_FILE})")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is corrupt ({e}); refusing to use this run "
                         "directory") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} is corrupt (not a JSON object)")
    return cfg


def as_float(value: Any) -> float:
    """A logged value as float (``"nan"`` / ``"inf"`` strings included)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def metric_series(records: Sequence[dict[str, Any]], key: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` float64 arrays of the records that have ``key``."""
    pts = [(float(r["step"]), as_float(r[key])) for r in records if key in r]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*pts)
    return np.asarray(steps), np.asarray(values)
