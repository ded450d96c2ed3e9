"""Freed memory kept for the next batch instead of handed back to the system at once.

A day's work frees and allocates the same hundreds of megabytes over and over: a batch of
inflated log objects, a million-pair array. glibc's malloc gives the free top of its heap back to
the system once it passes a threshold (128 KiB at first, then twice the largest block freed so
far), and maps each block above a second threshold afresh; either way the kernel zeroes the pages
again on the next batch. Measured: small objects' ingest 1.52x -> 1.41-1.44x zlib's CPU time;
scoring a million pairs 16-19k -> 9-10k page faults and 0.09-0.12 -> 0.04-0.07 s of system time.

``retain_freed_memory`` keeps up to ``RETAINED_BYTES`` free at the top of each heap and serves
blocks below ``MAPPED_FROM`` from the heaps. Only what was in use a moment before is kept, so a
process holds at most that much more between batches. A scored day of a million pairs grows the
heap's top by ~165 MiB and allocates a 30 MiB block (four keys an address): at 128 MiB and 8 MiB
both went back to the system each day, and a process that had trained first took 11-17k page
faults a scored day; at 256 MiB and 32 MiB, 0.3-6k, and the detector's table 3.20M-3.38M ->
3.42M-3.58M pairs/s (`benchmarks.detector_scale`, November 29). The cost, measured the same
night: the many-pairs learning set's peak 1,333 -> 1,432 MiB (its target 1,536 MiB), the 5M-event
day's 1,180 -> 1,173 MiB (512 MiB retained measured the same peaks). Elsewhere than glibc it does
nothing.
"""

import ctypes
import functools
import platform

#: Free memory at the top of a heap kept for the next allocations (glibc's M_TRIM_THRESHOLD).
RETAINED_BYTES = 256 << 20
#: Blocks from this size are mapped on their own, and unmapped when freed (glibc's M_MMAP_THRESHOLD).
MAPPED_FROM = 32 << 20
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def retain_freed_memory() -> bool:
    """Set glibc's thresholds (once per process); True where they were set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - a static or unusual libc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MAPPED_FROM)) and bool(mallopt(_M_TRIM_THRESHOLD, RETAINED_BYTES))
