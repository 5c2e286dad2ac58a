"""Run directories: ``config.json`` guards against resuming the wrong run.

A workdir holds ``config.json``, ``metrics.jsonl``, ``checkpoints/`` and
plots. Re-running with an existing workdir resumes it only if its config is
the same up to the run-length fields (``steps``, ``checkpoint_every``); a
corrupt or foreign directory is refused, never overwritten.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import ml_collections

from optim_lab import rundir

CONFIG_FILE = rundir.CONFIG_FILE
load_config = rundir.load_config
RESUMABLE_FIELDS = ("steps", "checkpoint_every")
_RUN_FILES = ("metrics.jsonl", "checkpoints")


def config_to_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """JSON-normalised dict (tuples become lists) of ``config``."""
    return json.loads(json.dumps(config.to_dict(), default=str))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"field: old != new"`` for every non-resumable field that differs."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '<absent>')!r} != {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b))
            if k not in RESUMABLE_FIELDS and a.get(k) != b.get(k)]


def prepare(workdir: str | pathlib.Path,
            config: ml_collections.ConfigDict) -> pathlib.Path:
    """Creates or validates ``workdir`` for ``config``; writes config.json.

    Raises:
        ValueError: the directory holds another run, a corrupt config, or
            run files without a config.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    new = config_to_json(config)
    if (workdir / CONFIG_FILE).exists():
        diffs = config_differences(load_config(workdir), new)
        if diffs:
            raise ValueError(
                f"{workdir} holds a run with a different config; use a new "
                "workdir (only " + ", ".join(RESUMABLE_FIELDS) + " may change on "
                "resume). Differences: " + "; ".join(diffs))
    elif any((workdir / f).exists() for f in _RUN_FILES):
        raise ValueError(f"{workdir} has run files but no {CONFIG_FILE}: it is "
                         "corrupt or not an optim_lab run directory; refusing "
                         "to overwrite it")
    (workdir / CONFIG_FILE).write_text(json.dumps(new, indent=2, sort_keys=True))
    return workdir
