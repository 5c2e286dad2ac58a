"""glibc's allocator: keep freed memory for reuse instead of returning it.

XLA:CPU allocates each call's temporary buffers with ``malloc`` and frees them
when the call ends. glibc serves an allocation above its mmap threshold
(dynamically raised up to 32 MB) with a fresh ``mmap`` and unmaps it on
``free``, so a program whose temporaries are larger, such as a vmapped sweep
of 8 full-batch grokking MLPs (~170 MB per call), has every page of them
zero-filled and faulted in again at every call: measured 5 400 page faults
and ~18 % more CPU time per member-step (``benchmarks/sweep.py``).

:func:`retain_freed_memory` sets, at run time, what the environment variables
``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=…`` set at
start-up (``mallopt(3)``): one arena, no mmap'd chunks, no trimming. Freed
buffers then stay mapped and the next call reuses them. The process keeps its
peak heap for its lifetime, which is what a training process does anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_INT_MAX = 2**31 - 1


def retain_freed_memory() -> bool:
    """Asks glibc's malloc to keep freed memory mapped for reuse.

    Call it early, before the first large allocations (arenas already created
    keep their settings). Returns whether every setting was accepted: False
    on a C library without ``mallopt`` (musl, macOS), where nothing changes.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _INT_MAX))
    return all(mallopt(param, value) == 1 for param, value in settings)
