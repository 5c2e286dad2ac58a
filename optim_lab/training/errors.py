"""Errors that stop a run with one clear line (binaries print them, no traceback).

Each is raised where the run cannot safely go on: the message names what is
wrong and what to do. Binaries catch :class:`RunError` and exit non-zero with
``error: <message>``; anything else is an internal error and keeps its
traceback.
"""

from __future__ import annotations


class RunError(RuntimeError):
    """A run stopped for a reason the user must act on (one-line message)."""


class CheckpointError(RunError):
    """No checkpoint of the run can be restored into this run's state."""


class WorkdirInUse(RunError):
    """Another live process holds the workdir's lock."""


class Diverged(RunError):
    """Too many consecutive non-finite steps: the run was stopped."""


class RunDataError(RunError):
    """The run directory's data (log, disk) cannot be read or written."""
