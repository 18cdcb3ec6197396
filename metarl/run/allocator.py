"""Keep the memory that torch frees inside the process instead of returning it to the kernel.

A meta-iteration allocates and frees the same large tensors over and over (activations of
tasks x steps x hidden units, ten megabytes and more each, in every Hessian-vector product of
TRPO's curvature). glibc's malloc serves blocks above its mmap threshold (dynamic, up to 32 MB)
with fresh mappings and trims the heap's free top above its trim threshold, so the same memory is
unmapped and faulted in again, zero-filled by the kernel, many times an iteration. On a 2-core
machine that system time was about a fifth of a 2D-navigation iteration
(docs/results/speed.md). A higher mmap threshold and a trim threshold of 2 GB keep the blocks
for reuse; peak memory does not grow, since the blocks are the same ones.

glibc only (Linux). Where the user tunes malloc (a ``MALLOC_*`` variable, or ``GLIBC_TUNABLES``
naming malloc), the user's choice stands.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameter numbers, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_SETTINGS = {
    _M_MMAP_THRESHOLD: 1 << 30,  # blocks below 1 GB come from the heap
    _M_TRIM_THRESHOLD: (1 << 31) - 1,  # the heap's free top is kept (the largest int)
    _M_TOP_PAD: 1 << 28,  # the heap grows in steps of 256 MB of address space
}


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if they were set."""
    if not sys.platform.startswith("linux"):
        return False
    if any(name.startswith("MALLOC_") for name in os.environ) or \
            "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(parameter, value) == 1 for parameter, value in _SETTINGS.items())
