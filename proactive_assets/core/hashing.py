"""A stable 64-bit integer hash, shared by the model's buckets, the evidence's keys and event dedup."""

import numpy as np


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a stable, platform-independent 64-bit integer hash (every input bit
    moves every output bit). Returns a new uint64 array."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x
