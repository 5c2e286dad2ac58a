"""Run directories: one process at a time, and only the run they belong to.

A workdir holds ``config.json``, ``metrics.jsonl``, ``checkpoints/`` and
plots. :func:`lock` takes an exclusive OS lock (``flock``) on the workdir's
``lock`` file for the whole run: a second process is refused with "workdir in
use by pid N", and a lock left by a killed process never blocks (the OS drops
it with the process); in a multi-process run only process 0 takes it
(``train.train_and_evaluate``). :func:`check` refuses a directory that holds
another run (its config differs in more than the run-length fields ``steps``
and ``checkpoint_every`` and the state's layout ``sharding``), a corrupt
``config.json``, or run files without one; :func:`write_config` replaces
``config.json`` atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import ml_collections

from optim_lab import rundir
from optim_lab.training.checkpoint import CHECKPOINT_DIR
from optim_lab.training.errors import WorkdirInUse

CONFIG_FILE = rundir.CONFIG_FILE
LOCK_FILE = "lock"
load_config = rundir.load_config
# ``sharding`` is the state's layout on the devices, not the run: a run may resume
# replicated what it saved with FSDP (and on any number of processes).
RESUMABLE_FIELDS = ("steps", "checkpoint_every", "sharding")
_RUN_FILES = (rundir.METRICS_FILE, CHECKPOINT_DIR)


def config_to_json(config: ml_collections.ConfigDict | dict[str, Any]) -> dict[str, Any]:
    """JSON-normalised dict (tuples become lists) of ``config`` (a ConfigDict
    or an already plain dict, e.g. the config plus the data's fingerprint)."""
    plain = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return json.loads(json.dumps(plain, default=str))


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


@contextlib.contextmanager
def lock(workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """Creates ``workdir`` and holds its exclusive lock for the ``with`` body.

    Raises:
        WorkdirInUse: another live process holds the lock.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise WorkdirInUse(f"workdir {workdir} in use by pid {holder}; wait for "
                               "it to finish or use another workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield workdir
    finally:
        os.close(fd)  # releases the flock


def check(workdir: str | pathlib.Path,
          config: ml_collections.ConfigDict | dict[str, Any]) -> None:
    """Refuses a workdir that holds another run, a corrupt one or a foreign one.

    Raises:
        ValueError: the directory holds another run, a corrupt config, or
            run files without a config.
    """
    workdir = pathlib.Path(workdir)
    if (workdir / CONFIG_FILE).exists():
        diffs = config_differences(load_config(workdir), config_to_json(config))
        if diffs:
            raise ValueError(
                f"{workdir} holds a run with a different config; use a new "
                "workdir (only " + ", ".join(RESUMABLE_FIELDS) + " may change on "
                "resume). Differences: " + "; ".join(diffs))
    elif any((workdir / f).exists() for f in _RUN_FILES):
        raise ValueError(f"{workdir} has run files but no {CONFIG_FILE}: it is "
                         "corrupt or not an optim_lab run directory; refusing "
                         "to overwrite it")


def write_config(workdir: str | pathlib.Path,
                 config: ml_collections.ConfigDict | dict[str, Any]) -> None:
    """Writes ``config.json`` atomically (a crash leaves the old or the new one)."""
    rundir.write_atomic(pathlib.Path(workdir) / CONFIG_FILE,
                        json.dumps(config_to_json(config), indent=2, sort_keys=True))


def prepare(workdir: str | pathlib.Path,
            config: ml_collections.ConfigDict) -> pathlib.Path:
    """:func:`check` then :func:`write_config` (creates the directory)."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    check(workdir, config)
    write_config(workdir, config)
    return workdir
