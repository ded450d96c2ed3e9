"""Sorting 64-bit integer keys: the compiled radix sort (``_radix_sort.c``) where setup.py built it,
else numpy's sort, with the same result.

The evidence and the learning set join by sorting 64-bit keys (hash keys, values packed above
their row numbers). numpy's comparison sort of a million uint64 took 52 ms on the 2-core host;
the radix sort 12-14 ms, and it lets go of the GIL, so two threads sort at once."""

import numpy as np

try:
    from proactive_assets.core import _radix_sort
except ImportError:  # pragma: no cover - depends on the install
    _radix_sort = None

#: Below this many keys numpy's sort is as quick (the radix sort clears 2,048 counters first).
RADIX_FROM = 1024


def sort_keys(keys: np.ndarray, in_place: bool = False) -> np.ndarray:
    """``np.sort(keys)`` of int64 or uint64 keys; ``in_place`` sorts ``keys`` itself (and returns it)."""
    compiled = _radix_sort is not None and keys.dtype in (np.int64, np.uint64) and len(keys) >= RADIX_FROM
    if not compiled or (in_place and not keys.flags.c_contiguous):
        if in_place:
            keys.sort()
            return keys
        return np.sort(keys)
    keys = np.ascontiguousarray(keys)
    out = keys if in_place else np.empty_like(keys)
    _radix_sort.sort(keys, out, keys.dtype == np.int64)
    return out
