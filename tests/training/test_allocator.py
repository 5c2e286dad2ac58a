"""allocator.retain_freed_memory: freed large buffers stay mapped for reuse."""

import platform
import subprocess
import sys

import pytest

# Prints how much of a freed 64 MB buffer (malloc'd, every page touched) stays
# resident, in MB: glibc's default unmaps it at free (mmap'd chunk); retained,
# it stays in the heap for the next allocation.
_PROGRAM = """
import os, sys
import numpy as np
from optim_lab.training import allocator
if sys.argv[1] == "retain":
    assert allocator.retain_freed_memory()
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = resident()
a = np.ones(16 << 20, np.float32)
del a
print((resident() - before) / 2**20)
"""


def _kept_mb(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _PROGRAM, mode], capture_output=True,
                         text=True, check=True, timeout=120)
    return float(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_buffers_stay_mapped_for_reuse():
    assert _kept_mb("default") < 16  # unmapped at free
    assert _kept_mb("retain") > 60  # kept for the next call's buffers
