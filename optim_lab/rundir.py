"""The run-directory format, readable without JAX or the training stack.

A run directory holds ``config.json`` (the run's config as JSON) and
``metrics.jsonl`` (one JSON object per logged step, with an integer
``"step"``; NaN / inf values are stored as the strings ``"nan"``, ``"inf"``).
Training writes it (``optim_lab.training``); plots and schedule refinement
read it through these functions.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    """All records of ``workdir/metrics.jsonl`` ([] if absent).

    Raises:
        ValueError: a line is not JSON or has no ``"step"``.
    """
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: corrupt line {i} ({e}); this run "
                             "directory cannot be resumed or read") from e
        if not isinstance(record, dict) or "step" not in record:
            raise ValueError(f"{path}: line {i} has no 'step'; this is not an "
                             "optim_lab metrics file")
        records.append(record)
    return records


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
