"""Memory handed back to the system as soon as it is freed (glibc; stdlib only).

By default glibc serves an allocation of up to 32 MB from its heaps once a block that large
was freed (its threshold for a block of its own grows with the blocks freed), and a freed
block in the middle of a heap is kept by the process. A run decodes a new large field every
second or so, from two threads, so its resident memory grew with the fields it had seen, not
with the ones it holds (docs/reliability.md#memory)."""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
OWN_BLOCK_BYTES = 256 * 1024
TRIM_BYTES = 1024 * 1024


def release_freed_memory_early() -> bool:
    """Make every allocation of OWN_BLOCK_BYTES or more a block of its own, returned to the
    system when freed, and give back a heap's free top past TRIM_BYTES. False (nothing done)
    without glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, OWN_BLOCK_BYTES) and mallopt(M_TRIM_THRESHOLD,
                                                                        TRIM_BYTES))
