"""Running the lab's binaries from tests, as a user does: ``python -m MODULE ARGS``
from the repository root, output captured as text."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(module: str, *args, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Runs ``python -m module *args`` in the repository root; returns the result."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def run_ok(module: str, *args, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """:func:`run`, asserting exit status 0 (the message: the end of stderr)."""
    out = run(module, *args, timeout=timeout, **kwargs)
    assert out.returncode == 0, f"{module} exited {out.returncode}:\n{out.stderr[-3000:]}"
    return out
