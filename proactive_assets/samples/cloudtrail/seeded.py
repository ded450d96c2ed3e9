"""Seeded random streams and hashed identifiers, the only sources of chance in the sample.

Random draws come from numbered ``numpy`` PCG64 streams of the seed; identifiers are hashes of
the seed and of what they name, so they stay put when the order of random draws changes.
"""

import hashlib
import string
from typing import Any

import numpy as np

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits


def random_stream(seed: int, *stream: int) -> np.random.Generator:
    """The generator of one numbered stream of ``seed``: the world (1), the plan (2), each day (3, day)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *stream])))


class HashedNames:
    """Identifiers derived by hashing, so they do not depend on the order of random draws."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _stream(self, n: int, parts: tuple[Any, ...]) -> bytes:
        text = "|".join(str(p) for p in (self.seed, *parts)).encode()
        out = b""
        counter = 0
        while len(out) < n:
            out += hashlib.blake2b(text + b"#%d" % counter, digest_size=64).digest()
            counter += 1
        return out[:n]

    def chars(self, alphabet: str, n: int, *parts: Any) -> str:
        """``n`` characters of ``alphabet`` naming ``parts``."""
        size = len(alphabet)
        return "".join(alphabet[b % size] for b in self._stream(n, parts))

    def hex(self, n: int, *parts: Any) -> str:
        """``n`` hex digits naming ``parts``."""
        return self._stream((n + 1) // 2, parts).hex()[:n]
