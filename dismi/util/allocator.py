"""Keep freed CPU memory for reuse instead of returning it to the kernel (glibc malloc settings).

A training step allocates and frees the same large tensors every iteration (a width-64 batch's first
feature map is 120 MB). glibc serves blocks over 32 MB with mmap and unmaps them when freed, so every
step pays page faults that zero the same memory again (their cost: docs/performance.md). With mmap off and the trim threshold out
of reach, freed blocks stay in the heap and the next step reuses them. The process's peak memory is
unchanged; it is simply not given back until the process ends, which for a training stage is what we
want. Not glibc (macOS, musl, Windows): nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
_done = False


def keep_freed_memory() -> bool:
    """Switch glibc to keep freed memory (idempotent) -> whether the settings took effect."""
    global _done
    if _done:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):  # no C library by that name, or not glibc
        return False
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt takes an int: a 2 GiB free top of heap is never reached by a step's temporaries
    _done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
