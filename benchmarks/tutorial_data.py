"""Synthetic login data built like the SageMaker IP Insights tutorial's ``generate_data.py``.

As in the tutorial, users have a home and a work ASN (work = home + uniform offset in
[-50,000, 50,000), re-drawn until different), ``floor(50 * (Pareto(1) + 1))`` events capped at
10,000, ``p_travel ~ Beta(1, 30)`` and ``p_home ~ Beta(3, 5)``. An event travels (uniform random
ASN) with probability p_travel, else uses home (p_home) or work, jittered by
``int(Normal(0, 10))`` ASN indices; the address is uniform inside the ASN's range, the time
uniform over 10 days. Differences from the tutorial, on purpose:

* the iptoasn table cannot be downloaded here, so ``asn_table`` synthesises one: contiguous
  IPv4 ranges from 1.0.0.0 to 223.255.255.255 whose sizes are powers of two from /24 to /12,
  small ones most common (like the real table), with a fixed seed;
* everything is vectorised numpy and seeded, so the data are reproducible;
* entities are ARN-like strings rather than ``user_<id>`` so their length is realistic.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAYS = 10
TRAIN_DAYS = 7  # the tutorial trains on the first 7 days and tests on the last 3

# log2(range size) and relative frequency: /24 ranges dominate, a few blocks are much larger
_SIZE_BITS = np.arange(8, 21)
_SIZE_FREQ = np.array([40, 10, 9, 8, 8, 6, 6, 5, 4, 2, 1, 0.5, 0.5], dtype=float)


@dataclass
class TutorialData:
    """Events of the generated users (one row per login) and the ASN table used."""

    asn_start: np.ndarray  # uint32, sorted, contiguous ranges
    asn_size: np.ndarray  # uint32
    events: pd.DataFrame  # user (int), entity (str), ip_int (uint32), ip (str), day (int)
    home: np.ndarray  # home ASN index per user
    work: np.ndarray  # work ASN index per user


def asn_table(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous ranges covering 1.0.0.0-223.255.255.255 (about 180k of them)."""
    rng = np.random.default_rng(seed)
    lo, hi = 1 << 24, 224 << 24
    need = hi - lo
    p = _SIZE_FREQ / _SIZE_FREQ.sum()
    sizes = np.empty(0, dtype=np.int64)
    while sizes.sum() < need:
        sizes = np.r_[sizes, 1 << rng.choice(_SIZE_BITS, size=100_000, p=p)]
    ends = np.cumsum(sizes)
    n = int(np.searchsorted(ends, need)) + 1
    sizes = sizes[:n]
    sizes[-1] -= int(ends[n - 1] - need)  # trim the last range to end exactly at 224.0.0.0
    starts = lo + np.r_[0, np.cumsum(sizes)[:-1]]
    return starts.astype(np.uint32), sizes.astype(np.uint32)


def ip_strings(values: np.ndarray) -> np.ndarray:
    """Dotted-decimal strings of uint32 addresses (object array)."""
    v = np.asarray(values).astype(np.uint64)
    octets = [((v >> np.uint64(s)) & np.uint64(255)).tolist() for s in (24, 16, 8, 0)]
    text = [str(i) for i in range(256)]
    return np.array(
        [f"{text[a]}.{text[b]}.{text[c]}.{text[d]}" for a, b, c, d in zip(*octets, strict=True)], dtype=object
    )


def entity_name(user: np.ndarray) -> np.ndarray:
    """ARN-like entity strings for user ids (shared string objects, as a parser would give)."""
    uniques, inverse = np.unique(np.asarray(user), return_inverse=True)
    names = np.array([f"arn:aws:iam::123456789012:user/user_{u}" for u in uniques.tolist()], dtype=object)
    return names[inverse]


def random_ip_in(asn: np.ndarray, asn_start: np.ndarray, asn_size: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform address inside each given ASN's range."""
    offset = np.floor(rng.random(len(asn)) * asn_size[asn]).astype(np.uint64)
    return (asn_start[asn].astype(np.uint64) + offset).astype(np.uint32)


def generate(num_users: int = 10_000, seed: int = 0, table_seed: int = 7) -> TutorialData:
    """Generate the tutorial's login events for ``num_users`` users."""
    asn_start, asn_size = asn_table(table_seed)
    n_asn = len(asn_start)
    rng = np.random.default_rng(seed)
    home = rng.integers(0, n_asn, num_users)
    work = (home + rng.integers(-50_000, 50_000, num_users)) % n_asn
    while (same := work == home).any():
        work[same] = (home[same] + rng.integers(-50_000, 50_000, int(same.sum()))) % n_asn
    n_events = np.minimum(np.floor(50 * (rng.pareto(1.0, num_users) + 1)), 10_000).astype(np.int64)
    p_travel = rng.beta(1, 30, num_users)
    p_home = rng.beta(3, 5, num_users)

    user = np.repeat(np.arange(num_users), n_events)
    n = len(user)
    travel = rng.random(n) < p_travel[user]
    at_home = rng.random(n) < p_home[user]
    jitter = np.trunc(rng.normal(0, 10, n)).astype(np.int64)
    base = np.where(at_home, home[user], work[user])
    asn = np.where(travel, rng.integers(0, n_asn, n), (base + jitter) % n_asn)
    ip_int = random_ip_in(asn, asn_start, asn_size, rng)
    day = np.floor(rng.random(n) * DAYS).astype(np.int64)
    events = pd.DataFrame({"user": user, "ip_int": ip_int, "day": day})
    return TutorialData(asn_start, asn_size, events, home, work)


def attacks(
    users: np.ndarray, count: int, data: TutorialData, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's malicious events: random known users, an address in a uniformly random ASN."""
    who = rng.choice(users, size=count)
    asn = rng.integers(0, len(data.asn_start), count)
    return who, random_ip_in(asn, data.asn_start, data.asn_size, rng)
